"""`python -m fusion_bench` entry point (same as the `fusion-bench` command)."""

from fusion_bench.launcher import run

run()
