"""LightningModule for the concatenation-fusion audio-visual classifier baseline (`late_fusion`)."""

from __future__ import annotations

from fusion_bench.methods.av_balance.module import AVClassifier


class LateFusionClassifier(AVClassifier):
    """Joint training of both encoders with cross-entropy on the fused logits ("Joint-Train" / concat baseline).

    All options (encoder conv|resnet18, optimizer adam|sgd, schedule none|cosine, ...) come from the shared recipe,
    `fusion_bench.methods.av_balance.module.AVClassifier`; the defaults are the original small-CNN/Adam baseline.
    """
