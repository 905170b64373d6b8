"""SegFormer downstream segmentation: train on a method's fused training images, score its fused test images.

The model is ``transformers``' SegFormer built from a ``SegformerConfig`` for MiT-B0..B5 (never downloaded;
optional local pretrained weights by path; fusion_bench.evaluators.segformer). Training is a plain seeded PyTorch
loop: cross-entropy with the dataset's ignore index on logits upsampled to the label size, AdamW, optional backbone
freeze, a two-phase cosine schedule and optional early stopping on a validation mIoU.

Metric convention (stated in every result as ``seg_background_counts``): IoU per class is computed from one
confusion matrix accumulated over the whole test split (torchmetrics ``MulticlassConfusionMatrix``), at the
labels' native resolution, ignoring pixels labelled ``ignore_index`` (255). mIoU is the mean over classes
*including background* by default (as RTFNet/AMDANet/SegMiF compute it on MFNet/MSRS/FMB);
``include_background=False`` excludes class 0. A class with neither ground truth nor prediction anywhere in
the test split has IoU NaN and is left out of the mean. Pixel accuracy is over all non-ignored pixels; mean
class accuracy (``seg_macc``) is the NaN-mean of per-class recall.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from fusion_bench.base.precision import computing_in
from fusion_bench.data.base import FusionDataset, holdout_indices
from fusion_bench.errors import DownstreamError
from fusion_bench.evaluators.common import (
    CsvLog,
    FusedImages,
    fused_paths,
    require_extra,
    resolve_device,
    seeded,
    to_rgb,
    write_json,
)
from fusion_bench.evaluators.segformer import IMAGENET_MEAN, IMAGENET_STD, MIT_VARIANTS, build_segformer
from fusion_bench.evaluators.spec import Deferred, EvaluatorSpec
from fusion_bench.types import IGNORE_INDEX, MASK

log = logging.getLogger(__name__)

# the floating-point type SegFormer trains and predicts in: float64 makes the scores independent of the CPU's kernels
# (the regression suite's downstream entry uses it); float32 is what every protocol uses
EVAL_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SegEvalConfig:
    """Everything that defines one segmentation protocol (the same budget for every fusion method).

    variant: MiT encoder ``b0``..``b5``; hidden_sizes / depths / decoder_hidden_size / num_attention_heads
    override it (smoke uses a
    narrower B0). pretrained: local weights (a ``from_pretrained`` folder, or a .safetensors/.pt state dict of
    ``SegformerForSemanticSegmentation`` or of its ``SegformerModel`` backbone); None trains from scratch.
    image_size: (h, w) used for training and inference (predictions are upsampled to the label size);
    None uses the most common training-image size. Schedule: epochs with the backbone frozen for the first
    ``freeze_backbone_epochs``; the learning rate follows a cosine from ``lr`` to ``lr_unfrozen`` over the
    frozen phase, then a cosine from ``lr_unfrozen`` to ``min_lr`` over the rest (no freeze: one cosine from
    ``lr`` to ``min_lr``). Early stopping (``early_stopping_patience`` epochs without a better validation
    mIoU, counted only once the backbone is unfrozen) restores the best weights; validation images are the
    fused val split when given, else a ``val_fraction`` of the training images held out by seed.

    The backbone freeze fine-tunes *pretrained* weights (the SSVIF protocol starts from SegMiF's model); freezing a
    randomly initialised encoder would train the decoder on random features. So a config without ``pretrained``
    never freezes: the requested epochs move to ``freeze_skipped_epochs`` (and the schedule is the single
    cosine), which the result's ``seg_config`` and the run's config hash show; with ``pretrained`` they move back.

    dtype: ``float32`` (default) or ``float64`` for the weights, inputs and every computation (training and
    prediction): in float64 the scores repeat on every CPU whatever its kernels (see fusion_bench.base.precision).
    """

    variant: str = "b0"
    hidden_sizes: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    decoder_hidden_size: int | None = None
    num_attention_heads: tuple[int, ...] | None = None
    drop_path_rate: float = 0.1
    pretrained: str | None = None
    image_size: tuple[int, int] | None = None
    epochs: int = 80
    batch_size: int = 12
    lr: float = 5e-4
    lr_unfrozen: float = 3e-5
    min_lr: float = 0.0
    freeze_backbone_epochs: int = 0
    freeze_skipped_epochs: int = 0
    weight_decay: float = 0.01
    early_stopping_patience: int | None = None
    val_fraction: float = 0.1
    hflip: bool = True
    include_background: bool = True
    eval_batch_size: int = 8
    num_workers: int = 0
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in EVAL_DTYPES:
            raise ValueError(f"segmentation dtype {self.dtype!r}: expected one of {', '.join(EVAL_DTYPES)}")
        if self.variant not in MIT_VARIANTS:
            raise ValueError(f"unknown SegFormer variant {self.variant!r}; valid: {', '.join(MIT_VARIANTS)}")
        if self.freeze_backbone_epochs < 0 or self.freeze_skipped_epochs < 0:
            raise ValueError("freeze_backbone_epochs and freeze_skipped_epochs must be >= 0")
        # the effective freeze: only with pretrained weights (see the class docstring)
        if not self.pretrained and self.freeze_backbone_epochs:
            object.__setattr__(self, "freeze_skipped_epochs", self.freeze_backbone_epochs)
            object.__setattr__(self, "freeze_backbone_epochs", 0)
        elif self.pretrained and self.freeze_skipped_epochs:
            requested = self.freeze_backbone_epochs or self.freeze_skipped_epochs
            object.__setattr__(self, "freeze_backbone_epochs", requested)
            object.__setattr__(self, "freeze_skipped_epochs", 0)
        if self.freeze_backbone_epochs > self.epochs:
            raise ValueError("freeze_backbone_epochs must be within 0..epochs")

    def replace(self, **changes: Any) -> SegEvalConfig:
        return replace(self, **changes)


SEG_PRESETS: dict[str, SegEvalConfig] = {
    # CPU-fast (about 20 s of one core on synthetic-ivif): a half-width B0 (heads 1/2/4/8) with a 32-wide decoder
    # at 64x80, 12 epochs, no validation.
    "smoke": SegEvalConfig(variant="b0", hidden_sizes=(16, 32, 64, 128), num_attention_heads=(1, 2, 4, 8),
                           decoder_hidden_size=32, image_size=(64, 80), drop_path_rate=0.0, epochs=12,
                           batch_size=8, lr=6e-3, min_lr=1e-4,
                           weight_decay=0.01, early_stopping_patience=None, val_fraction=0.0),
    # SSVIF appendix (segmentation setup): SegFormer-B3, AdamW, 80 epochs, batch 12, backbone frozen for
    # 30 epochs, lr 5e-4 then 3e-5 after unfreezing with cosine annealing, early stopping patience 10. The freeze
    # applies only with `pretrained` weights (the paper fine-tunes SegMiF's model); from scratch there is none
    # (freeze_skipped_epochs=30) and the lr follows one cosine from 5e-4 to 0.
    "paper": SegEvalConfig(variant="b3", epochs=80, batch_size=12, lr=5e-4, lr_unfrozen=3e-5, min_lr=0.0,
                           freeze_backbone_epochs=30, weight_decay=0.01, early_stopping_patience=10,
                           val_fraction=0.1),
}


def seg_preset(name: str, **overrides: Any) -> SegEvalConfig:
    """The named preset (``smoke`` | ``paper``), with field overrides."""
    if name not in SEG_PRESETS:
        raise ValueError(f"unknown segmentation preset {name!r}; valid: {', '.join(SEG_PRESETS)}")
    return SEG_PRESETS[name].replace(**overrides)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


def _prepare(image: Tensor, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> Tensor:
    """CxHxW [0, 1] -> normalised 3xhxw at `size`, computed in `dtype`."""
    x = to_rgb(image.to(dtype))
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype).view(3, 1, 1)
    return (x - mean) / std


def _resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(mask.shape[-2:]) == size:
        return mask.long()
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()


CACHE_LIMIT_BYTES = 2 << 30
"""Prepared (resized, normalised) training pairs are kept in memory when they fit in this many bytes."""


class _SegPairs(torch.utils.data.Dataset):
    def __init__(self, images: Sequence[Tensor], masks: Sequence[Tensor], size: tuple[int, int],
                 dtype: torch.dtype = torch.float32):
        self.images, self.masks, self.size, self.dtype = images, masks, size, dtype
        cache = len(images) * 3 * size[0] * size[1] * dtype.itemsize <= CACHE_LIMIT_BYTES
        self.cache: dict[int, tuple[Tensor, Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        image, mask = self.images[index], self.masks[index]
        if tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
            raise DownstreamError(f"training pair {index}: image {tuple(image.shape[-2:])} and mask "
                                  f"{tuple(mask.shape[-2:])} differ in size")
        pair = _prepare(image, self.size, self.dtype), _resize_mask(mask, self.size)
        if self.cache is not None:
            self.cache[index] = pair
        return pair


class _Subset(Sequence[Tensor]):
    def __init__(self, items: Sequence[Tensor], indices: Sequence[int]):
        self.items, self.indices = items, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Tensor:  # type: ignore[override]
        return self.items[self.indices[index]]


def _common_size(images: Sequence[Tensor]) -> tuple[int, int]:
    from collections import Counter

    sizes = Counter(tuple(images[i].shape[-2:]) for i in range(len(images)))
    (h, w), _ = sizes.most_common(1)[0]
    return int(h), int(w)


# ------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------


def _confusion_metric(num_classes: int, ignore_index: int):
    from torchmetrics.classification import MulticlassConfusionMatrix

    return MulticlassConfusionMatrix(num_classes=num_classes, ignore_index=ignore_index, validate_args=False)


def seg_scores(confusion: Tensor, class_names: Sequence[str], include_background: bool = True) -> dict[str, Any]:
    """mIoU / per-class IoU / pixel accuracy / mean class accuracy from a (target x prediction) confusion matrix."""
    cm = confusion.double()
    tp = cm.diag()
    gt, pred = cm.sum(1), cm.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
    recall = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, math.nan))
    counted = iou if include_background else iou[1:]
    total = cm.sum()
    return {
        "seg_miou": float(torch.nanmean(counted)) if not torch.isnan(counted).all() else math.nan,
        "seg_pixel_acc": float(tp.sum() / total) if total > 0 else math.nan,
        "seg_macc": float(torch.nanmean(recall if include_background else recall[1:])),
        "seg_iou_per_class": {name: float(v) for name, v in zip(class_names, iou, strict=True)},
        "seg_background_counts": include_background,
    }


@torch.no_grad()
def _predict_confusion(model: nn.Module, images: Sequence[Tensor], masks: Sequence[Tensor], size: tuple[int, int],
                       num_classes: int, ignore_index: int, device: torch.device, batch_size: int,
                       progress: bool, desc: str, save_dir: Path | None = None,
                       names: Sequence[str] | None = None) -> Tensor:
    """Accumulate the confusion matrix of predictions (at `size`, upsampled to each label's size).

    With `save_dir` and `names`, each image's predicted class map is written to ``save_dir/<name>.png``
    (8-bit class indices at the label's size; 16-bit when there are more than 256 classes).
    """
    metric = _confusion_metric(num_classes, ignore_index).to(device)
    model.eval()
    batch: list[tuple[Tensor, Tensor]] = []
    done = 0
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)

    def flush() -> None:
        nonlocal done
        dtype = next(model.parameters()).dtype
        x = torch.stack([_prepare(img, size, dtype) for img, _ in batch]).to(device)
        y = torch.stack([m.long() for _, m in batch]).to(device)
        logits = model(pixel_values=x).logits
        logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits.argmax(1)
        metric.update(pred, y)
        if save_dir is not None and names is not None:
            dtype = np.uint8 if num_classes <= 256 else np.uint16
            for j, p in enumerate(pred.cpu().numpy().astype(dtype)):
                Image.fromarray(p).save(save_dir / f"{names[done + j]}.png")
        done += len(batch)
        batch.clear()

    for i in tqdm(range(len(images)), desc=desc, disable=not progress, leave=False):
        image, mask = images[i], masks[i]
        if tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
            raise DownstreamError(f"{desc} pair {i}: image {tuple(image.shape[-2:])} and mask "
                                  f"{tuple(mask.shape[-2:])} differ in size")
        if batch and (tuple(mask.shape) != tuple(batch[0][1].shape) or len(batch) >= batch_size):
            flush()
        batch.append((image, mask))
    if batch:
        flush()
    return metric.compute().cpu()


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


def _cosine(start: float, end: float, progress: float) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def lr_at(config: SegEvalConfig, epoch_progress: float) -> float:
    """Learning rate at a fractional epoch (see SegEvalConfig for the two-phase cosine)."""
    frozen = config.freeze_backbone_epochs
    if frozen and epoch_progress < frozen:
        return _cosine(config.lr, config.lr_unfrozen, epoch_progress / frozen)
    start = config.lr_unfrozen if frozen else config.lr
    rest = max(config.epochs - frozen, 1)
    return _cosine(start, config.min_lr, (epoch_progress - frozen) / rest)


def evaluate_segmentation(train_images: Sequence[Tensor], train_masks: Sequence[Tensor],
                          test_images: Sequence[Tensor], test_masks: Sequence[Tensor], num_classes: int,
                          config: SegEvalConfig | str = "smoke", *, class_names: Sequence[str] | None = None,
                          val_images: Sequence[Tensor] | None = None, val_masks: Sequence[Tensor] | None = None,
                          ignore_index: int = IGNORE_INDEX, seed: int = 0, device: str | torch.device = "cpu",
                          log_dir: str | Path | None = None, progress: bool = True,
                          test_names: Sequence[str] | None = None,
                          extra_tests: Mapping[str, Sequence[Tensor]] | None = None) -> dict[str, Any]:
    """Train SegFormer on (train_images, train_masks), return test-split segmentation scores.

    `extra_tests` (label -> images paired with `test_masks`, e.g. the robustness protocol's fused corrupted test
    images): scored by the same trained model, no retraining; their scores go to ``seg_extra`` ({label:
    {seg_miou, seg_pixel_acc, seg_macc}}).

    Images: float CxHxW in [0, 1] with 1, 3 or 4 channels (any indexable sequence; loaded lazily). Masks: long
    HxW class indices with `ignore_index` for unlabeled pixels. Returns ``seg_miou``, ``seg_pixel_acc``,
    ``seg_macc``, ``seg_iou_per_class`` ({class: IoU}), ``seg_background_counts`` and the run facts
    (epochs run, best epoch, seconds per epoch, the config). With `log_dir`, writes ``seg_train_log.csv``
    (one row per epoch) and ``seg_result.json`` there, and with `test_names` (one per test image) each test
    image's predicted class map to ``predictions/<name>.png`` (the report draws them).
    """
    if isinstance(config, str):
        config = seg_preset(config)
    if len(train_images) != len(train_masks) or len(test_images) != len(test_masks):
        raise DownstreamError(f"images and masks must pair up: got {len(train_images)}/{len(train_masks)} train, "
                              f"{len(test_images)}/{len(test_masks)} test")
    if not len(train_images) or not len(test_images):
        raise DownstreamError("segmentation needs at least one training and one test image")
    names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    dev = resolve_device(device)
    log_path = Path(log_dir) if log_dir is not None else None
    size = tuple(config.image_size) if config.image_size else _common_size(train_images)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    dtype = EVAL_DTYPES[config.dtype]
    with seeded(seed, deterministic=dev.type == "cuda"), computing_in(dtype):
        # validation: the given split, else a seeded hold-out of the training images (early stopping only)
        if val_images is None and config.early_stopping_patience and config.val_fraction > 0:
            try:
                train_idx, val_idx = holdout_indices(len(train_images), config.val_fraction, seed)
            except ValueError as err:
                raise DownstreamError(f"segmentation validation split: {err}") from err
            val_images, val_masks = _Subset(train_images, val_idx), _Subset(train_masks, val_idx)
            train_images, train_masks = _Subset(train_images, train_idx), _Subset(train_masks, train_idx)
        use_val = bool(config.early_stopping_patience) and val_images is not None and val_masks is not None

        model = build_segformer(config, num_classes).to(dev, dtype)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loader = torch.utils.data.DataLoader(
            _SegPairs(train_images, train_masks, size, dtype), batch_size=config.batch_size, shuffle=True,
            num_workers=config.num_workers, generator=torch.Generator().manual_seed(seed), drop_last=False)
        flip_gen = torch.Generator().manual_seed(seed + 1)
        steps = len(loader)
        csv_log = CsvLog(log_path / "seg_train_log.csv" if log_path else None)
        best = (-math.inf, -1)
        best_state: dict[str, Tensor] | None = None
        epoch_seconds: list[float] = []
        bar = tqdm(range(config.epochs), desc=f"segformer-{config.variant}", disable=not progress)
        for epoch in bar:
            start = time.perf_counter()
            frozen = epoch < config.freeze_backbone_epochs
            model.train()
            model.segformer.requires_grad_(not frozen)
            if frozen:
                model.segformer.eval()
            losses = []
            for step, (x, y) in enumerate(tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False)):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, epoch + step / steps)
                if config.hflip:
                    flip = torch.rand(len(x), generator=flip_gen) < 0.5
                    x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
                x, y = x.to(dev), y.to(dev)
                logits = model(pixel_values=x).logits
                logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
                loss = F.cross_entropy(logits, y, ignore_index=ignore_index)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            row: dict[str, Any] = {"epoch": epoch, "frozen": frozen, "lr": optimizer.param_groups[0]["lr"],
                                   "train_loss": sum(losses) / len(losses)}
            stop = False
            if use_val:
                cm = _predict_confusion(model, val_images, val_masks, size, num_classes, ignore_index, dev,
                                        config.eval_batch_size, progress, "val")
                val_miou = seg_scores(cm, names, config.include_background)["seg_miou"]
                row["val_miou"] = val_miou
                if not frozen:
                    if val_miou > best[0]:
                        best = (val_miou, epoch)
                        best_state = copy.deepcopy(model.state_dict())
                    elif epoch - best[1] >= config.early_stopping_patience:
                        stop = True
            epoch_seconds.append(time.perf_counter() - start)
            row["seconds"] = round(epoch_seconds[-1], 3)
            csv_log.write(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", **({"val_miou": f"{row['val_miou']:.3f}"}
                                                                 if "val_miou" in row else {}))
            if stop:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        cm = _predict_confusion(model, test_images, test_masks, size, num_classes, ignore_index, dev,
                                config.eval_batch_size, progress, "test",
                                save_dir=log_path / "predictions" if log_path and test_names else None,
                                names=test_names)
        extra: dict[str, dict[str, Any]] = {}
        for label, images in (extra_tests or {}).items():
            if len(images) != len(test_masks):
                raise DownstreamError(f"extra test set {label!r}: {len(images)} images for {len(test_masks)} masks")
            scores = seg_scores(_predict_confusion(model, images, test_masks, size, num_classes, ignore_index, dev,
                                                   config.eval_batch_size, progress, label),
                                names, config.include_background)
            extra[label] = {k: scores[k] for k in ("seg_miou", "seg_pixel_acc", "seg_macc")}

    result = seg_scores(cm, names, config.include_background)
    result.update({
        "seg_epochs_run": len(epoch_seconds),
        "seg_best_epoch": best[1] if best_state is not None else len(epoch_seconds) - 1,
        "seg_seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds),
        "seg_train_seconds": sum(epoch_seconds),
        "seg_image_size": list(size),
        "seg_n_train": len(train_images),
        "seg_n_test": len(test_images),
        "seg_peak_mem_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
        "seg_confusion": cm.tolist(),
        "seg_config": asdict(config),
        "seed": seed,
    })
    if extra_tests:
        result["seg_extra"] = extra
    if log_path is not None:
        write_json(log_path / "seg_result.json", _nan_to_none(result))
    return result


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def load_masks(dataset: FusionDataset, progress: bool = True) -> list[Tensor]:
    """Every sample's mask (uint8 when the labels fit, to keep memory low), in dataset order."""
    if dataset.class_names is None:
        raise DownstreamError(f"{dataset.name} has no segmentation labels (class_names is None)")
    masks = []
    for i in tqdm(range(len(dataset)), desc=f"masks {dataset.name}/{dataset.split}", disable=not progress,
                  leave=False):
        sample = dataset[i]
        if MASK not in sample:
            raise DownstreamError(f"{dataset.name}/{dataset.split}: sample {sample.get('name', i)} has no mask")
        mask = sample[MASK]
        masks.append(mask.to(torch.uint8) if int(mask.max()) <= 255 and int(mask.min()) >= 0 else mask)
    return masks


def evaluate_segmentation_folders(fused_train: str | Path, fused_test: str | Path, train_set: FusionDataset,
                                  test_set: FusionDataset, config: SegEvalConfig | str = "smoke", *,
                                  fused_val: str | Path | None = None, val_set: FusionDataset | None = None,
                                  seed: int = 0, device: str | torch.device = "cpu",
                                  log_dir: str | Path | None = None, progress: bool = True,
                                  extra_tests: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """Score folders of fused PNGs (``<sample name>.png`` per split) with the dataset's masks and class list;
    `extra_tests` (label -> folder of fused test images) are scored by the same model (`evaluate_segmentation`)."""
    require_extra("transformers", "segmentation", "transformers")
    if test_set.class_names is None:
        raise DownstreamError(f"{test_set.name} has no segmentation labels; segmentation does not apply")
    train_images = FusedImages(fused_paths(fused_train, train_set))
    test_images = FusedImages(fused_paths(fused_test, test_set))
    val_images = val_masks = None
    if fused_val is not None and val_set is not None:
        val_images, val_masks = FusedImages(fused_paths(fused_val, val_set)), load_masks(val_set, progress)
    return evaluate_segmentation(
        train_images, load_masks(train_set, progress), test_images, load_masks(test_set, progress),
        len(test_set.class_names), config, class_names=test_set.class_names, val_images=val_images,
        val_masks=val_masks, ignore_index=test_set.ignore_index, seed=seed, device=device, log_dir=log_dir,
        progress=progress, test_names=[ref.name for ref in test_set.samples],
        extra_tests={label: FusedImages(fused_paths(folder, test_set))
                     for label, folder in (extra_tests or {}).items()})


# ------------------------------------------------------------------------------------------------
# the evaluator interface (fusion_bench.evaluators.spec)
# ------------------------------------------------------------------------------------------------


def preset_config(preset: str, **overrides: Any) -> SegEvalConfig:
    """`seg_preset` with protocol-file overrides (YAML lists become the tuples the config holds)."""
    for key in ("hidden_sizes", "depths", "num_attention_heads", "image_size"):
        if isinstance(overrides.get(key), list):
            overrides[key] = tuple(overrides[key])
    return seg_preset(preset, **overrides)


def validates(config: SegEvalConfig) -> bool:
    """Validation (on the dataset's val split when fused, else a held-out part of train) drives early stopping."""
    return bool(config.early_stopping_patience)


def start(config: SegEvalConfig, fused: dict[str, Path], datasets: dict[str, Any], *, seed: int,
          device: str | torch.device, log_dir: Path, progress: bool, pinned: bool = True,
          threads: int | None = None) -> Deferred:
    """SegFormer trains in this process: the work runs when the result is asked for (with oneDNN/NNPACK on when
    not `pinned`, see fusion_bench.numerics.native_kernels; `threads` is for child-process evaluators)."""
    from fusion_bench import numerics

    val = {"fused_val": fused["val"], "val_set": datasets["val"]} if "val" in fused else {}

    def work() -> dict[str, Any]:
        with contextlib.nullcontext() if pinned else numerics.native_kernels():
            return evaluate_segmentation_folders(fused["train"], fused["test"], datasets["train"], datasets["test"],
                                                 config, seed=seed, device=device, log_dir=log_dir,
                                                 progress=progress, **val)

    return Deferred(work)


SEGMENTATION = EvaluatorSpec(
    name="seg", description="SegFormer segmentation trained on the fused images: mIoU, pixel accuracy",
    module=__name__, row_columns=("seg_miou", "seg_pixel_acc"), per_class=(("iou", "seg_iou_per_class"),),
    label_attribute="class_names", labels="segmentation masks", label_keys=(MASK,))
