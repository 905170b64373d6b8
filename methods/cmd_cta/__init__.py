"""CMD-CTA: cross-modal feature disentanglement with contrastive task alignment (anonymous ICLR 2026 submission)."""

from methods.cmd_cta.model import CMDCTANet
from methods.cmd_cta.module import CMDCTAFusion

__all__ = ["CMDCTAFusion", "CMDCTANet"]
