"""InfoNCE baseline: concat late fusion + cross-modal InfoNCE (CPC); see README.md."""

from fusion_bench.methods.infonce.module import InfoNCEClassifier

__all__ = ["InfoNCEClassifier"]
