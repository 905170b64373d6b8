"""Base classes every method and datamodule builds on."""

from fusion_bench.base.datamodule import PairedDataModule, resolve_root
from fusion_bench.base.method import (
    FusionMethod,
    LuminanceFusionMethod,
    MultimodalClassifier,
    SegFusionMethod,
    load_method_config,
)

__all__ = ["FusionMethod", "LuminanceFusionMethod", "MultimodalClassifier", "PairedDataModule", "SegFusionMethod",
           "load_method_config", "resolve_root"]
