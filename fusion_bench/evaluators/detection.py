"""YOLO downstream detection: train ultralytics YOLO on a method's fused training images, score its fused test images.

The detector is built from its yaml (``yolo11n.yaml`` by default, ``yolov8n.yaml`` selectable; optional local
weights by path, never downloaded). A YOLO dataset view is written under the run's ``det`` folder: links to the
fused PNGs (copies only where links fail) and YOLO label files from the dataset's boxes. Ultralytics runs in a
child process (:mod:`fusion_bench.evaluators.yolo_worker`) with its settings, fonts and outputs under that folder,
offline, with ``plots=False``, so it neither downloads nor touches the user's ultralytics settings.

Scores: ``det_map50`` (mAP@0.5) and ``det_map50_95`` (mAP@0.5:0.95, COCO's 10 IoU thresholds) on the fused test
images, as ultralytics' validator computes them (101-point interpolated AP per class, mean over the classes that
occur in the test labels), plus precision/recall and per-class AP.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from fusion_bench.data.base import FusionDataset, holdout_indices
from fusion_bench.errors import DownstreamError
from fusion_bench.evaluators.common import fused_paths, require_extra, resolve_device, write_json
from fusion_bench.evaluators.spec import EvaluatorSpec
from fusion_bench.types import BOXES, LABELS

YOLO_MODELS = ("yolo11n", "yolov8n", "yolo11-smoke")
# yolo11-smoke: YOLO11 at a third of the depth and half the width of yolo11n (compound scale [depth, width,
# max_channels]); its yaml is derived at run time from the yolo11.yaml that ultralytics ships (nothing copied).
SMOKE_MODEL_SCALE = (0.33, 0.125, 256)


@dataclass(frozen=True)
class DetEvalConfig:
    """Everything that defines one detection protocol (the same budget for every fusion method).

    model: an ultralytics model yaml name (``yolo11n``, ``yolov8n``, or any ``*.yaml`` ultralytics ships or a
    path to one). pretrained: local ``.pt`` weights loaded into that model (None: from scratch). image_size: the
    square training/inference size. Validation during training (best-checkpoint selection) uses the dataset's
    val split when it has one, else a seeded ``val_fraction`` of the fused training images; ``val_fraction=0``
    trains without validation and keeps the last weights. ``train_args`` go to ``YOLO.train`` unchanged
    (e.g. ``mosaic``, ``lr0``); everything else is ultralytics' default. ``dtype: float64`` trains and tests the
    detector in float64 (see yolo_worker: scores that repeat on every CPU; no AMP, no validation).
    """

    model: str = "yolo11n"
    pretrained: str | None = None
    epochs: int = 100
    batch_size: int = 16
    image_size: int = 640
    val_fraction: float = 0.1
    workers: int = 8
    amp: bool = True
    dtype: str = "float32"
    train_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"detection dtype {self.dtype!r}: expected float32 or float64")
        if self.dtype == "float64" and (self.amp or self.val_fraction > 0):
            raise ValueError("detection dtype float64 trains without AMP and without validation (amp: false, "
                             "val_fraction: 0): ultralytics validates during training in float32")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 32:
            raise ValueError("detection config: epochs and batch_size must be >= 1 and image_size >= 32")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"detection config: val_fraction must be in [0, 1), got {self.val_fraction}")

    def replace(self, **changes: Any) -> DetEvalConfig:
        return replace(self, **changes)

    @property
    def model_yaml(self) -> str:
        return self.model if self.model.endswith((".yaml", ".yml")) else f"{self.model}.yaml"


def smoke_model_yaml(folder: Path) -> Path:
    """Write `yolo11n-smoke.yaml` (ultralytics' yolo11.yaml with the single scale SMOKE_MODEL_SCALE, under a file
    name that makes ultralytics pick that scale) into `folder`; returns its path."""
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise DownstreamError("the detection evaluator needs ultralytics: pip install -e '.[detection]'")
    source = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models" / "11" / "yolo11.yaml"
    model = yaml.safe_load(source.read_text())
    model["scales"] = {"n": list(SMOKE_MODEL_SCALE)}
    path = folder / "yolo11n-smoke.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return path


DET_PRESETS: dict[str, DetEvalConfig] = {
    # CPU-fast (about 25 s of one core on synthetic-ivif): the narrow yolo11-smoke at 128 px, 30 epochs without
    # validation, AdamW 1e-2, no mosaic (a mosaic of 128-px scenes makes the objects too small to learn in 30
    # epochs). Enough to tell an informative fused image from a constant one, not to rank methods.
    "smoke": DetEvalConfig(model="yolo11-smoke", epochs=30, batch_size=16, image_size=128, val_fraction=0.0,
                           workers=0, amp=False, train_args={"warmup_epochs": 1, "close_mosaic": 0, "mosaic": 0.0,
                                                             "optimizer": "AdamW", "lr0": 0.01}),
    # SSVIF's M3FD protocol: YOLOv11n, 100 epochs, default ultralytics settings.
    "paper": DetEvalConfig(model="yolo11n", epochs=100, batch_size=16, image_size=640, val_fraction=0.1),
}


def det_preset(name: str, **overrides: Any) -> DetEvalConfig:
    """The named preset (``smoke`` | ``paper``), with field overrides."""
    if name not in DET_PRESETS:
        raise ValueError(f"unknown detection preset {name!r}; valid: {', '.join(DET_PRESETS)}")
    return DET_PRESETS[name].replace(**overrides)


# ------------------------------------------------------------------------------------------------
# YOLO dataset view
# ------------------------------------------------------------------------------------------------


def yolo_label_lines(boxes: torch.Tensor, labels: torch.Tensor, height: int, width: int, where: str) -> list[str]:
    """Absolute xyxy pixel boxes -> YOLO lines ``cls cx cy w h`` (normalised to the image size).

    Boxes are clipped to the image; a box with no area inside the image is an error naming `where`.
    """
    lines = []
    for (x0, y0, x1, y1), cls in zip(boxes.tolist(), labels.tolist()):
        cx0, cx1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        cy0, cy1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        if cx1 <= cx0 or cy1 <= cy0:
            raise DownstreamError(f"{where}: box {[x0, y0, x1, y1]} has no area inside the {width}x{height} image")
        lines.append(f"{int(cls)} {(cx0 + cx1) / 2 / width:.6f} {(cy0 + cy1) / 2 / height:.6f} "
                     f"{(cx1 - cx0) / width:.6f} {(cy1 - cy0) / height:.6f}")
    return lines


def _link(src: Path, dst: Path) -> None:
    """Symlink dst -> src; hard link or copy where symlinks are not possible."""
    dst.unlink(missing_ok=True)
    try:
        dst.symlink_to(src.resolve())
    except OSError:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def write_yolo_split(view_dir: Path, split: str, images: Sequence[Path], dataset: FusionDataset,
                     indices: Sequence[int] | None = None, progress: bool = True) -> int:
    """Write ``images/<split>`` (links to the fused PNGs) and ``labels/<split>`` for the samples at `indices`.

    Returns the number of boxes written. Image size comes from the dataset sample (the fused image keeps the
    source size; the runner checks that).
    """
    image_dir, label_dir = view_dir / "images" / split, view_dir / "labels" / split
    for d in (image_dir, label_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    indices = range(len(dataset)) if indices is None else indices
    n_boxes = 0
    for i in tqdm(indices, desc=f"yolo view {dataset.name}/{split}", disable=not progress, leave=False):
        sample = dataset[i]
        if BOXES not in sample or LABELS not in sample:
            raise DownstreamError(f"{dataset.name}/{dataset.split}: sample {sample.get('name', i)} has no boxes")
        height, width = next(v.shape[-2:] for k, v in sample.items()
                             if k in dataset.modalities and isinstance(v, torch.Tensor))
        src = images[i]
        _link(src, image_dir / src.name)
        lines = yolo_label_lines(sample[BOXES], sample[LABELS], int(height), int(width),
                                 f"{dataset.name}/{dataset.split}/{sample.get('name', i)}")
        (label_dir / f"{src.stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        n_boxes += len(lines)
    return n_boxes


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------


def evaluate_detection_folders(fused_train: str | Path, fused_test: str | Path, train_set: FusionDataset,
                               test_set: FusionDataset, config: DetEvalConfig | str = "smoke", *,
                               fused_val: str | Path | None = None, val_set: FusionDataset | None = None,
                               seed: int = 0, device: str | torch.device = "cpu", log_dir: str | Path,
                               progress: bool = True, pinned: bool = True, threads: int | None = None,
                               extra_tests: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """Train YOLO on the fused training PNGs (``<sample name>.png``) and score the fused test PNGs.

    Returns ``det_map50``, ``det_map50_95``, ``det_precision``, ``det_recall``, ``det_ap50_per_class`` and
    ``det_ap50_95_per_class`` ({class: AP}, NaN for classes absent from the test labels) and the run facts.
    `extra_tests` (label -> folder of fused test images, e.g. the robustness protocol's corrupted ones) are scored by
    the same trained model, without retraining: ``det_extra`` {label: {det_map50, det_map50_95, det_precision,
    det_recall}}. Everything ultralytics writes (settings, label caches, ``results.csv`` training log, weights)
    stays under `log_dir`; its console output goes to ``log_dir/yolo.log``.
    """
    fused = {"train": Path(fused_train), "test": Path(fused_test)}
    datasets: dict[str, Any] = {"train": train_set, "test": test_set}
    if fused_val is not None and val_set is not None:
        fused["val"], datasets["val"] = Path(fused_val), val_set
    return start(config, fused, datasets, seed=seed, device=device, log_dir=Path(log_dir), progress=progress,
                 pinned=pinned, threads=threads, extra_tests=extra_tests).result()


def start(config: DetEvalConfig | str, fused: dict[str, Path], datasets: dict[str, Any], *, seed: int,
          device: str | torch.device, log_dir: Path, progress: bool, pinned: bool = True,
          threads: int | None = None, extra_tests: Mapping[str, str | Path] | None = None) -> PendingDetection:
    """Write the YOLO dataset view and start training in a child process; returns at once (see
    :class:`PendingDetection`). Every request error is raised here, before the child starts. The child inherits
    this process's numerics when `pinned`, else it runs the libraries' own kernels on `threads` threads (default:
    this process's torch thread count). `extra_tests`: see `evaluate_detection_folders`."""
    require_extra("ultralytics", "detection", "ultralytics")
    if isinstance(config, str):
        config = det_preset(config)
    train_set, test_set = datasets["train"], datasets["test"]
    names = test_set.box_class_names
    if names is None:
        raise DownstreamError(f"{test_set.name} has no detection labels (box_class_names is None); "
                              "detection does not apply")
    log_path = Path(log_dir).resolve()
    view = log_path / "dataset"
    train_images = fused_paths(fused["train"], train_set)
    test_images = fused_paths(fused["test"], test_set)
    if config.pretrained is not None and not Path(config.pretrained).is_file():
        raise DownstreamError(f"detection pretrained weights {config.pretrained} do not exist (expected a local "
                              ".pt file; weights are never downloaded)")

    n_train = len(train_images)
    if "val" in fused:
        val_images = fused_paths(fused["val"], datasets["val"])
        write_yolo_split(view, "train", train_images, train_set, progress=progress)
        write_yolo_split(view, "val", val_images, datasets["val"], progress=progress)
        n_val = len(val_images)
    else:
        try:
            train_idx, val_idx = holdout_indices(n_train, config.val_fraction, seed)
        except ValueError as err:
            raise DownstreamError(f"detection validation split of {train_set.name}/train: {err}") from err
        write_yolo_split(view, "train", train_images, train_set, train_idx, progress=progress)
        if val_idx:
            write_yolo_split(view, "val", train_images, train_set, val_idx, progress=progress)
        n_train, n_val = len(train_idx), len(val_idx)
    n_test_boxes = write_yolo_split(view, "test", test_images, test_set, progress=progress)
    data = {"path": str(view), "train": "images/train", "val": "images/val" if n_val else "images/test",
            "test": "images/test", "names": dict(enumerate(names))}
    data_yaml = log_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    # each extra test set: its own view split (links to its images, the test labels) and data file whose test split
    # it is; the worker scores the trained weights on each
    extra_yaml: dict[str, str] = {}
    for index, (label, folder) in enumerate((extra_tests or {}).items()):
        split = f"extra{index}"
        write_yolo_split(view, split, fused_paths(folder, test_set), test_set, progress=False)
        path = log_path / f"data-{split}.yaml"
        path.write_text(yaml.safe_dump({**data, "test": f"images/{split}"}, sort_keys=False))
        extra_yaml[label] = str(path)

    dev = resolve_device(device)
    model_yaml = str(smoke_model_yaml(log_path)) if config.model == "yolo11-smoke" else config.model_yaml
    request = {
        "data": str(data_yaml), "model_yaml": model_yaml, "pretrained": config.pretrained,
        "epochs": config.epochs, "batch": config.batch_size, "imgsz": config.image_size, "seed": seed,
        "device": "cpu" if dev.type == "cpu" else str(dev.index or 0), "workers": config.workers,
        "amp": config.amp and dev.type == "cuda", "validate": bool(n_val), "train_args": config.train_args,
        "project": str(log_path), "class_names": list(names), "threads": threads or torch.get_num_threads(),
        "dtype": config.dtype, "extra_tests": extra_yaml,
    }
    write_json(log_path / "yolo_request.json", request)
    facts = {"det_n_train": n_train, "det_n_val": n_val, "det_n_test": len(test_images),
             "det_n_test_boxes": n_test_boxes, "det_config": asdict(config), "seed": seed}
    from fusion_bench import numerics

    env = None if pinned else numerics.native_environment(request["threads"])
    return PendingDetection(log_path, config.epochs, facts, progress, env)


class PendingDetection:
    """YOLO training in a child process (`python -m fusion_bench.evaluators.yolo_worker`), with its settings and
    outputs under the log folder, offline; `result()` waits for it (a progress bar over the epochs, read from
    ultralytics' results.csv) and returns the scores."""

    def __init__(self, log_path: Path, epochs: int, facts: dict[str, Any], progress: bool,
                 env: dict[str, str] | None = None):
        self.log_path, self.epochs, self.facts, self.progress = log_path, epochs, facts, progress
        env = dict(os.environ if env is None else env)
        env.update({"YOLO_CONFIG_DIR": str(log_path / "ultralytics"), "YOLO_OFFLINE": "1",
                    "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "YOLO_VERBOSE": "true"})
        cmd = [sys.executable, "-m", "fusion_bench.evaluators.yolo_worker", str(log_path / "yolo_request.json")]
        self._log = open(log_path / "yolo.log", "w")  # noqa: SIM115 - closed in result()
        self._start = time.perf_counter()
        self._proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.seconds = math.nan

    def _epochs_done(self) -> int:
        path = self.log_path / "train" / "results.csv"
        try:
            return max(0, len(path.read_text().splitlines()) - 1)
        except OSError:
            return 0

    def result(self) -> dict[str, Any]:
        try:
            with tqdm(total=self.epochs, desc=f"yolo (log: {self.log_path / 'yolo.log'})", unit="epoch",
                      disable=not self.progress, leave=False) as bar:
                while True:
                    try:
                        code = self._proc.wait(timeout=0.5)
                        break
                    except subprocess.TimeoutExpired:
                        bar.update(self._epochs_done() - bar.n)
        except KeyboardInterrupt:
            self._proc.kill()
            raise
        finally:
            self._log.close()
        self.seconds = time.perf_counter() - self._start
        if code != 0 or not (self.log_path / "yolo_result.json").is_file():
            tail = "".join((self.log_path / "yolo.log").read_text().splitlines(keepends=True)[-15:])
            raise DownstreamError(f"YOLO training failed (exit {code}); log: {self.log_path / 'yolo.log'}\n{tail}")
        result = json.loads((self.log_path / "yolo_result.json").read_text())
        result.update(self.facts)
        for key in ("det_ap50_per_class", "det_ap50_95_per_class"):
            result[key] = {k: (math.nan if v is None else v) for k, v in result[key].items()}
        write_json(self.log_path / "det_result.json", result)
        return result

    def __del__(self) -> None:  # an abandoned evaluation must not leave a training process behind
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


def preset_config(preset: str, **overrides: Any) -> DetEvalConfig:
    return det_preset(preset, **overrides)


def validates(config: DetEvalConfig) -> bool:
    """Validation picks the best checkpoint (val split when fused, else a held-out part of train)."""
    return config.val_fraction > 0


DETECTION = EvaluatorSpec(
    name="det", description="ultralytics YOLO trained on the fused images: mAP@0.5, mAP@0.5:0.95",
    module=__name__, row_columns=("det_map50", "det_map50_95", "det_train_loss"),
    per_class=(("ap50", "det_ap50_per_class"), ("ap50_95", "det_ap50_95_per_class")),
    label_attribute="box_class_names", labels="detection boxes", label_keys=(BOXES, LABELS), child_process=True)
