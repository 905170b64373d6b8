"""The robustness protocol (`fusion-bench bench --protocol robust`) and cross-dataset shift (`--train-dataset A`).

A robust run trains the method (as the standard protocol does, same seed, same order of set-up) on the training
dataset (the scored dataset itself, or `--train-dataset A`), then fuses the scored dataset's test split once clean
(severity 0) and once per (corruption, modality, severity) of the protocol's list with the test-time corruptions of
fusion_bench.corruptions applied to the inputs, and scores every fused image against the CLEAN sources (so a method
that passes noise through is penalised). The corruption list, the mCE baseline and the mCE metric come from
benchmarks/protocols/robust.yaml, overridden key by key by a dataset protocol's `robust:` mapping; `--corruptions`
picks a subset (`none`: the clean row alone, e.g. for the cross-dataset matrix).

Rows: one per (method, seed, corruption, modality, severity), with the clean row as corruption `none`, severity 0
(its numbers are the standard protocol's row bit for bit: same model, same inputs, same scorer), in
`<leaderboard_dir>/robust/raw/<dataset>.csv` (append-only, like the standard raw CSVs; the standard leaderboard
never reads them). They carry `train_dataset` (empty when it is the scored dataset), `protocol` (robust) and
`corruption_hash` (the corruption code's version). The aggregate (mean over severities, CE
and mCE against the baseline method) is fusion_bench.benchmark.robust_table. Outputs: `<out>/robust/<method>/<dataset
or A-to-B>/<preset>/<config_hash>/test-<split_hash>/seed<k>/<label>/` (fused/, metrics_per_image.csv).

Downstream: `--downstream seg`, `det` or `seg,det` adds SegFormer's mIoU and pixel accuracy and YOLO's mAP to every
row: each evaluator is trained once per seed on the clean fused training images of the scored dataset (the standard
protocol's recipe; with `--train-dataset A`, the scored dataset's training images fused by the model trained on A)
and scores the clean and every corrupted fused test folder without retraining. By default the protocol scores the
fusion metrics only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fusion_bench.benchmark.protocol import PROTOCOL_DIR, config_hash, config_text, hash_of_text
from fusion_bench.benchmark.results import atomic_write_text, path_name, run_directory
from fusion_bench.benchmark.spec import BenchSpec, PreparedRun
from fusion_bench.corruptions import CORRUPTIONS, SEVERITIES, check_corruption
from fusion_bench.errors import BenchError

ROBUST_FILE = PROTOCOL_DIR / "robust.yaml"
CORRUPTIONS_VERSION = 1  # bump when fusion_bench/corruptions.py changes what any corruption computes
ROBUST_COLUMNS = ("train_dataset", "protocol", "corruption", "modality", "severity", "corruption_hash")
CLEAN = "none"


@dataclass(frozen=True)
class CorruptionEntry:
    """One row group of the protocol: a corruption on modality a, b or both (`modality`), at severities 1..5;
    `shown` is what the rows' `modality` column says: the dataset's name of the modality (e.g. vis) or both."""

    name: str
    modality: str
    shown: str


def resolve_modality(value: Any, modalities: Sequence[str], where: str) -> tuple[str, str]:
    """(a|b|both, the name rows show) of `value`: a, b, both, or one of the dataset's `modalities` (e.g. vis)."""
    value = str(value)
    names = list(modalities)
    if value == "both":
        return "both", "both"
    if value in ("a", "b"):
        return value, names[0 if value == "a" else 1] if len(names) == 2 else value
    if value in names:
        return ("a" if names.index(value) == 0 else "b"), value
    raise BenchError(f"{where}: modality {value!r}: expected a, b, both or one of {', '.join(names)}")


@dataclass
class RobustSettings:
    """The protocol's settings for one dataset (robust.yaml under the dataset protocol's `robust:` mapping)."""

    entries: list[CorruptionEntry]
    baseline: str
    mce_metric: str
    mce_best: float
    source: str  # where they were read (for messages)

    @property
    def corruption_hash(self) -> str:
        """What the corruptions compute (their code's version and the severities), not which of them ran: rows of
        different corruption subsets compare with each other and with the baseline's."""
        return config_hash({"severities": list(SEVERITIES), "version": CORRUPTIONS_VERSION})


