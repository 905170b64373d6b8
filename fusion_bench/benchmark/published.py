"""Rows of published fused images (`bench --method published:NAME --fused-dir DIR`, preset `published`): no method runs;
the fused images an author published are paired with the dataset's test split and scored with the protocol's metric
dialect by the code that scores every method's output (`evaluation.fuse_split` reads them instead of calling a
model), so these rows take part in leaderboards, reports and statistics like every other row.

- Pairing: a fused file's key is its stem, or with `--fused-pattern '{stem}_fused.png'` the part `{stem}` stands for
  (`fusion_bench.metrics.folders.images_by_key`, as `fusion-bench metrics --fused-pattern`). A test sample takes the
  file whose key is its name, else the one whose key equals it ignoring case and `-`/`_`/spaces (Lytro's samples are
  `lytro-01`, MFIFB's files `lytro_01.jpg`). Files that pair with no sample are ignored.
- Test samples without a fused image are an error listing the first names, unless `--allow-subset`: the subset is
  scored, and the row's split hash and n_images are the subset's own (so it is never averaged with full-split rows).
- Downstream evaluators run only with `--train-fused-dir` (the method's fused training images; every training sample,
  and every val sample where an evaluator uses the val split, needs one); without it their columns stay empty and the
  prepared run carries a note saying so.
- Provenance: `source` (`--source`, default the folder) and `fused_sha256` (a digest of the scored files: name and
  sha256 of each). The digests enter the config hash: other images are another leaderboard entry.
- Efficiency columns (parameters, GFLOPs, fuse time, training time) are empty: nothing ran here.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from copy import copy
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

import fusion_bench
from fusion_bench.base.method import FusionMethod
from fusion_bench.benchmark.checks import check_outside, check_run_options
from fusion_bench.benchmark.config import EVALUATOR_SECTIONS, evaluator_overrides
from fusion_bench.benchmark.downstream import evaluator_config, needs_val, parse_downstream, resolve_evaluators
from fusion_bench.benchmark.leaderboard import check_owned
from fusion_bench.benchmark.protocol import (
    PUBLISHED_PREFIX,
    config_text,
    hash_of_text,
    is_published,
    load_protocol,
    protocol_preset,
)
from fusion_bench.benchmark.spec import BenchSpec, PreparedRun
from fusion_bench.data.base import FusionDataset
from fusion_bench.errors import BenchError, MetricsInputError, ProtocolError
from fusion_bench.metrics.folders import image_header, images_by_key
from fusion_bench.registry import get_datamodule
from fusion_bench.types import Task

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class PublishedImages(FusionMethod):
    """What the runner builds for a `published:NAME` row: nothing to train and nothing to fuse (fuse_split reads the
    published images of `PreparedRun.fused_files` instead)."""

    trainable = False

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        raise BenchError("internal: published fused images are read from their files, never fused")


def published_name(method: str) -> str:
    """NAME of `published:NAME` (letters, digits, `.`, `_`, `+`, `-`); a BenchError naming --method otherwise."""
    name = method[len(PUBLISHED_PREFIX):]
    if not NAME_RE.fullmatch(name):
        raise BenchError(f"--method {method!r}: expected published:NAME with NAME the method's name (letters, digits, "
                         "'.', '_', '+', '-'), e.g. published:SeAFusion")
    return name


def _norm(key: str) -> str:
    return re.sub(r"[-_ ]+", "-", key.casefold())


def match_fused(names: Sequence[str], folder: Path, pattern: str | None, option: str) -> tuple[dict[str, Path],
                                                                                               list[str]]:
    """({sample name: its fused file}, names without one) for the samples `names` and the images of `folder` (see the
    module docstring for the pairing); an unreadable folder or ambiguous names are a BenchError naming `option`."""
    try:
        found = images_by_key(folder, option.removeprefix("--"), pattern)
    except MetricsInputError as err:
        raise BenchError(f"{option} {folder}: {err}") from err
    loose: dict[str, list[str]] = defaultdict(list)
    for key in found:
        loose[_norm(key)].append(key)
    matched: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        if name in found:
            matched[name] = found[name]
            continue
        candidates = loose.get(_norm(name), [])
        if len(candidates) > 1:
            raise BenchError(f"{option} {folder}: sample {name!r} matches several files ({', '.join(candidates)}); "
                             "rename them or pass --fused-pattern")
        if candidates:
            matched[name] = found[candidates[0]]
        else:
            missing.append(name)
    return matched, missing


def _missing_error(option: str, folder: Path, what: str, missing: list[str], total: int, pattern: str | None,
                   examples: list[str], subset_hint: bool) -> BenchError:
    shown = ", ".join(missing[:8]) + (f" ... ({len(missing)} in all)" if len(missing) > 8 else "")
    how = f"--fused-pattern {pattern!r}" if pattern else "file stem"
    there = f"; its images are named like {', '.join(examples[:3])}" if examples else ""
    hint = (f", or --allow-subset to score the {total - len(missing)} that are there (the row then records that "
            "subset's split hash and n_images)") if subset_hint and len(missing) < total else ""
    return BenchError(f"{option} {folder}: {len(missing)} of {total} {what} have no fused image there (pairing by "
                      f"{how}): {shown}{there}. Pass --fused-pattern for other names (e.g. '{{stem}}_fused.png')"
                      f"{hint}")


def subset(dataset: FusionDataset, names: Sequence[str]) -> FusionDataset:
    """A view of `dataset` with the samples `names` only (in the dataset's order); its split_hash is the subset's."""
    keep = set(names)
    view = copy(dataset)
    view.samples = [s for s in dataset.samples if s.name in keep]
    return view


def _check_sizes(dataset: FusionDataset, files: dict[str, Path], option: str) -> None:
    """Each fused image has its sources' height and width (file headers only, before any decoding)."""
    for ref in dataset.samples:
        source = next(iter(ref.files.values()))
        try:
            fused_size, source_size = image_header(files[ref.name])[:2], image_header(source)[:2]
        except MetricsInputError as err:
            raise BenchError(f"{option}: {err}") from err
        if fused_size != source_size:
            raise BenchError(f"{option}: {files[ref.name]} is {fused_size[0]}x{fused_size[1]} (HxW), but the sources "
                             f"of sample {ref.name!r} are {source_size[0]}x{source_size[1]} ({source})")


def digest(files: dict[str, Path]) -> str:
    """sha256 over the sorted `name<TAB>sha256 of its file` lines: the identity of a set of fused images."""
    lines = []
    for name in sorted(files):
        lines.append(f"{name}\t{hashlib.sha256(files[name].read_bytes()).hexdigest()}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _split_files(dataset_cls: Any, root: Path, options: dict[str, Any], split: str, folder: Path,
                 pattern: str | None) -> dict[str, Path]:
    """The fused images of every sample of `split` in `folder` (--train-fused-dir); a missing one is an error."""
    dataset = dataset_cls(root, split, **options)
    names = [s.name for s in dataset.samples]
    files, missing = match_fused(names, folder, pattern, "--train-fused-dir")
    if missing:
        raise _missing_error("--train-fused-dir", folder, f"{split} images of {dataset.name}", missing, len(names),
                             pattern, [], False)
    _check_sizes(dataset, files, "--train-fused-dir")
    return files


def prepare_published(spec: BenchSpec) -> PreparedRun:
    """Check a `published:NAME` request and resolve it to a PreparedRun whose `fused_files` hold the images each
    split's pass scores (see the module docstring); every problem is a BenchError before any image is decoded."""
    if not is_published(spec.method):
        raise BenchError(f"--fused-dir (published fused images) goes with --method published:NAME, not "
                         f"{spec.method!r}")
    name = published_name(spec.method)
    published = spec.published
    if published is None:
        raise BenchError(f"--method {spec.method}: pass --fused-dir DIR, the folder of its fused test images")
    if spec.preset != "published":
        raise BenchError(f"--preset {spec.preset}: published:NAME rows have preset published (leave out --preset)")
    if spec.weights is not None:
        raise BenchError("--weights does not apply to --method published:NAME (its fused images are scored as "
                         "they are)")
    method_keys = sorted(k for k in spec.overrides if str(k).partition(".")[0] not in EVALUATOR_SECTIONS)
    if method_keys or spec.config is not None:
        what = f"--set {method_keys[0]}" if method_keys else f"--config {spec.config}"
        raise BenchError(f"{what}: published images have no method settings (only the downstream evaluators' "
                         f"{', '.join(f'{s}.*' for s in EVALUATOR_SECTIONS)} can be set)")
    device = check_run_options(spec)
    try:
        datamodule_cls = get_datamodule(spec.dataset)
    except KeyError as err:
        raise BenchError(str(err)) from err
    dataset_cls = datamodule_cls.dataset_class
    task = dataset_cls.task
    if task is Task.CLASSIFICATION:
        raise BenchError(f"dataset {spec.dataset!r} is a classification dataset: there are no fused images to score")
    try:
        protocol = load_protocol(spec.dataset, task, spec.protocol_file)
        root = datamodule_cls.resolve_root(spec.root)
        test_set = dataset_cls(root, "test", **spec.dataset_options)
    except ProtocolError as err:
        raise BenchError(str(err)) from err
    except (TypeError, ValueError) as err:
        raise BenchError(f"dataset {spec.dataset!r}: {err}") from err
    check_outside(Path(spec.out), root, "--out")  # nothing a run writes goes into the dataset
    if spec.leaderboard_dir is not None:
        check_outside(Path(spec.leaderboard_dir), root, "--leaderboard-dir")
        check_owned(Path(spec.leaderboard_dir), [spec.dataset])
    names = [s.name for s in test_set.samples]
    test_files, missing = match_fused(names, published.fused_dir, published.pattern, "--fused-dir")
    if missing and (not published.allow_subset or not test_files):
        examples = [p.name for p in sorted(published.fused_dir.iterdir()) if p.is_file()][:3]
        raise _missing_error("--fused-dir", published.fused_dir, f"test images of {spec.dataset}", missing,
                             len(names), published.pattern, examples, published.allow_subset is False)
    if missing:
        test_set = subset(test_set, list(test_files))
    _check_sizes(test_set, test_files, "--fused-dir")
    fused_files = {"test": test_files}
    evaluators: dict[str, Any] = {}
    notes = []
    splits = dataset_cls.available_splits(root, **spec.dataset_options)
    if published.train_fused_dir is not None:
        try:
            evaluator_names = resolve_evaluators(parse_downstream(spec.downstream), protocol, test_set, splits)
            evaluators = {n: evaluator_config(n, spec.preset, protocol, evaluator_overrides(spec.overrides, n))
                          for n in evaluator_names}
        except ValueError as err:
            raise BenchError(str(err)) from err
        if not evaluators:
            raise BenchError(f"--train-fused-dir {published.train_fused_dir}: no downstream evaluator runs on "
                             f"{spec.dataset} here (its protocol lists {protocol.get('downstream') or 'none'}; "
                             "choose them with --downstream)")
        for split in ("train", "val"):
            if split == "train" or (split in splits and any(needs_val(n, c) for n, c in evaluators.items())):
                fused_files[split] = _split_files(dataset_cls, root, spec.dataset_options, split,
                                                  published.train_fused_dir, published.pattern)
    elif protocol.get("downstream"):
        notes.append(f"published:{name} on {spec.dataset}: the downstream columns "
                     f"({', '.join(protocol['downstream'])}) stay empty; pass --train-fused-dir with the method's "
                     "fused training images to fill them")
    idle = sorted({str(k).partition(".")[0] for k in spec.overrides} - set(evaluators))
    if idle:
        raise BenchError(f"--set {idle[0]}.*: the downstream evaluator {idle[0]!r} does not run in this request")
    digests = {split: digest(files) for split, files in fused_files.items()}
    payload: dict[str, Any] = {
        "method": spec.method,
        "dataset": spec.dataset,
        "dataset_options": spec.dataset_options,
        "preset": spec.preset,
        "protocol": {k: protocol.get(k) for k in ("metric_dialect", "metrics")},
        "fused": digests,
        "version": fusion_bench.__version__,
    }
    if evaluators:
        payload["downstream"] = {n: asdict(c) for n, c in evaluators.items()}
        payload["protocol_preset"] = protocol_preset(spec.preset)
    if spec.overrides:
        payload["overrides"] = spec.overrides
    provenance = {"source": spec.source or f"fused images in {published.fused_dir}", "fused_sha256": digests["test"]}
    if missing:
        notes.append(f"published:{name} on {spec.dataset}: {len(test_files)} of {len(names)} test images scored "
                     f"(--allow-subset; split {test_set.split_hash()}); missing: {', '.join(missing[:8])}"
                     + (" ..." if len(missing) > 8 else ""))
    text = config_text(payload)
    return PreparedRun(replace(spec, method=name), PublishedImages, datamodule_cls, task,
                       {"model": {}, "optim": {}, "train": {}}, protocol, root, hash_of_text(text), device,
                       protocol.get("metrics"), evaluators, test_set.split_hash(), {"test": test_set},
                       overrides=dict(spec.overrides), fused_files=fused_files, provenance=provenance, notes=notes,
                       config_text=text)
