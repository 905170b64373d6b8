"""torchmetrics ``Metric`` classes: one per fusion metric, plus :class:`DialectMetrics` for a whole dialect.

Each class accumulates per-image values over ``update(a, b, fused[, gt])`` calls and ``compute()`` returns
their mean (NaN images propagate, as in the reference kits). The dialect (default ``mmif``) picks the kit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from fusion_bench.metrics.dialect_base import Dialect
from fusion_bench.metrics.dialects import DIALECTS, get_dialect


class FusionMetric(Metric):
    """Base class: one named metric of a dialect, averaged over images."""

    metric_name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = True
    full_state_update: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False

    def __init__(self, dialect: str | Dialect = "mmif", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dialect = get_dialect(dialect)
        if self.metric_name not in self.dialect.specs:
            have = [n for n, d in DIALECTS.items() if self.metric_name in d.specs]
            raise ValueError(f"metric {self.metric_name!r} is not in dialect {self.dialect.name!r}; "
                             f"dialects that define it: {have}")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(self, a: Tensor, b: Tensor, fused: Tensor, gt: Tensor | None = None) -> None:
        """Add a batch (Bx{1,3}xHxW tensors in [0, 1])."""
        self.values.append(self.dialect.compute(a, b, fused, [self.metric_name], gt=gt)[self.metric_name])

    def per_image(self) -> Tensor:
        """All per-image values seen so far (float64)."""
        return dim_zero_cat(self.values) if self.values else torch.zeros(0, dtype=torch.float64)

    def compute(self) -> Tensor:
        return self.per_image().mean()


class DialectMetrics(Metric):
    """All (or selected) metrics of a dialect at once; ``compute()`` returns {name: mean}."""

    full_state_update: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool | None] = None

    def __init__(self, dialect: str | Dialect = "mmif", metrics: Sequence[str] | None = None,
                 with_gt: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dialect = get_dialect(dialect)
        self.names = self.dialect.resolve(metrics, with_gt)
        for n in self.names:
            self.add_state(f"values_{n}", default=[], dist_reduce_fx="cat")

    def update(self, a: Tensor, b: Tensor, fused: Tensor, gt: Tensor | None = None) -> None:
        res = self.dialect.compute(a, b, fused, self.names, gt=gt)
        for n in self.names:
            getattr(self, f"values_{n}").append(res[n])

    def compute(self) -> dict[str, Tensor]:
        return {n: dim_zero_cat(getattr(self, f"values_{n}")).mean() for n in self.names}


_HIGHER = {"CE": False, "Qcv": False, "Nabf": False, "Nabf_fixed_order": False, "MSE": False, "RMSE": False,
           "DeltaE": False, "MSE_ref": False}


def _make(name: str) -> type[FusionMetric]:
    doc = f"``{name}`` fusion metric (dialect chosen at construction; see docs/metrics.md)."
    cls_name = name.replace("-", "_")
    return type(cls_name, (FusionMetric,), {"metric_name": name, "higher_is_better": _HIGHER.get(name, True),
                                            "__doc__": doc, "__module__": __name__})


METRIC_NAMES = ("EN", "SD", "SF", "AG", "EI", "MI", "NMI", "FMI_pixel", "FMI_gradient", "FMI_dct", "FMI_w", "SCD",
                "VIF", "Qabf", "Nabf", "Nabf_fixed_order", "SSIM", "MS_SSIM", "MS_SSIM_std", "MEF_SSIM", "CC", "MSE",
                "RMSE", "PSNR", "CE", "Qcb", "Qcv", "DeltaE", "PSNR_ref", "SSIM_ref")
METRIC_CLASSES: dict[str, type[FusionMetric]] = {n: _make(n) for n in METRIC_NAMES}
globals().update({c.__name__: c for c in METRIC_CLASSES.values()})

__all__ = ["DialectMetrics", "FusionMetric", "METRIC_CLASSES", *METRIC_CLASSES]  # noqa: PLE0604
