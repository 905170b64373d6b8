"""Dynamic weighting of the CSC loss in Stage II (Sec. III-E): GDWA (Eq. 7), DWA and a fixed weight.

Task A is the fusion task, task B the cross-segmentation consistency (CSC) task; every rule returns
omega_csc, the weight of L_csc in L_total = L_fusion + omega_csc * L_csc (Eq. 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

WEIGHTINGS = ("gdwa", "dwa", "fixed")


def descent_softmax(rate_fusion: float, rate_csc: float, temperature: float) -> tuple[float, float]:
    """s_k = exp(r_k / T) / sum_j exp(r_j / T): the task whose loss ratio r = L^j / L^{j-1} is larger (slower
    descent) gets the larger share."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    shift = max(rate_fusion, rate_csc) / temperature  # numerically safe softmax
    e_a = math.exp(rate_fusion / temperature - shift)
    e_b = math.exp(rate_csc / temperature - shift)
    return e_a / (e_a + e_b), e_b / (e_a + e_b)


def gdwa_fusion_share(norms: torch.Tensor, rate_fusion: float, rate_csc: float, temperature: float) -> torch.Tensor:
    """lambda_fusion of GDWA from a (g_fusion, g_csc) tensor, on the tensor's device (no host sync).

    g~_A = g_A / (g_A + g_B) (0.5 each when both vanish), s = softmax(r / T) of the descent rates,
    lambda_A = g~_A s_A / (g~_A s_A + g~_B s_B); lambda_B = 1 - lambda_A.
    """
    s_a, s_b = descent_softmax(rate_fusion, rate_csc, temperature)
    total = norms[0] + norms[1]
    g_a = torch.where(total > 0, norms[0] / total, torch.full_like(total, 0.5))
    return g_a * s_a / (g_a * s_a + (1 - g_a) * s_b)


def gdwa_csc_weight_tensor(norms: torch.Tensor, rate_fusion: float, rate_csc: float, temperature: float,
                           max_weight: float = 1e4) -> torch.Tensor:
    """Eq. 7, omega_csc = lambda_csc / lambda_fusion, as a 0-dim tensor on the norms' device (no host sync).

    The normalisation of the gradient norms and of the lambdas cancels in the ratio, so it is computed as
    (g_csc s_csc) / (g_fusion s_fusion) (s_csc / s_fusion when both norms vanish), without the cancellation
    1 - lambda_fusion would suffer in float32. Capped at `max_weight` (a vanishing fusion gradient); 1 while a
    norm is not finite (an overflowing fp16 step before any finite norm was seen).
    """
    s_a, s_b = descent_softmax(rate_fusion, rate_csc, temperature)
    g_a, g_b = norms[0], norms[1]
    vanished = (g_a + g_b) <= 0
    numerator = torch.where(vanished, torch.full_like(g_b, s_b), g_b * s_b)
    denominator = torch.where(vanished, torch.full_like(g_a, s_a), g_a * s_a)
    weight = torch.where(denominator > 0, (numerator / denominator).clamp(max=max_weight),
                         torch.full_like(denominator, max_weight))
    return torch.where(torch.isfinite(norms).all(), weight, torch.ones_like(weight))


def _check_norms(grad_fusion: float, grad_csc: float) -> torch.Tensor:
    if grad_fusion < 0 or grad_csc < 0 or not math.isfinite(grad_fusion) or not math.isfinite(grad_csc):
        raise ValueError(f"gradient norms must be finite and >= 0, got {grad_fusion}, {grad_csc}")
    return torch.tensor([grad_fusion, grad_csc], dtype=torch.float64)


def gdwa_weights(grad_fusion: float, grad_csc: float, rate_fusion: float, rate_csc: float,
                 temperature: float) -> tuple[float, float]:
    """GDWA task weights (lambda_fusion, lambda_csc), summing to 1 (`gdwa_fusion_share` on Python floats).

    g~_A = g_A / (g_A + g_B) (gradient norms on the shared fusion parameters), s = softmax(r / T) of the descent
    rates, lambda_A = g~_A s_A / (g~_A s_A + g~_B s_B), lambda_B = 1 - lambda_A.
    """
    lambda_a = float(gdwa_fusion_share(_check_norms(grad_fusion, grad_csc), rate_fusion, rate_csc, temperature))
    return lambda_a, 1.0 - lambda_a


def gdwa_csc_weight(grad_fusion: float, grad_csc: float, rate_fusion: float, rate_csc: float, temperature: float,
                    max_weight: float = 1e4) -> float:
    """Eq. 7: omega_csc = lambda_csc / lambda_fusion (capped at `max_weight` when the fusion gradient vanishes);
    `gdwa_csc_weight_tensor` on Python floats."""
    return float(gdwa_csc_weight_tensor(_check_norms(grad_fusion, grad_csc), rate_fusion, rate_csc, temperature,
                                        max_weight))


def dwa_csc_weight(rate_fusion: float, rate_csc: float, temperature: float) -> float:
    """DWA (Liu et al. 2019): lambda_k = K softmax(r_k / T), so omega_csc = lambda_B / lambda_A
    = exp((r_B - r_A) / T)."""
    s_a, s_b = descent_softmax(rate_fusion, rate_csc, temperature)
    return s_b / s_a


@dataclass
class LossPeriods:
    """Mean losses per bookkeeping period (an epoch in the paper; a fixed number of steps when configured).

    `add` accumulates one step's values (floats or detached tensors: tensors are summed on their device, so a
    training step needs no host sync); `close` turns the running sums into one entry of `history` (a dict
    task -> mean as a float, one sync per period; tasks without values in the period are absent).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    _sums: dict[str, float | torch.Tensor] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    steps: int = 0

    def add(self, **values: float | torch.Tensor) -> None:
        for key, value in values.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] = self._counts.get(key, 0) + 1
        self.steps += 1

    def close(self) -> dict[str, float] | None:
        """End the current period; returns its means (None when the period saw no step)."""
        if self.steps == 0:
            return None
        means = {key: float(self._sums[key]) / self._counts[key] for key in self._sums}
        self.history.append(means)
        self._sums, self._counts, self.steps = {}, {}, 0
        return means

    def last_two(self, key: str) -> tuple[float, float] | None:
        """(previous, last) means of `key` over the two most recent periods that both recorded it, if any."""
        values = [h[key] for h in self.history if key in h]
        return (values[-2], values[-1]) if len(values) >= 2 else None

    def rate(self, key: str) -> float:
        """Descent rate r = L^j / L^{j-1} of the two most recent complete periods; 1 while fewer exist."""
        pair = self.last_two(key)
        if pair is None or pair[0] <= 0:
            return 1.0
        return pair[1] / pair[0]

    def state_dict(self) -> dict:
        return {"history": list(self.history), "sums": {k: float(v) for k, v in self._sums.items()},
                "counts": dict(self._counts), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self._sums, self._counts, self.steps = dict(state["sums"]), dict(state["counts"]), int(state["steps"])
