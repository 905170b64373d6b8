"""CFI: multi-modal image fusion via intervention-stable feature learning (Wang et al., CVPR 2026)."""

from fusion_bench.methods.cfi.model import CFI, CFINet
from fusion_bench.methods.cfi.module import CFIFusion

__all__ = ["CFI", "CFINet", "CFIFusion"]
