"""Run directories: `<out>/<method>/<dataset>/<preset>/<config_hash>/test-<split_hash>/seed<k>` (results.run_directory)
holds one seed's outputs, with the resolved configuration whose hash names it (`config.yaml`, written by the
runner). A run locks its seed directories (`seed_locks`), builds each seed in `<run_dir>.partial` (kept for
`--resume`: its checkpoints and training logs) and moves it into place only when complete; an earlier run directory
is kept under a `.replaced-<time>` name. A complete directory's row.csv is its row.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from fusion_bench.benchmark.results import read_rows
from fusion_bench.errors import BenchError


class HasRunDirs(Protocol):
    """A PreparedRun, or a PreparedMixture (one directory per seed for the model trained on the mixture)."""

    def run_dir(self, seed: int) -> Path: ...


def checkpoint_dir(run_dir: Path) -> Path:
    """Where a fit keeps its resumable Lightning checkpoints (`last.ckpt`)."""
    return run_dir / "checkpoints"


@contextlib.contextmanager
def seed_locks(prep: HasRunDirs, seeds: Sequence[int]) -> Iterator[None]:
    """Hold `<run_dir>.lock` for every seed: a second run of the same experiment (same method, config, test split,
    seed and --out) stops with a BenchError instead of writing into the same directories. The OS drops the locks
    of a killed process, so a crash never leaves a stale lock. On a file system without locks (some cluster file
    systems refuse flock) the run goes on unlocked, with a warning (a grid never runs one seed twice at once)."""
    locks: list[FileLock] = []
    try:
        for seed in seeds:
            run_dir = prep.run_dir(seed)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(run_dir.with_name(run_dir.name + ".lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise BenchError(f"another fusion-bench run is computing {run_dir} (lock {lock.lock_file} is held): "
                                 "wait for it to finish, or pass another --out") from None
            except OSError as err:  # e.g. ENOSYS/ENOLCK: the file system has no locks
                warnings.warn(f"{lock.lock_file}: cannot lock ({err}); running without the seed lock", stacklevel=2)
                continue
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()


def _finalize_dir(partial: Path, final: Path) -> None:
    if final.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        final.rename(final.with_name(f"{final.name}.replaced-{stamp}"))
    partial.rename(final)


def prepare_partial(partial: Path, resume: bool) -> None:
    """The seed's work folder: emptied (a killed run's leftovers) unless `resume`, which keeps its checkpoints and
    the interrupted fit's training logs (as `logs-until-<time>`; everything else is recomputed)."""
    if partial.exists():
        if not resume:
            shutil.rmtree(partial)
        else:
            for item in partial.iterdir():
                if item.name == "logs":
                    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
                    item.rename(item.with_name(f"logs-until-{stamp}"))
                elif item.name != "checkpoints" and not item.name.startswith("logs-until-"):
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    partial.mkdir(parents=True, exist_ok=True)


def finish_partial(partial: Path, final: Path) -> None:
    """Drop the resumable checkpoints (the weights are in model.pt) and move the seed's folder into place."""
    shutil.rmtree(checkpoint_dir(partial), ignore_errors=True)
    _finalize_dir(partial, final)


def completed_rows(prep: HasRunDirs, seed: int, folders: Sequence[str] = ("",)) -> list[dict[str, str]] | None:
    """The rows of a seed whose run directory is complete (the row.csv in each of its `folders`, as text), else
    None."""
    rows = [read_rows(prep.run_dir(seed) / folder / "row.csv") for folder in folders]
    return [found[0] for found in rows] if all(len(found) == 1 for found in rows) else None
