"""The child process that writes one synthetic dataset with pinned numerics (store._generate_pinned):
`python -m fusion_bench.data.synthetic <name> <folder> <params as JSON>`."""

import json
import sys
from pathlib import Path

from fusion_bench.data.synthetic import GENERATORS

GENERATORS[sys.argv[1]].generate(Path(sys.argv[2]), json.loads(sys.argv[3]))
