"""SwinFusion: cross-domain long-range learning for general image fusion via Swin Transformer (Ma et al., JAS 2022)."""

from fusion_bench.methods.swinfusion.model import SwinFusionNet
from fusion_bench.methods.swinfusion.module import SwinFusion

__all__ = ["SwinFusion", "SwinFusionNet"]
