"""Dynamic weighting of the CSC loss in Stage II (Sec. III-E): GDWA (Eq. 7), DWA and a fixed weight.

Task A is the fusion task, task B the cross-segmentation consistency (CSC) task; every rule returns
omega_csc, the weight of L_csc in L_total = L_fusion + omega_csc * L_csc (Eq. 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


def gdwa_weights(grad_fusion: float, grad_csc: float, rate_fusion: float, rate_csc: float,
                 temperature: float) -> tuple[float, float]:
    """GDWA task weights (lambda_fusion, lambda_csc), summing to 1.

    g~_A = g_A / (g_A + g_B) (gradient norms on the shared fusion parameters), s = softmax(r / T) of the descent
    rates, lambda_A = g~_A s_A / (g~_A s_A + g~_B s_B), lambda_B = 1 - lambda_A.
    """
    if grad_fusion < 0 or grad_csc < 0 or not math.isfinite(grad_fusion) or not math.isfinite(grad_csc):
        raise ValueError(f"gradient norms must be finite and >= 0, got {grad_fusion}, {grad_csc}")
    total = grad_fusion + grad_csc
    g_a = grad_fusion / total if total > 0 else 0.5
    g_b = 1.0 - g_a
    s_a, s_b = descent_softmax(rate_fusion, rate_csc, temperature)
    denominator = g_a * s_a + g_b * s_b
    lambda_a = g_a * s_a / denominator
    return lambda_a, 1.0 - lambda_a


def gdwa_csc_weight(grad_fusion: float, grad_csc: float, rate_fusion: float, rate_csc: float, temperature: float,
                    max_weight: float = 1e4) -> float:
    """Eq. 7: omega_csc = lambda_csc / lambda_fusion (capped at `max_weight` when the fusion gradient vanishes)."""
    lambda_a, lambda_b = gdwa_weights(grad_fusion, grad_csc, rate_fusion, rate_csc, temperature)
    return min(lambda_b / lambda_a, max_weight) if lambda_a > 0 else max_weight


def dwa_csc_weight(rate_fusion: float, rate_csc: float, temperature: float) -> float:
    """DWA (Liu et al. 2019): lambda_k = K softmax(r_k / T), so omega_csc = lambda_B / lambda_A
    = exp((r_B - r_A) / T)."""
    s_a, s_b = descent_softmax(rate_fusion, rate_csc, temperature)
    return s_b / s_a


@dataclass
class LossPeriods:
    """Mean losses per bookkeeping period (an epoch in the paper; a fixed number of steps when configured).

    `add` accumulates one step's values; `close` turns the running sums into one entry of `history`
    (a dict task -> mean; tasks without values in the period are absent).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    _sums: dict[str, float] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    steps: int = 0

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
            self._counts[key] = self._counts.get(key, 0) + 1
        self.steps += 1

    def close(self) -> dict[str, float] | None:
        """End the current period; returns its means (None when the period saw no step)."""
        if self.steps == 0:
            return None
        means = {key: self._sums[key] / self._counts[key] for key in self._sums}
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
        return {"history": list(self.history), "sums": dict(self._sums), "counts": dict(self._counts),
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self._sums, self._counts, self.steps = dict(state["sums"]), dict(state["counts"]), int(state["steps"])
