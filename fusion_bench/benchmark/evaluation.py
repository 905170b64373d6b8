"""Evaluation of a split: one pass that decodes each sample once, fuses it to a lossless PNG, scores the PNG read
back from disk with the protocol's metric dialect, runs a segmenting method's own head and keeps the labels the
downstream evaluators need (`fuse_split`; for published images the pass reads each sample's published file instead
of fusing, scores that file and writes its PNG copy); the accuracy of a classifier on the test split
(`evaluate_classifier`).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.base.precision import cast_floating, computing_in, model_dtype
from fusion_bench.benchmark.build import build_datamodule, build_method
from fusion_bench.benchmark.downstream import NativeSegmentation
from fusion_bench.benchmark.probes import has_probes, probe_scores
from fusion_bench.benchmark.spec import PreparedRun
from fusion_bench.benchmark.weight_files import load_weights, read_weights
from fusion_bench.data.base import FusionDataset
from fusion_bench.data.io import read_image, write_png
from fusion_bench.data.transforms import collate_samples
from fusion_bench.errors import BenchError, NonFiniteError
from fusion_bench.metrics.folders import MAX_BATCH_PIXELS, batch_limit, read_metric_image
from fusion_bench.types import GT, MASK, NAME, TARGET


@dataclass
class SplitPass:
    """What one pass over a split produced (see `fuse_split`)."""

    split: str
    n_images: int
    split_hash: str
    fuse_ms: float  # mean milliseconds of model.fuse per image
    channels: tuple[int, int] | None  # source channels of the first sample (the GFLOPs inputs)
    seconds: dict[str, float]  # phase -> seconds: fuse (decode, fuse, write), score, native_seg
    per_image: pd.DataFrame | None = None  # metric values per image (score=True)
    labels: LabelView | None = None  # the labels the downstream evaluators read (label_keys)
    native: tuple[dict[str, float], list[dict]] | None = None  # native segmentation scores, per-class records


class LabelView(torch.utils.data.Dataset):
    """A split's labels as decoded during the runner's pass (name, mask, boxes/labels and each modality's size as a
    zero-stride placeholder), standing in for the Dataset where the downstream evaluators read labels, so no image
    is decoded again. Everything else (samples, class names, ...) is the dataset's."""

    def __init__(self, dataset: FusionDataset, samples: list[dict[str, Any]]):
        self._dataset = dataset
        self._samples = samples

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._samples[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._dataset, name)