@dataclass
class RobustPlan:
    """A checked robust request: the run scored (its dataset's test split), the run trained (the same, or the
    `--train-dataset` one), the settings."""

    run: PreparedRun
    train: PreparedRun
    settings: RobustSettings

    @property
    def config_text(self) -> str:
        """The resolved configuration of the rows (each seed directory's `config.yaml`, `--print-config`): the trained
        run's (the standard protocol's entry); for a cross-dataset plan whose rows carry downstream scores, the
        trained run's configuration with the scored run's evaluators."""
        if self.train is self.run or not self.run.evaluators:
            return self.train.config_text
        return config_text({"train": self.train.config_text,
                            "downstream": {name: asdict(c) for name, c in self.run.evaluators.items()}})

    @property
    def config_hash(self) -> str:
        """The rows' config hash: the hash of `config_text`."""
        return self.train.config_hash if self.train is self.run or not self.run.evaluators else \
            hash_of_text(self.config_text)

    @property
    def train_dataset(self) -> str:
        """The row's `train_dataset`: empty when the method trains on the scored dataset."""
        return "" if self.train is self.run else self.train.spec.dataset

    def run_dir(self, seed: int) -> Path:
        s = self.run.spec
        where = s.dataset if self.train is self.run else f"{path_name(self.train.spec.dataset)}-to-{s.dataset}"
        return run_directory(Path(s.out) / "robust", s.method, where, s.preset, self.config_hash,
                             self.run.split_hash, seed)


def robust_raw_path(leaderboard_dir: str | Path, dataset: str) -> Path:
    return Path(leaderboard_dir) / "robust" / "raw" / f"{dataset}.csv"


def _entries(value: Any, where: str, modalities: Sequence[str]) -> list[CorruptionEntry]:
    if not isinstance(value, list):
        raise BenchError(f"{where}: `corruptions` must be a list of {{name: ..., modality: ...}}")
    entries = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name", "modality"} or "name" not in item:
            raise BenchError(f"{where}: corruption entry {item!r}: expected {{name: NAME, modality: a|b|both|NAME}}")
        entries.append(_entry(str(item["name"]), item.get("modality"), modalities, where))
    if len({(e.name, e.modality) for e in entries}) != len(entries):
        raise BenchError(f"{where}: a (corruption, modality) pair is listed twice")
    return entries


def _entry(name: str, modality: Any, modalities: Sequence[str], where: str) -> CorruptionEntry:
    if name not in CORRUPTIONS:
        raise BenchError(f"{where}: unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    which, shown = resolve_modality(CORRUPTIONS[name].modalities[0] if modality is None else modality, modalities,
                                    where)
    try:
        check_corruption(name, which)
    except ValueError as err:
        raise BenchError(f"{where}: {err}") from err
    return CorruptionEntry(name, which, shown)


SETTING_KEYS = ("corruptions", "baseline", "mce_metric", "mce_best")
# the downstream evaluators the protocol runs on the corrupted fused test images, and the row columns of each
DOWNSTREAM = {"seg": ("seg_miou", "seg_pixel_acc"), "det": ("det_map50", "det_map50_95")}


