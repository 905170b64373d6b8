"""CMD-CTA: cross-modal feature disentanglement with contrastive task alignment (anonymous ICLR 2026 submission)."""

from fusion_bench.methods.cmd_cta.model import CMDCTANet
from fusion_bench.methods.cmd_cta.module import CMDCTAFusion

__all__ = ["CMDCTAFusion", "CMDCTANet"]
