"""Scoring a trained model for one seed, into its result row: the test split's pass (fused PNGs, per-image metrics,
a segmenting method's own head) or a classifier's accuracy, the downstream evaluators trained on the fused training
images, efficiency (parameters, GFLOPs, fuse time, peak memory) and provenance (with the request's own: released
weights, pretrained initialisations, published images); written to the seed's folder as row.csv,
metrics_per_image.csv, downstream_per_class.csv and timings.json. A published row's efficiency columns are empty.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch

from fusion_bench import numerics
from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.base.method import SegFusionMethod
from fusion_bench.base.precision import cast_floating, computing_in, model_dtype
from fusion_bench.benchmark.config import overrides_text
from fusion_bench.benchmark.downstream import label_keys, needs_val, run_evaluators
from fusion_bench.benchmark.evaluation import SplitPass, evaluate_classifier, fuse_split, nan_summary
from fusion_bench.benchmark.profiling import PeakMemory, count_gflops, count_params_m, fusion_inputs
from fusion_bench.benchmark.provenance import provenance
from fusion_bench.benchmark.results import REQUEST_PROVENANCE
from fusion_bench.benchmark.spec import PreparedRun
from fusion_bench.benchmark.timing import PhaseTimer
from fusion_bench.errors import BenchError
from fusion_bench.types import Task

GFLOPS_SIZE = (256, 256)


def evaluate_seed(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
                  seed: int, train_s: float, train_mixture: str = "", timer: PhaseTimer | None = None,
                  memory: PeakMemory | None = None, wandb_run: Any = None) -> dict[str, Any]:
    """Score a (trained) model on the test split: fused PNGs, per-image metrics, downstream, efficiency and
    provenance under `run_dir` (with its row.csv and timings.json); returns the row, with the timings under the
    key `_timings` (not a column). `train_mixture` names the datasets the model was trained on when that is not
    just `prep`'s dataset (fusion_bench.benchmark.mixture). `memory`: started at the seed's beginning (peak_mem_mb
    is its peak up to the end of scoring; default: from now). `wandb_run`: the row, the downstream evaluators' curves
    and a few fused images also go to this wandb run (fusion_bench.benchmark.wandb_log)."""
    timer = timer or PhaseTimer()
    memory = memory or PeakMemory(prep.device).start()
    row: dict[str, Any] = {
        "method": prep.spec.method,
        "dataset": prep.spec.dataset,
        "task": prep.task.value,
        "preset": prep.spec.preset,
        "seed": seed,
        "config_hash": prep.config_hash,
        "metric_dialect": prep.dialect or "",
        "train_mixture": train_mixture,
        "overrides": overrides_text(prep.overrides),
        "protocol": prep.spec.protocol_variant or "",  # `bench --protocol`: balance, robust; empty: the standard one
    }
    test: SplitPass | None = None
    first_batch = None
    if prep.task is Task.CLASSIFICATION:
        with timer("evaluate"):
            scores, n_images, split_hash, first_batch = evaluate_classifier(prep, model, datamodule)
        row.update(scores)
        fuse_ms = math.nan
    else:
        test_set = datamodule.dataset("test")
        test = fuse_split(prep, model, datamodule, run_dir / "fused", score=True,
                          label_keys=label_keys(list(prep.evaluators)),
                          native=isinstance(model, SegFusionMethod) and test_set.class_names is not None)
        timer.add(test.seconds)
        fuse_ms, n_images, split_hash = test.fuse_ms, test.n_images, test.split_hash
        per_image = test.per_image
        assert per_image is not None
        per_image.to_csv(run_dir / "metrics_per_image.csv", index=False)
        row.update({m: float(per_image[m].mean()) for m in per_image.columns if m != "name"})
        row.update(nan_summary(per_image))
    extra_columns = getattr(model, "row_columns", None)  # a method's own provenance (e.g. CMD-CTA's scan_backend)
    if callable(extra_columns):
        row.update(extra_columns())
    peak_mem = memory.peak_mb()  # the method's own peak, before the in-process downstream evaluators run
    if test is not None:
        row.update(run_downstream(prep, model, datamodule, run_dir, seed, test, timer))
    published = bool(prep.fused_files)  # nothing ran here: no parameters, FLOPs or times to report
    with timer("gflops"):
        gflops = math.nan if published else _gflops(prep, model, test.channels if test else None, first_batch)
    row.update({
        "params_m": math.nan if published else count_params_m(model),
        "gflops": gflops,
        "fuse_ms_per_image": fuse_ms,
        "train_s": math.nan if published or prep.released is not None else train_s,  # not trained here
        "peak_mem_mb": math.nan if published else peak_mem,
        "n_images": n_images,
        "split_hash": split_hash,
        **dict.fromkeys(REQUEST_PROVENANCE, ""),
        **prep.provenance,
        **provenance(prep.device),
    })
    if prep.evaluators and numerics.is_pinned() and not numerics.downstream_pinned(prep.spec.downstream_numerics):
        row["numerics"] += ";downstream=native"  # the downstream scores came from the libraries' own kernels
    pd.DataFrame([row]).to_csv(run_dir / "row.csv", index=False)
    if wandb_run is not None:
        from fusion_bench.benchmark.wandb_log import log_results

        log_results(wandb_run, row, run_dir)
    timings = {"method": prep.spec.method, "dataset": prep.spec.dataset, "preset": prep.spec.preset, "seed": seed,
               "seconds": {k: round(v, 3) for k, v in timer.summary().items()}}
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    row["_timings"] = timings
    return row


def run_downstream(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
                   seed: int, test: SplitPass, timer: PhaseTimer | None = None) -> dict[str, float]:
    """Native segmentation scores from the test pass and the downstream evaluators; per-class values go to
    `run_dir/downstream_per_class.csv`, evaluator logs to `run_dir/downstream/<evaluator>/`. The train (and val)
    splits are fused in one pass each that keeps their labels; the evaluators read labels from those passes.
    Seconds go to `timer` as fuse_train / fuse_val and one phase per evaluator (seg, det)."""
    timer = timer or PhaseTimer()
    values: dict[str, float] = {}
    per_class: list[dict[str, Any]] = []
    if test.native is not None:
        values.update(test.native[0])
        per_class += test.native[1]
    if prep.evaluators:
        if test.labels is None:
            raise BenchError("internal: the test pass kept no labels for the downstream evaluators")
        splits = ["train"]
        if "val" in datamodule.available_splits() and any(needs_val(n, c) for n, c in prep.evaluators.items()):
            splits.append("val")
        fused = {"test": run_dir / "fused"}
        labelled: dict[str, Any] = {"test": test.labels}
        for split in splits:
            fused[split] = run_dir / f"fused_{split}"
            result = fuse_split(prep, model, datamodule, fused[split], split=split,
                                label_keys=label_keys(list(prep.evaluators)))
            timer.add({f"fuse_{split}": result.seconds["fuse"]})
            labelled[split] = result.labels
        scores, records, seconds = run_evaluators(prep.evaluators, fused, labelled, seed, prep.device,
                                                  run_dir / "downstream", prep.spec.progress,
                                                  prep.spec.downstream_numerics)
        timer.add(seconds)  # seg and det overlap when they run in parallel (downstream.run_in_parallel)
        values.update(scores)
        per_class += records
    if per_class:
        pd.DataFrame(per_class).to_csv(run_dir / "downstream_per_class.csv", index=False)
    return values


def _gflops(prep: PreparedRun, model: L.LightningModule, channels: tuple[int, int] | None,
            batch: dict[str, Any] | None) -> float:
    """GFLOPs of one fuse at GFLOPS_SIZE (random inputs with the sources' channels), or of one classifier call. A
    training-free method's count includes its element-wise arithmetic (`count_gflops(elementwise=True)`, as
    `profiling.profile_fusion`): its rules are its work; a copy of a source counts 0."""
    model = model.to(prep.device).eval()
    dtype = model_dtype(model)
    with computing_in(dtype):
        if prep.task is Task.CLASSIFICATION:
            if batch is None:
                return math.nan
            batch = cast_floating({k: v.to(prep.device) if isinstance(v, torch.Tensor) else v
                                   for k, v in batch.items()}, dtype)
            return count_gflops(lambda: model(batch))
        if channels is None:
            return math.nan
        x1, x2 = cast_floating(fusion_inputs(channels, *GFLOPS_SIZE, prep.device), dtype)
        return count_gflops(lambda: model.fuse(x1, x2), elementwise=not getattr(model, "trainable", True))
