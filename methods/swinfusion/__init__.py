"""SwinFusion: cross-domain long-range learning for general image fusion via Swin Transformer (Ma et al., JAS 2022)."""

from methods.swinfusion.model import SwinFusionNet
from methods.swinfusion.module import SwinFusion

__all__ = ["SwinFusion", "SwinFusionNet"]
