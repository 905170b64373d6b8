"""Checks of single request values, each failing with a BenchError that names the option and what is valid: seeds,
the device, output folders and files (never overwriting what a command did not create, never writing into a
dataset), and the raw CSVs a run will append to; `check_run_options` runs the ones every `bench` request needs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_bench.benchmark.distributed import is_rank_zero
from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.spec import SEED_MAX, BenchSpec
from fusion_bench.errors import BenchError, DownstreamError
from fusion_bench.evaluators.common import resolve_device

DEVICES = "auto, cpu, cuda or cuda:N"


def check_seeds(seeds: Sequence[Any], option: str = "--seeds") -> list[int]:
    """Seeds as ints in 0..2**32-1 (at least one); BenchError naming the option otherwise."""
    out = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
            raise BenchError(f"{option}: seed {seed!r} is not an integer in 0..{SEED_MAX}")
        out.append(int(seed))
    if not out:
        raise BenchError(f"{option}: no seed given; pass e.g. {option} 0 or 0,1,2")
    return out


def check_run_options(spec: BenchSpec) -> torch.device:
    """The options of a bench request that do not depend on its method or dataset: seeds, --num-workers,
    --downstream-numerics, the device (returned), --out and --leaderboard-dir (and its raw CSVs)."""
    from fusion_bench import numerics

    check_seeds(spec.seeds)
    if isinstance(spec.num_workers, bool) or not isinstance(spec.num_workers, int) or spec.num_workers < 0:
        raise BenchError(f"--num-workers {spec.num_workers!r}: expected an integer >= 0")
    if spec.downstream_numerics not in (None, *numerics.DOWNSTREAM_MODES):
        raise BenchError(f"--downstream-numerics {spec.downstream_numerics!r}: expected one of "
                         f"{', '.join(numerics.DOWNSTREAM_MODES)}")
    device = check_device(spec.device)
    check_output_dir(spec.out, "--out")
    if spec.leaderboard_dir is not None:
        check_output_dir(spec.leaderboard_dir, "--leaderboard-dir")
        check_raw_results(Path(spec.leaderboard_dir))
    return device


def check_device(device: str | torch.device) -> torch.device:
    """auto, cpu, cuda or cuda:N (N an existing GPU) -> torch.device; BenchError naming --device otherwise."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip()
    kind, _, index = text.partition(":")
    if text not in ("auto", "cpu") and not (kind == "cuda" and (not _ or index.isdigit())):
        raise BenchError(f"--device {device!r}: expected {DEVICES}")
    try:
        out = resolve_device(text)
    except DownstreamError as err:  # a CUDA device without CUDA
        raise BenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto"
                         ) from err
    if out.type == "cuda" and out.index is not None and out.index >= torch.cuda.device_count():
        raise BenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return out


def check_output_dir(path: str | Path, option: str, shown: Path | None = None) -> Path:
    """A folder the run may create or write into: a usable name (no component over the file system's limit), not a
    file, no file on the way, and writable (tried: a probe folder is made and removed in the nearest existing
    folder, since permission bits say nothing for root or on read-only and virtual file systems); BenchError
    naming the option (and `shown`, the file the folder is for, where given) otherwise."""
    path = Path(path)
    label = f"{option} {shown if shown is not None else path}"
    try:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        is_file = path.exists() and not path.is_dir()
    except OSError as err:  # e.g. ENAMETOOLONG from stat
        raise BenchError(f"{label}: cannot be used: {err.strerror or err}") from err
    if is_file:
        raise BenchError(f"{label} is a file; expected a folder")
    if not probe.is_dir():
        raise BenchError(f"{label}: {probe} is a file, so the folder cannot be created there")
    _check_name_lengths(path, probe, label)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BenchError(f"{label}: {probe} is not writable")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".fusion-bench-probe-", dir=probe))
    except OSError as err:
        raise BenchError(f"{label}: {probe} is not writable ({err.strerror or err})") from err
    return path


def _check_name_lengths(path: Path, existing: Path, label: str) -> None:
    """Every component of `path` below `existing` within the file system's name limit, and the whole path within its
    path limit (with room for the names a run adds below it)."""
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer: the writes will tell
        return
    long = [part for part in path.parts if len(os.fsencode(part)) > name_max]
    if long:
        raise BenchError(f"{label}: the name {long[0][:40]}... is {len(os.fsencode(long[0]))} bytes long; "
                         f"this file system allows {name_max}")
    if len(os.fsencode(str(path.absolute()))) > path_max - 200:
        raise BenchError(f"{label}: the path is too long for this file system (at most about "
                         f"{path_max - 200} bytes, leaving room for the run's own folders)")


def check_raw_results(leaderboard_dir: Path) -> None:
    """Every raw CSV under leaderboard_dir/raw must parse now (not after the run, when the row is appended and the
    leaderboards regenerated): ResultsFileError naming the file and line otherwise."""
    raw = Path(leaderboard_dir) / "raw"
    for path in sorted(raw.glob("*.csv")) if raw.is_dir() else []:
        read_rows(path)


def check_new_file(path: Path, overwrite: bool, option: str = "--out") -> None:
    """An output file: refused when it is a folder, exists without --overwrite, or cannot be created."""
    if not is_rank_zero():  # another process of a multi-process fit: rank 0 checked (and now writes) the outputs
        return
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as err:  # e.g. ENAMETOOLONG
        raise BenchError(f"{option} {path}: cannot be used: {err.strerror or err}") from err
    if is_dir:
        raise BenchError(f"{option} {path} is a folder; expected a file")
    if exists and not overwrite:
        raise BenchError(f"{option} {path} exists: pass --overwrite to replace it, or another {option}")
    check_output_dir(path.parent, option, shown=path)


def check_empty_dir(path: Path, option: str = "--out", overwrite: bool | None = None) -> None:
    """An output folder: refused when it is a file, cannot be created, or is not empty (unless --overwrite where
    the command offers it)."""
    if not is_rank_zero():
        return
    check_output_dir(path, option)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        hint = " or pass --overwrite" if overwrite is not None else ""
        raise BenchError(f"{option} {path} is not empty: pass a new or empty folder{hint} (nothing is overwritten "
                         "by default)")


def check_outside(path: Path, root: Path, option: str = "--out") -> None:
    """Refuse an output folder inside (or equal to) a dataset root: fused images never go into a dataset."""
    out, src = path.resolve(), root.resolve()
    if out == src or src in out.parents:
        raise BenchError(f"{option} {path} is inside the dataset root {root}: outputs never go into a dataset's "
                         "folders (pass a folder outside it)")
