"""Every error type of fusion_bench, in one module that imports nothing from the package (no torch either).

Each names a request or input problem the user can fix; its message says what is wrong and what is valid. The
command line turns the ones in REQUEST_ERRORS into `error: <message>` and exit code 2. Any layer may import this
module: the data and metrics code raises the input errors, the benchmark code the request errors.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from pathlib import Path

# ------------------------------------------------------------------------------------------------ inputs


class DatasetError(RuntimeError):
    """Base class for dataset problems; the message always names the root or the offending file."""


class DatasetNotFoundError(DatasetError):
    """The root is missing, empty, or lacks a required folder."""

    def __init__(self, dataset: str, root: Path, expected_tree: str, missing: Iterable[str] = ()):
        missing = list(missing)
        lines = [f"{dataset}: dataset not found at {root}"]
        if missing:
            lines.append("missing: " + ", ".join(missing))
        lines += ["expected tree:", expected_tree.rstrip(), "Download the dataset yourself (see README, datasets "
                  "table) and pass --root, or set FUSION_BENCH_DATA so that $FUSION_BENCH_DATA/<name> holds it."]
        super().__init__("\n".join(lines))


class DatasetIntegrityError(DatasetError):
    """The tree exists but some files are unpaired, unreadable, mismatched or out of range.

    `problems`: fusion_bench.data.base.Problem items (a path and a message each)."""

    def __init__(self, dataset: str, root: Path, problems: Sequence[object]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{dataset} at {root}: {len(problems)} problem(s); nothing was skipped, fix them or the split "
            f"list:\n{shown}{more}\nRun `fusion-bench data check {dataset} --root {root}` for the full report."
        )


class ImageReadError(RuntimeError):
    """An image file exists but cannot be decoded (or holds values outside the depth policy)."""


class MetricsInputError(ValueError):
    """Inputs that cannot be scored (bad shape, unpaired or unreadable files, size mismatch)."""


# ------------------------------------------------------------------------------------------------ requests


class UnknownNameError(KeyError):
    """An unknown method/dataset/evaluator name (the message lists the valid choices), a `module:Class` path that
    does not import or names the wrong kind of class, or a plug-in name clash."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class ProtocolError(ValueError):
    """A dataset's protocol file is missing (broken install) or malformed; the message names the file."""


class BenchError(RuntimeError):
    """A benchmark request that cannot run; the message says why and what is valid."""


class NonFiniteError(BenchError):
    """A run whose numbers stopped being finite: a training loss that is NaN/Inf (the message names the step) or a
    fused image holding NaN/Inf (it names the image). Nothing of the run is written as a result."""


class DistributedSettingsError(ValueError):
    """A train.devices / strategy / num_nodes value that cannot work; the message names the key."""


class DownstreamError(RuntimeError):
    """A downstream evaluation that cannot run; the message names what is missing and how to fix it."""


# ------------------------------------------------------------------------------------------------ results


class ResultsFileError(RuntimeError):
    """A raw results file is malformed; the message names the file and line."""


class LeaderboardError(ResultsFileError):
    """A leaderboard request that cannot be served (no such directory, no raw rows, unknown dataset)."""


class ReportError(LeaderboardError):
    """A report request that cannot produce a page; the message names the argument or file."""


RESOURCE_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e is not None)
"""Operating-system errors of an exhausted resource: the disk, a quota, a file-size limit (`ulimit -f`)."""
RESOURCE_EXIT = 3
"""The exit code of a command that ran out of a resource (disk space, a quota or file-size limit, memory)."""


def os_error_exit(err: OSError) -> tuple[int, str]:
    """(exit code, one-line message) of an operating-system error that reached the command line: RESOURCE_EXIT for
    an exhausted resource (the disk, a quota, a file-size limit), else 2 (a path that cannot be used)."""
    path = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    text = f"{path}: {err.strerror or err}" if path else str(err.strerror or err)
    if err.errno in RESOURCE_ERRNOS:
        return RESOURCE_EXIT, (f"{text}: out of disk space, quota or file-size limit (what was complete is kept and "
                               "nothing half-written was left: free space, then run again)")
    return 2, text


REQUEST_ERRORS: tuple[type[BaseException], ...] = (
    BenchError, DatasetError, ImageReadError, UnknownNameError, ResultsFileError, FileNotFoundError, DownstreamError,
    ProtocolError, MetricsInputError)
"""What the command line reports as `error: <message>` with exit code 2 (a request or input error)."""