def _label_sample(sample: dict[str, Any], keys: Sequence[str], modalities: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {NAME: sample[NAME]}
    for key in modalities:
        if isinstance(sample.get(key), torch.Tensor):
            out[key] = torch.zeros((), dtype=torch.uint8).expand(*sample[key].shape)  # its size, no memory
    for key in keys:
        if key not in sample:
            continue
        value = sample[key]
        if key == MASK and value.numel() and 0 <= int(value.min()) and int(value.max()) <= 255:
            value = value.to(torch.uint8)  # the segmentation evaluator keeps uint8 masks too
        out[key] = value
    return out


class _Scorer:
    """Scores fused PNGs against their sources in batches of same-shaped images (at most `batch_size` images and
    MAX_BATCH_PIXELS pixels per batch; pending images are flushed when they hold more than 4x that), one row per
    image in dataset order."""

    def __init__(self, prep: PreparedRun, dataset: FusionDataset, batch_size: int = 8):
        from fusion_bench.metrics import get_dialect

        self.prep, self.dataset, self.batch_size = prep, dataset, batch_size
        self.dialect = get_dialect(prep.dialect)
        self.groups: dict[tuple, list[tuple]] = defaultdict(list)
        self.records: list[dict[str, Any]] = []
        self.pending_pixels = 0

    def add(self, name: str, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None) -> None:
        key = (tuple(a.shape), tuple(b.shape), tuple(fused.shape), None if gt is None else tuple(gt.shape))
        self.groups[key].append((name, a, b, fused, gt))
        self.pending_pixels += a.shape[-2] * a.shape[-1]
        if len(self.groups[key]) >= batch_limit(a.shape[-2], a.shape[-1], self.batch_size):
            self._flush(key)
        while self.pending_pixels > 4 * MAX_BATCH_PIXELS and self.groups:
            self._flush(max(self.groups, key=lambda k: len(self.groups[k]) * k[0][-2] * k[0][-1]))

    def _flush(self, key: tuple) -> None:
        items = self.groups.pop(key)
        self.pending_pixels -= len(items) * key[0][-2] * key[0][-1]
        gt = torch.stack([i[4] for i in items]) if items[0][4] is not None else None
        try:
            scores = self.dialect.compute(torch.stack([i[1] for i in items]), torch.stack([i[2] for i in items]),
                                          torch.stack([i[3] for i in items]), metrics=self.prep.metric_names, gt=gt)
        except ValueError as err:  # e.g. an image smaller than a metric's window
            raise BenchError(f"{self.dataset.name}/{self.dataset.split}: cannot score {', '.join(i[0] for i in items)} "
                             f"(size {key[0][-2]}x{key[0][-1]}) with dialect {self.prep.dialect!r}: {err}") from err
        for j, item in enumerate(items):
            self.records.append({"name": item[0], **{m: float(v[j]) for m, v in scores.items()}})

    def finish(self) -> pd.DataFrame:
        for key in list(self.groups):
            self._flush(key)
        order = {s.name: i for i, s in enumerate(self.dataset.samples)}
        return pd.DataFrame(self.records).sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def fuse_split(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, fused_dir: Path,
               split: str = "test", *, score: bool = False, label_keys: Sequence[str] = (),
               native: bool = False,
               corrupt: Callable[[str, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
               ) -> SplitPass:
    """One pass over a split: decode each sample once, fuse it to `fused_dir/<name>.png` and, as asked, score the
    fused PNG read back from disk against the sources (`score`), run a SegFusionMethod's own head on the same
    inputs (`native`) and keep the labels in `label_keys` for the downstream evaluators. Decoded sources are kept
    only until their batch is scored. A published row (`prep.fused_files`) fuses nothing: each sample's published
    file is read as `fusion-bench metrics` reads it, copied to `fused_dir/<name>.png` and scored (no fuse time)."""
    dataset = datamodule.dataset(split)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=prep.spec.num_workers,
                        collate_fn=collate_samples)
    model = model.to(prep.device).eval()
    dtype = model_dtype(model)  # float64 for a method trained in 64-true: its inputs follow
    a_key, b_key = datamodule.modalities
    stored = prep.fused_files.get(split) if prep.fused_files else None
    if prep.fused_files and stored is None:
        raise BenchError(f"internal: no published fused images of the {split} split")
    scorer = _Scorer(prep, dataset) if score else None
    native_seg = NativeSegmentation(dataset, prep.device) if native else None
    labels: list[dict[str, Any]] | None = [] if label_keys else None
    times: list[float] = []
    seconds = {"fuse": 0.0, **({"score": 0.0} if score else {}), **({"native_seg": 0.0} if native else {})}
    channels = None
    what = "fuse" + ("+score" if score else "") + ("+segment" if native else "")
    fused_dir.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    with torch.no_grad(), computing_in(dtype):
        for batch in tqdm(loader, desc=f"{what} {prep.spec.method} on {prep.spec.dataset}/{split}",
                          disable=not prep.spec.progress, leave=False):
            sample = {k: v[0] for k, v in batch.items()}
            channels = channels or (int(sample[a_key].shape[0]), int(sample[b_key].shape[0]))
            if stored is not None:
                fused = read_metric_image(stored[sample[NAME]])[None]
                where = str(stored[sample[NAME]])
            else:
                x1, x2 = (cast_floating(batch[key].to(prep.device), dtype) for key in (a_key, b_key))
                if corrupt is not None:
                    x1, x2 = corrupt(sample[NAME], x1, x2)
                if prep.device.type == "cuda":
                    torch.cuda.synchronize(prep.device)
                start = time.perf_counter()
                fused = model.fuse(x1, x2)
                if prep.device.type == "cuda":
                    torch.cuda.synchronize(prep.device)
                times.append((time.perf_counter() - start) * 1000)
                where = f"{prep.spec.method} returned"
            if fused.shape[-2:] != sample[a_key].shape[-2:]:
                raise BenchError(f"{where} {tuple(fused.shape)} for inputs of size {tuple(sample[a_key].shape[-2:])}: "
                                 "fused images must keep the source size")
            if not bool(torch.isfinite(fused).all()):  # a black PNG scored as data otherwise
                raise NonFiniteError(f"{where} NaN or Inf values for {split} image {sample[NAME]!r} of "
                                     f"{prep.spec.dataset}: stopped at the first such image, nothing of it was written "
                                     "or scored (check the weights or the training)")
            path = write_png(fused_dir / f"{sample[NAME]}.png", fused[0].cpu())
            if labels is not None:
                labels.append(_label_sample(sample, label_keys, datamodule.modalities))
            now = time.perf_counter()
            seconds["fuse"] += now - clock
            clock = now
            if native_seg is not None:
                native_seg.update(model, x1, x2, batch[MASK])  # (a published row has no model to segment with)
                now = time.perf_counter()
                seconds["native_seg"] += now - clock
                clock = now
            if scorer is not None:  # the metrics are computed on the file on disk, never on the in-memory tensor
                on_disk = fused[0] if stored is not None else read_image(path, mode=None)  # (stored: read from disk)
                scorer.add(sample[NAME], sample[a_key], sample[b_key], on_disk, sample.get(GT))
                now = time.perf_counter()
                seconds["score"] += now - clock
                clock = now
        per_image = None
        if scorer is not None:
            per_image = scorer.finish()
            seconds["score"] += time.perf_counter() - clock
    return SplitPass(split, len(dataset), dataset.split_hash(), float(np.mean(times)) if times else math.nan,
                     channels, seconds, per_image, LabelView(dataset, labels) if labels is not None else None,
                     native_seg.compute() if native_seg is not None else None)


def evaluate_classifier(prep: PreparedRun, model: L.LightningModule,
                        datamodule: PairedDataModule) -> tuple[dict[str, float], int, str, dict[str, Any] | None]:
    """Accuracy, macro-F1 and mean cross-entropy (`cls_nll`) of the fused logits, accuracy of each unimodal head,
    on the test split, and for a model with per-modality encoders the linear probes' accuracies (`probe_<modality>`,
    fusion_bench.benchmark.probes: fitted on the frozen features of the training split); also the first test sample
    as a batch of one (the GFLOPs input)."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    dataset = datamodule.dataset("test")
    loader = DataLoader(dataset, batch_size=64, shuffle=False, num_workers=prep.spec.num_workers,
                        collate_fn=collate_samples)
    model = model.to(prep.device).eval()
    dtype = model_dtype(model)
    outputs: dict[str, list[torch.Tensor]] = defaultdict(list)
    targets = []
    nll = 0.0  # summed cross-entropy of the fused head (float64 sum)
    first = None
    with torch.no_grad(), computing_in(dtype):
        for batch in tqdm(loader, desc="evaluate", disable=not prep.spec.progress, leave=False):
            if first is None:
                first = {k: v[:1] for k, v in batch.items()}
            batch = cast_floating({k: v.to(prep.device) if isinstance(v, torch.Tensor) else v
                                   for k, v in batch.items()}, dtype)
            for head, logits in model(batch).items():
                outputs[head].append(logits.argmax(1).cpu())
                if head == "fused":
                    nll += float(torch.nn.functional.cross_entropy(logits.double(), batch[TARGET], reduction="sum"))
            targets.append(batch[TARGET].cpu())
    target = torch.cat(targets)
    k = model.num_classes
    preds = {head: torch.cat(v) for head, v in outputs.items()}
    result = {
        "cls_acc": float(multiclass_accuracy(preds["fused"], target, num_classes=k, average="micro")),
        "cls_macro_f1": float(multiclass_f1_score(preds["fused"], target, num_classes=k, average="macro")),
        "cls_nll": nll / len(target),  # mean test cross-entropy of the fused head: a continuous score
    }
    for head, pred in preds.items():
        if head != "fused":
            result[f"acc_{head}"] = float(multiclass_accuracy(pred, target, num_classes=k, average="micro"))
    if has_probes(model):
        result.update(probe_scores(model, datamodule.dataset("train"), dataset, prep.device, k,
                                   prep.spec.num_workers))
    return result, len(dataset), dataset.split_hash(), first


def nan_summary(per_image: pd.DataFrame) -> dict[str, Any]:
    """`n_nan` (NaN per-image values in all) and `nan_metrics` ("CC:2;SCD:2") of a per-image table."""
    counts = {m: int(per_image[m].isna().sum()) for m in per_image.columns if m != "name"}
    counts = {m: n for m, n in counts.items() if n}
    return {"n_nan": sum(counts.values()), "nan_metrics": ";".join(f"{m}:{n}" for m, n in counts.items())}


def fuse_to_folder(prep: PreparedRun, split: str, out: Path, weights: Path | None = None) -> SplitPass:
    """`fusion-bench fuse`: fuse `split` of the run's dataset into `out` (PNGs named like the samples) with the
    method untrained (training-free methods), with the run's released weights (preset released: loaded when the
    method is built) or with `weights` from `fusion-bench train` (checked, and read without running any code, before
    anything is built)."""
    splits = prep.datamodule_cls.dataset_class.available_splits(prep.root, **prep.spec.dataset_options)
    if split not in splits:
        raise BenchError(f"--split {split!r}: dataset {prep.spec.dataset!r} here has the splits {', '.join(splits)}")
    method, preset = prep.spec.method, prep.spec.preset
    if weights is not None:
        read_weights(weights, method, preset, prep.config)
    datamodule = build_datamodule(prep, 0)
    model = build_method(prep, datamodule)
    if weights is not None:
        load_weights(model, weights, method, preset, prep.config)
    elif model.trainable and prep.released is None:
        raise BenchError(f"{method} is trainable: pass --weights from `fusion-bench train`, or its released weights "
                         "(--weights FILE|zoo)")
    return fuse_split(prep, model, datamodule, out, split=split)
