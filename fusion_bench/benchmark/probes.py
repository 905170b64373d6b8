"""Linear probes of a trained classifier's frozen per-modality encoders: the evaluation OGM-GE and PMR use to show
that joint training leaves the slower modality's encoder under-trained.

A model that offers `probe_features(batch) -> {modality key: B x D features}` (every audio-visual method built on
methods.av_balance: both encoders; the unimodal model: its one encoder) gets one column `probe_<key>` per modality:
the test accuracy of a linear classifier fitted on the frozen features of the training split.

The probe is cheap, deterministic and stable across CPUs: the features are computed in the model's own dtype (eval
mode, no gradients, float64 under `train.precision: 64-true`), standardised with the training split's mean and std,
and the classifier is ridge regression onto one-hot targets, solved in closed form in float64 (a least-squares linear
probe). An iterative fit (a fixed number of L-BFGS steps of logistic regression was tried) follows its line search's
discrete decisions, which rounding differences between two CPUs' kernels flip: measured, one test sample of 240
changed class between MKL branches. The closed form moves only by the conditioning of a ridge system (at most
1/PROBE_L2 times the features' rounding differences), and tied logits share their credit (`tie_aware_accuracy`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch.utils.data import DataLoader

from fusion_bench.base.precision import cast_floating, computing_in, model_dtype
from fusion_bench.data.transforms import collate_samples
from fusion_bench.types import TARGET

TIE_RTOL = 1e-9
"""Logits within this (relative to the sample's largest |logit|, at least 1) of the top one are a tie."""

PROBE_L2 = 1e-2
"""Ridge penalty of the probe (on standardised features, per sample): keeps the system well conditioned."""


def has_probes(model: torch.nn.Module) -> bool:
    """Whether `model` exposes frozen per-modality features for the linear probes."""
    return callable(getattr(model, "probe_features", None))


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: torch.utils.data.Dataset, device: torch.device,
                     num_workers: int = 0, batch_size: int = 64) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({modality key: N x D features on the CPU, in the model's dtype}, N targets) of the frozen model, eval mode."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_samples)
    model = model.to(device).eval()
    dtype = model_dtype(model)
    features: dict[str, list[torch.Tensor]] = defaultdict(list)
    targets = []
    with computing_in(dtype):
        for batch in loader:
            batch = cast_floating({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()},
                                  dtype)
            for key, z in model.probe_features(batch).items():
                features[key].append(z.detach().flatten(1).cpu())
            targets.append(batch[TARGET].cpu())
    return {key: torch.cat(v) for key, v in features.items()}, torch.cat(targets)


def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int,
              l2: float = PROBE_L2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight C x D, bias C, feature mean D, feature std D) of the ridge probe on `x` (N x D), in float64:
    standardised features, W = (Xs'Xs / N + l2 I)^-1 Xs'(Y - mean Y) / N for one-hot targets Y, bias = mean Y."""
    if not l2 > 0:
        raise ValueError(f"probe l2 must be > 0, got {l2}")
    x = x.detach().to(torch.float64)
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a dead feature stays 0 after centring
    xs = (x - mean) / std
    onehot = torch.nn.functional.one_hot(y.long(), num_classes).to(torch.float64)
    bias = onehot.mean(0)
    n = x.shape[0]
    gram = xs.t() @ xs / n + l2 * torch.eye(x.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(gram, xs.t() @ (onehot - bias) / n).t()
    return weight, bias, mean, std


def probe_accuracy(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                   num_classes: int, l2: float = PROBE_L2) -> float:
    """Test accuracy of the probe fitted on `train` = (features, targets), scored on `test`."""
    weight, bias, mean, std = fit_probe(train[0], train[1], num_classes, l2)
    logits = ((test[0].to(torch.float64) - mean) / std) @ weight.t() + bias
    return tie_aware_accuracy(logits, test[1])


def tie_aware_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Accuracy with ties shared: a sample whose top logits tie (within TIE_RTOL) counts 1/k when its target is one of
    the k tied classes. A modality that cannot tell two classes apart (synthetic-av's audio names a class pair, and
    both classes of a pair are equally frequent) gives them logits equal up to rounding, and a plain argmax would
    pick one by the last bits, i.e. by the CPU's kernels; shared ties give the expected accuracy of a fair coin."""
    logits = logits.to(torch.float64)
    top = logits.amax(1, keepdim=True)
    tol = TIE_RTOL * logits.abs().amax(1, keepdim=True).clamp_min(1.0)
    tied = logits >= top - tol
    hit = tied.gather(1, target.long()[:, None]).squeeze(1).to(torch.float64)
    return float((hit / tied.sum(1).to(torch.float64)).mean())


def probe_scores(model: torch.nn.Module, train_set: torch.utils.data.Dataset, test_set: torch.utils.data.Dataset,
                 device: torch.device, num_classes: int, num_workers: int = 0) -> dict[str, Any]:
    """{"probe_<modality key>": test accuracy} for every modality the model's `probe_features` returns; probes are
    fitted on `train_set` (taken without training augmentation) and scored on `test_set`."""
    train_x, train_y = extract_features(model, train_set, device, num_workers)
    test_x, test_y = extract_features(model, test_set, device, num_workers)
    return {f"probe_{key}": probe_accuracy((train_x[key], train_y), (test_x[key], test_y), num_classes)
            for key in train_x}


__all__ = ["PROBE_L2", "TIE_RTOL", "extract_features", "fit_probe", "has_probes", "probe_accuracy", "probe_scores",
           "tie_aware_accuracy"]