def load_settings(protocol: dict[str, Any], modalities: Sequence[str] = ("a", "b"),
                  dialect_metrics: Sequence[str] | None = None) -> RobustSettings:
    """robust.yaml with the dataset protocol's `robust:` keys over it; the corruption list of the protocol's task
    (`corruptions: {TASK: [...], default: [...]}`, or one list for every task). BenchError naming the file and key."""
    try:
        base = yaml.safe_load(ROBUST_FILE.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise BenchError(f"{ROBUST_FILE}: cannot read the robustness protocol ({err})") from err
    own = protocol.get("robust") or {}
    owner = protocol.get("user_file") or f"the {protocol.get('dataset')} protocol"
    where = f"{ROBUST_FILE}" + (f" (with the `robust:` keys of {owner})" if own else "")
    if not isinstance(own, dict):
        raise BenchError(f"protocol of {protocol.get('dataset')!r}: `robust:` must be a mapping")
    merged = {**base, **own}
    unknown = sorted(set(merged) - set(SETTING_KEYS))
    if unknown:
        raise BenchError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(SETTING_KEYS)})")
    metric = str(merged.get("mce_metric", "Qabf"))
    if dialect_metrics is not None and metric not in dialect_metrics:
        raise BenchError(f"{where}: mce_metric {metric!r} is not scored here (metrics: {', '.join(dialect_metrics)})")
    try:
        best = float(merged.get("mce_best", 1.0))
    except (TypeError, ValueError) as err:
        raise BenchError(f"{where}: mce_best must be a number") from err
    listed = merged.get("corruptions", [])
    if isinstance(listed, dict):
        listed = listed.get(str(protocol.get("task")), listed.get("default", []))
    return RobustSettings(_entries(listed, where, modalities), str(merged.get("baseline", "mean")), metric, best,
                          where)


def select_entries(settings: RobustSettings, corruptions: str | Sequence[str] | None,
                   modalities: Sequence[str] = ("a", "b")) -> list[CorruptionEntry]:
    """`--corruptions`: None = the protocol's list; `none` = no corruption (the clean row alone); else a comma list of
    NAME (the protocol's entries of that corruption, else its first modality) or NAME:MODALITY (a, b, both or the
    dataset's name of a modality)."""
    if corruptions is None:
        return list(settings.entries)
    items = [c.strip() for c in (corruptions.split(",") if isinstance(corruptions, str) else corruptions)]
    items = [c for c in items if c]
    if items == [CLEAN]:
        return []
    if not items:
        raise BenchError("--corruptions names nothing (none: the clean row alone)")
    chosen: list[CorruptionEntry] = []
    for item in items:
        name, _, modality = item.partition(":")
        where = f"--corruptions {item!r}"
        if name not in CORRUPTIONS:
            raise BenchError(f"{where}: unknown corruption; known: {', '.join(CORRUPTIONS)} (or none)")
        found = [_entry(name, modality, modalities, where)] if modality else \
            [e for e in settings.entries if e.name == name] or [_entry(name, None, modalities, where)]
        chosen += [e for e in found if e not in chosen]
    return chosen


def _channels(prep: PreparedRun) -> tuple[int, ...]:
    sample = prep.datasets["test"][0]
    return tuple(int(sample[key].shape[0]) for key in prep.datamodule_cls.dataset_class.modalities)


