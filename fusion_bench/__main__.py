"""`python -m fusion_bench` entry point."""

import sys

from fusion_bench.cli import main

sys.exit(main())
