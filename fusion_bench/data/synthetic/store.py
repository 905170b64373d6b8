"""The on-disk store of the synthetic datasets: where they live (a versioned user cache by default), their manifest
(sha256 of every file), generation in a child process with pinned numerics, atomic installation (a temporary folder
renamed into place; a concurrent winner is kept), and `ensure`: the folder of a dataset, generated or verified (and
regenerated, with a warning, when damaged). `SyntheticDataModule` resolves its root through it."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.errors import DatasetError

log = logging.getLogger("fusion_bench.data.synthetic")


GENERATOR_VERSION = 3
"""Bump when any generator changes its output; the cache folder is versioned with it. 3: synthetic-av's class pairs
(fusion_bench.data.synthetic.av: audio shared within a pair, the frames tell the pair apart); 2: the earlier sets."""


MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Generator:
    """One synthetic dataset's generator: its registered name, the function that writes it into a folder, and its
    parameters with their defaults (only `synthetic-av` has any)."""

    name: str
    generate: Callable[[Path, dict[str, Any]], None]
    defaults: dict[str, float]


def cache_dir() -> Path:
    """``$FUSION_BENCH_CACHE``, else ``$XDG_CACHE_HOME/fusion_bench``, else ``~/.cache/fusion_bench``."""
    env = os.environ.get("FUSION_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "fusion_bench"
    return Path.home() / ".cache" / "fusion_bench"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(root: Path, name: str, params: dict[str, Any]) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        "dataset": name,
        "generator_version": GENERATOR_VERSION,
        "params": params,
        "files": {p.relative_to(root).as_posix(): _sha256(p) for p in files},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The parsed manifest of a generated dataset, or None when absent or unreadable."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def verify_manifest(root: str | Path, name: str | None = None) -> list[str]:
    """Problems with a generated dataset at `root` (empty list: intact).

    Checks that the manifest exists, belongs to `name` and this GENERATOR_VERSION, and that every listed
    file exists with the recorded sha256.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        return [f"{root / MANIFEST}: missing or unreadable manifest"]
    problems = []
    if name is not None and manifest.get("dataset") != name:
        problems.append(f"{root / MANIFEST}: manifest is for {manifest.get('dataset')!r}, not {name!r}")
    if manifest.get("generator_version") != GENERATOR_VERSION:
        problems.append(f"{root / MANIFEST}: generator version {manifest.get('generator_version')} "
                        f"!= {GENERATOR_VERSION}")
    if not manifest["files"]:
        problems.append(f"{root / MANIFEST}: lists no files")
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif _sha256(path) != digest:
            problems.append(f"{path}: sha256 mismatch")
    return problems


def _install(tmp: Path, target: Path, name: str) -> None:
    """Rename the finished `tmp` tree onto `target` (absent or an empty folder); tolerate a concurrent winner."""
    for _ in range(5):
        try:
            os.rename(tmp, target)  # atomic; replaces an absent target or an empty directory
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        if not verify_manifest(target, name):
            return  # another process installed a valid copy first; ours is discarded by the caller
        aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise DatasetError(f"{name}: could not install generated data at {target}")


def _generate_into(target: Path, spec: Generator, params: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        _generate_pinned(spec.name, tmp, params)
        _write_manifest(tmp, spec.name, params)
        _install(tmp, target, spec.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _generate_pinned(name: str, folder: Path, params: dict[str, Any]) -> None:
    """Run generator `name` into `folder` in a child process with pinned numerics.

    NumPy picks its AVX-512 code for sin/exp/log/arctan2 on CPUs that have it (and the AVX2 code elsewhere), and
    the two differ in the last bits, enough to flip 8-bit pixels: a child process started with the pinned
    environment of fusion_bench.numerics (set before NumPy is imported) makes the same bytes on every x86-64 CPU.
    """
    import subprocess
    import sys

    from fusion_bench import numerics

    cmd = [sys.executable, "-m", "fusion_bench.data.synthetic", name, str(folder), json.dumps(params)]
    env = numerics.pinned_environment() if numerics.can_pin() else dict(os.environ)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-10:])
        raise DatasetError(f"{name}: generating the synthetic data into {folder} failed (exit {out.returncode}):"
                           f"\n{tail}")


def ensure(spec: Generator, root: str | Path | None = None, **params: Any) -> Path:
    """Return the folder holding the synthetic dataset that `spec` generates, generating it if needed.

    root=None: the versioned cache folder (see :func:`cache_dir`); it is generated when absent and
    regenerated, with a warning naming the path, when its manifest is missing or does not match the files.
    An explicit root is generated when the folder is absent or empty; otherwise it must hold a generated
    dataset (its manifest is verified; a damaged one is regenerated, a non-empty folder without a manifest
    raises DatasetError rather than being overwritten). `params` (``synthetic-av`` only: audio_snr,
    visual_snr) pick the generated variant; None means the default, and for an explicit existing root a
    value that differs from the recorded one raises ValueError.
    """
    name = spec.name
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise TypeError(f"{name}: unknown generator parameter(s) {sorted(unknown)}; valid: {sorted(spec.defaults)}")
    given = {k: float(v) for k, v in params.items() if v is not None}
    full = {**spec.defaults, **given}
    if root is None:
        target = cache_dir() / "synthetic" / name / f"v{GENERATOR_VERSION}"
        if spec.defaults:
            target = target / "-".join(f"{k}={full[k]:g}" for k in sorted(full))
    else:
        target = Path(root).expanduser()
    if target.exists() and not target.is_dir():
        raise DatasetError(f"{name}: {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        problems = verify_manifest(target, name)
        manifest = read_manifest(target)
        if manifest is None and root is not None:
            raise DatasetError(f"{name}: {target} is not empty and has no {MANIFEST}, so it is not a generated "
                               f"{name} dataset; refusing to overwrite it. Pass an absent or empty folder.")
        if not problems:
            recorded = manifest.get("params", {})
            mismatch = {k: (recorded.get(k), v) for k, v in (given if root is not None else full).items()
                        if recorded.get(k) != v}
            if not mismatch:
                return target
            if root is not None:
                raise ValueError(f"{name} at {target} was generated with {recorded}, not {mismatch} "
                                 "(recorded, requested); use another root")
            problems = [f"{target / MANIFEST}: parameters {recorded} != {full}"]
        log.warning("%s: generated data at %s is corrupt or incomplete (%s%s); regenerating", name, target,
                    "; ".join(problems[:3]), f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    else:
        log.info("%s: generating synthetic data into %s", name, target)
    _generate_into(target, spec, full)
    return target


class SyntheticDataModule(PairedDataModule):
    """A PairedDataModule whose root is generated on demand by its `generator` (see :func:`ensure`)."""

    generator: ClassVar[Generator]

    @classmethod
    def resolve_root(cls, root: str | Path | None) -> Path:
        """root=None: the versioned cache folder, generated or verified (and regenerated if damaged).

        An explicit root is generated when absent or empty, else verified against its manifest.
        """
        return ensure(cls.generator, root)