def prepare_robust(spec: BenchSpec, train_dataset: str | None = None,
                   corruptions: str | Sequence[str] | None = None, train_root: str | Path | None = None) -> RobustPlan:
    """Check a robust (or cross-dataset) request before any work; BenchError (exit 2) naming the option.
    `train_dataset` (`--train-dataset`, at `train_root`): train there, score on `spec.dataset`; the two must have the
    same task, modalities and channels per modality."""
    from fusion_bench.benchmark.downstream import parse_downstream
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.metrics import get_dialect
    from fusion_bench.registry import get_datamodule, get_method

    if spec.preset == "published" or spec.published is not None:
        raise BenchError("--protocol robust fuses corrupted inputs: published fused images cannot be re-fused")
    try:
        requested = parse_downstream(spec.downstream)
    except ValueError as err:
        raise BenchError(str(err)) from err
    if requested is not None and not set(requested) <= set(DOWNSTREAM):
        raise BenchError(f"--downstream {','.join(requested)}: the robust protocol runs {', '.join(DOWNSTREAM)} or "
                         "both (default: none, the fusion metrics alone)")
    evaluators = list(requested or ())
    try:
        task = get_datamodule(spec.dataset).dataset_class.task
    except KeyError as err:
        raise BenchError(str(err)) from err
    if not task.is_fusion:
        raise BenchError(f"--protocol robust applies to image-fusion datasets; {spec.dataset!r} is {task.value}")
    spec = replace(spec, downstream=evaluators or "none", downstream_baselines=False, protocol_variant="robust")
    run = prepare(spec)
    try:
        dialect_metrics = run.metric_names or list(get_dialect(run.dialect).specs)
    except (KeyError, ValueError):
        dialect_metrics = None
    modalities = run.datamodule_cls.dataset_class.modalities
    settings = load_settings(run.protocol, modalities, dialect_metrics)
    try:
        get_method(settings.baseline)
    except (KeyError, ValueError) as err:
        raise BenchError(f"{settings.source}: baseline: {err}") from err
    settings = replace(settings, entries=select_entries(settings, corruptions, modalities))
    train = run
    if train_dataset is not None and train_dataset != spec.dataset:
        try:
            other = get_datamodule(train_dataset).dataset_class
        except KeyError as err:
            raise BenchError(f"--train-dataset: {err}") from err
        mine = run.datamodule_cls.dataset_class
        if other.task is not task or tuple(other.modalities) != tuple(mine.modalities):
            raise BenchError(f"--train-dataset {train_dataset}: its modalities {'/'.join(other.modalities)} "
                             f"({other.task.value}) do not match {spec.dataset}'s {'/'.join(mine.modalities)} "
                             f"({task.value})")
        # the evaluators train on the scored dataset's images and labels: the training dataset needs none
        train = prepare(replace(spec, dataset=train_dataset, root=train_root, dataset_options={}, downstream="none",
                                overrides={k: v for k, v in spec.overrides.items()
                                           if str(k).partition(".")[0] not in DOWNSTREAM}))
        if _channels(train) != _channels(run):
            raise BenchError(f"--train-dataset {train_dataset}: its images have {_channels(train)} channels per "
                             f"modality, {spec.dataset}'s have {_channels(run)}")
        if not train.trains:
            raise BenchError(f"--train-dataset {train_dataset}: method {spec.method!r} does not train (training-free "
                             "or released weights): score it on --dataset alone")
    return RobustPlan(run, train, settings)


def run_robust(plan: RobustPlan) -> list[dict[str, Any]]:
    """Every seed of the plan (module docstring); rows appended to the robust raw CSV as each seed ends, then the
    robust tables regenerated. Returns the rows."""
    from fusion_bench.benchmark.results import append_rows
    from fusion_bench.benchmark.robust_table import regenerate_robust

    rows: list[dict[str, Any]] = []
    spec = plan.run.spec
    for seed in spec.seeds:
        new = run_robust_seed(plan, seed)
        if spec.leaderboard_dir is not None:
            append_rows(robust_raw_path(spec.leaderboard_dir, spec.dataset), new)
        rows += new
    if spec.leaderboard_dir is not None:
        regenerate_robust(Path(spec.leaderboard_dir))
    return rows


