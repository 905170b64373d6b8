"""The concatenation model of `late_fusion`; it lives in the shared audio-visual recipe
(fusion_bench.methods.av_balance.model)."""

from fusion_bench.methods.av_balance.model import ConcatFusionNet, conv_encoder, resnet18_encoder

__all__ = ["ConcatFusionNet", "conv_encoder", "resnet18_encoder"]
