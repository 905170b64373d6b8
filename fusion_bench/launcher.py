"""Console entry point of `fusion-bench` (and `python -m fusion_bench`): pin the numerics, then run the CLI.

Kept apart from fusion_bench.cli because pinning (fusion_bench.numerics) must happen before torch is imported.
"""

from __future__ import annotations

import sys


def run() -> None:
    from fusion_bench.numerics import reexec_if_needed

    try:
        reexec_if_needed(sys.argv[1:])
    except ValueError as err:  # a bad FUSION_BENCH_NUMERICS value
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    from fusion_bench.benchmark.jobs import exit_with_parent

    exit_with_parent()  # a job of `bench --jobs` / `grid`: stop with the process that started it
    from fusion_bench.cli import main

    sys.exit(main())
