"""The shared audio-visual recipe (encoders, concat head, optimiser, logging) of late fusion and the balancing
methods: `model.py` (pure nn.Modules), `module.py` (`AVClassifier`, the LightningModule base)."""

from fusion_bench.methods.av_balance.model import ConcatFusionNet, UnimodalNet, conv_encoder, resnet18_encoder
from fusion_bench.methods.av_balance.module import AVClassifier

__all__ = ["AVClassifier", "ConcatFusionNet", "UnimodalNet", "conv_encoder", "resnet18_encoder"]
