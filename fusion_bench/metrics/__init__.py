"""Image-fusion quality metrics in named dialects that reproduce the reference kits (docs/metrics.md).

>>> from fusion_bench.metrics import get_dialect
>>> scores = get_dialect("mmif").compute(a, b, fused)   # {metric: (B,) float64}
"""

from fusion_bench.errors import MetricsInputError
from fusion_bench.metrics.classes import METRIC_CLASSES, DialectMetrics, FusionMetric
from fusion_bench.metrics.dialect_base import Dialect, MetricSpec
from fusion_bench.metrics.dialects import DIALECTS, get_dialect
from fusion_bench.metrics.folders import pair_folders, score_folders

__all__ = ["DIALECTS", "METRIC_CLASSES", "Dialect", "DialectMetrics", "FusionMetric", "MetricSpec",
           "MetricsInputError", "get_dialect", "pair_folders", "score_folders"]