def run_robust_seed(plan: RobustPlan, seed: int) -> list[dict[str, Any]]:
    """One seed: set up and train exactly as the standard protocol does (runner.run_seed), then the clean pass and
    one pass per corruption, modality and severity."""
    import lightning as L

    from fusion_bench.benchmark.build import build_datamodule, build_method
    from fusion_bench.benchmark.config import overrides_text
    from fusion_bench.benchmark.evaluation import fuse_split, nan_summary
    from fusion_bench.benchmark.provenance import provenance
    from fusion_bench.benchmark.run_dirs import finish_partial, prepare_partial
    from fusion_bench.benchmark.training import fit_method
    from fusion_bench.corruptions import pair_corrupter

    run, train = plan.run, plan.train
    L.seed_everything(seed, workers=True, verbose=False)
    run_dir = plan.run_dir(seed)
    partial = run_dir.with_name(run_dir.name + ".partial")
    prepare_partial(partial, False)
    datamodule = build_datamodule(train, seed)
    model = build_method(train, datamodule)
    train_s = math.nan if train.released is not None else 0.0
    if model.trainable and train.trains:
        model, train_s = fit_method(train, model, datamodule, partial, False)
    scored = datamodule if train is run else build_datamodule(run, seed)
    base = {
        "method": run.spec.method, "dataset": run.spec.dataset, "train_dataset": plan.train_dataset,
        "task": run.task.value, "preset": run.spec.preset, "seed": seed, "config_hash": plan.config_hash,
        "metric_dialect": run.dialect or "", "train_mixture": "",
        "overrides": overrides_text(train.overrides),
        "protocol": "robust", "corruption_hash": plan.settings.corruption_hash,
    }
    passes: list[tuple[str, str, int, str]] = [(CLEAN, "", 0, "")]
    passes += [(e.name, e.modality, s, e.shown) for e in plan.settings.entries for s in SEVERITIES]
    env = provenance(run.device)
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    for name, modality, severity, shown in passes:
        label = "clean" if severity == 0 else f"{name}-{shown}-s{severity}"
        corrupt = None if severity == 0 else pair_corrupter(name, severity, modality, seed)
        result = fuse_split(run, model, scored, partial / label / "fused", score=True, corrupt=corrupt)
        per_image = result.per_image
        assert per_image is not None
        per_image.to_csv(partial / label / "metrics_per_image.csv", index=False)
        rows.append({**base, "corruption": name, "modality": shown, "severity": severity,
                     **{m: float(per_image[m].mean()) for m in per_image.columns if m != "name"},
                     **nan_summary(per_image), "fuse_ms_per_image": result.fuse_ms, "train_s": train_s,
                     "n_images": result.n_images, "split_hash": result.split_hash, **env})
        labels.append(label)
    if run.evaluators:
        for row, scores in zip(rows, _downstream(plan, model, scored, partial, seed, labels)):
            row.update(scores)
    atomic_write_text(partial / "config.yaml", plan.config_text)  # the text whose hash names the directory
    finish_partial(partial, run_dir)
    return rows


def _downstream(plan: RobustPlan, model: Any, datamodule: Any, partial: Path, seed: int,
                labels: list[str]) -> list[dict[str, float]]:
    """Each evaluator of the run (SegFormer, YOLO) trained once on the clean fused training images (the standard
    protocol's recipe), then scored on the clean and on every corrupted fused test folder without retraining; the
    scores of every pass, in `labels` order."""
    import contextlib

    from fusion_bench import numerics
    from fusion_bench.benchmark.downstream import child_threads, needs_val
    from fusion_bench.benchmark.evaluation import fuse_split
    from fusion_bench.evaluators.detection import evaluate_detection_folders
    from fusion_bench.evaluators.segmentation import evaluate_segmentation_folders

    run = plan.run
    fuse_split(run, model, datamodule, partial / "fused_train", split="train")
    if "val" in datamodule.available_splits() and any(needs_val(n, c) for n, c in run.evaluators.items()):
        fuse_split(run, model, datamodule, partial / "fused_val", split="val")
    pinned = numerics.downstream_pinned(run.spec.downstream_numerics)
    scores: list[dict[str, float]] = [{} for _ in labels]
    for name, config in run.evaluators.items():
        val = {"fused_val": partial / "fused_val", "val_set": datamodule.dataset("val")} \
            if (partial / "fused_val").is_dir() and needs_val(name, config) else {}
        common = dict(seed=seed, device=run.device, log_dir=partial / "downstream" / name, progress=run.spec.progress,
                      extra_tests={label: partial / label / "fused" for label in labels[1:]}, **val)
        folders = (partial / "fused_train", partial / labels[0] / "fused", datamodule.dataset("train"),
                   datamodule.dataset("test"), config)
        if name == "det":  # a child process: this process's numerics when pinned, else the native kernels
            result = evaluate_detection_folders(*folders, pinned=pinned, threads=child_threads(run.device, pinned),
                                                **common)
        else:
            with contextlib.nullcontext() if pinned else numerics.native_kernels():
                result = evaluate_segmentation_folders(*folders, **common)
        columns = DOWNSTREAM[name]
        extra = result.get(f"{name}_extra", {})
        for index, label in enumerate(labels):
            source = result if index == 0 else extra[label]
            scores[index].update({k: float(source[k]) for k in columns})
    return scores


__all__ = ["CLEAN", "ROBUST_COLUMNS", "CorruptionEntry", "RobustPlan", "RobustSettings", "load_settings",
           "prepare_robust", "robust_raw_path", "run_robust", "run_robust_seed", "select_entries"]
