"""`fusion-bench` command line (also `python -m fusion_bench`, and `main(argv)` in-process).

Subcommands: bench, train, fuse, metrics, downstream, profile, leaderboard, report, regress, grid, list,
data {check, fake, prepare}.
Errors in the request (unknown names, bad values, missing data, bad input files, outputs that would overwrite
something, paths that cannot be used) print one clear message and exit 2, before any expensive work; running out of
disk space, a file-size limit or memory prints one line and exits 3.

One module per command (`fusion_bench/cli/<command>.py`; `list` is listing.py): `add_parser` declares its options,
`run` calls the library and prints. args.py holds the argument types and option groups they share. The library never
imports from this package, and importing it (or building the parser) loads no torch: each command imports the
library when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fusion_bench.cli import (
    bench,
    data,
    downstream,
    fuse,
    grid,
    leaderboard,
    listing,
    metrics,
    profile,
    regress,
    report,
    train,
)
from fusion_bench.cli.args import Parser

# the subcommands in the order `fusion-bench --help` lists them
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "bench": bench.run, "train": train.run, "fuse": fuse.run, "metrics": metrics.run, "downstream": downstream.run,
    "profile": profile.run, "leaderboard": leaderboard.run, "report": report.run, "regress": regress.run,
    "grid": grid.run, "list": listing.run, "data": data.run}
_MODULES = (bench, train, fuse, metrics, downstream, profile, leaderboard, report, regress, grid, listing, data)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fusion-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in _MODULES:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for request/input errors, 1 for drift or an unclean check)."""
    from fusion_bench.errors import REQUEST_ERRORS, RESOURCE_EXIT, os_error_exit

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0)
    from fusion_bench import numerics

    try:
        # oneDNN/NNPACK off and one thread when the numerics are pinned, once torch is imported (help, list and
        # usage errors never import it)
        numerics.apply_runtime_when_imported()
    except ValueError as err:  # a bad FUSION_BENCH_NUMERICS value
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except REQUEST_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that cannot be used (2), or the disk / a file-size limit is full (3)
        code, message = os_error_exit(err)
        print(f"error: {message}", file=sys.stderr)
        return code
    except MemoryError:
        print("error: out of memory (exit 3: a smaller batch, crop or model, or another device)", file=sys.stderr)
        return RESOURCE_EXIT
    except RuntimeError as err:
        if type(err).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError: a resource too; else a bug
            raise
        print(f"error: {str(err).splitlines()[0]} (exit 3: out of device memory; a smaller batch, crop or model)",
              file=sys.stderr)
        return RESOURCE_EXIT
    except KeyboardInterrupt:
        print("interrupted: completed seeds are in the raw CSV; the current seed left no row", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
