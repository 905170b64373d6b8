"""SeAFusion: semantic-aware real-time infrared and visible image fusion (Tang et al., Information Fusion 2022)."""

from fusion_bench.methods.seafusion.model import SeAFusionNet, SemanticSegmenter
from fusion_bench.methods.seafusion.module import SeAFusion, SeAFusionContent

__all__ = ["SeAFusion", "SeAFusionContent", "SeAFusionNet", "SemanticSegmenter"]
