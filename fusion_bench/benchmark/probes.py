"""Linear probes of a trained classifier's frozen per-modality encoders: the evaluation OGM-GE and PMR use to show
that joint training leaves the slower modality's encoder under-trained.

A model that offers `probe_features(batch) -> {modality key: B x D features}` (every audio-visual method built on
methods.av_balance: both encoders; the unimodal model: its one encoder) gets one column `probe_<key>` per modality:
the test accuracy of a multinomial logistic regression fitted on the frozen features of the training split.

The probe is cheap and deterministic: the features are computed in the model's own dtype (eval mode, no gradients,
float64 under `train.precision: 64-true`), then standardised with the training split's mean and std and fitted in
float64 by a fixed number of L-BFGS iterations (strong-Wolfe line search) from zero weights, with a small L2 penalty.
No random number is drawn, so the same features give the same probe.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch.utils.data import DataLoader

from fusion_bench.base.precision import cast_floating, computing_in, model_dtype
from fusion_bench.data.transforms import collate_samples
from fusion_bench.types import TARGET

PROBE_STEPS = 100
"""L-BFGS iterations of every probe (a fixed budget, not a tolerance: the same work on every machine)."""

PROBE_L2 = 1e-3
"""L2 penalty on the probe's weights (not the bias), on standardised features: keeps the fit finite on separable
training features."""


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


def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int = PROBE_STEPS,
              l2: float = PROBE_L2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight C x D, bias C, feature mean D, feature std D) of a multinomial logistic regression on `x` (N x D),
    fitted in float64: standardised features, zero start, `steps` L-BFGS iterations on mean cross-entropy +
    `l2` * ||W||^2."""
    if steps < 1:
        raise ValueError(f"probe steps must be >= 1, got {steps}")
    x = x.detach().to(torch.float64)
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a dead feature stays 0 after centring
    xs = (x - mean) / std
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=20,
                                  tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = xs @ weight.t() + bias
        loss = torch.nn.functional.cross_entropy(logits, y) + l2 * (weight * weight).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach(), mean, std


def probe_accuracy(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                   num_classes: int, steps: int = PROBE_STEPS, l2: float = PROBE_L2) -> float:
    """Test accuracy of the probe fitted on `train` = (features, targets), scored on `test`."""
    weight, bias, mean, std = fit_probe(train[0], train[1], num_classes, steps, l2)
    logits = ((test[0].to(torch.float64) - mean) / std) @ weight.t() + bias
    return float((logits.argmax(1) == test[1]).to(torch.float64).mean())


def probe_scores(model: torch.nn.Module, train_set: torch.utils.data.Dataset, test_set: torch.utils.data.Dataset,
                 device: torch.device, num_classes: int, num_workers: int = 0) -> dict[str, Any]:
    """{"probe_<modality key>": test accuracy} for every modality the model's `probe_features` returns; probes are
    fitted on `train_set` (taken without training augmentation) and scored on `test_set`."""
    train_x, train_y = extract_features(model, train_set, device, num_workers)
    test_x, test_y = extract_features(model, test_set, device, num_workers)
    return {f"probe_{key}": probe_accuracy((train_x[key], train_y), (test_x[key], test_y), num_classes)
            for key in train_x}


__all__ = ["PROBE_L2", "PROBE_STEPS", "extract_features", "fit_probe", "has_probes", "probe_accuracy", "probe_scores"]
