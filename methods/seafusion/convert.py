"""The authors' released SeAFusion weights (`model/Fusion/fusionmodel_final.pth`, a state dict of their
`FusionNet`, possibly `module.`-prefixed) -> `SeAFusionNet`.

Key layout of the authors' FusionNet.py, and where each part goes here (m = vis | inf, k = 1, 2):
    {m}_conv.conv.*                     -> encoder_{vis|ir}.stem.0.*
    {m}_rgbd{k}.dense.conv1.conv.*      -> encoder_*.blocks.{k-1}.dense1.0.*
    {m}_rgbd{k}.dense.conv2.conv.*      -> encoder_*.blocks.{k-1}.dense2.0.*
    {m}_rgbd{k}.convdown.conv.*         -> encoder_*.blocks.{k-1}.squeeze.*
    {m}_rgbd{k}.sobelconv.conv{x,y}.*   -> encoder_*.blocks.{k-1}.sobel.conv_{x,y}.*   (trainable, as theirs)
    {m}_rgbd{k}.convup.conv.*           -> encoder_*.blocks.{k-1}.gradient_proj.*
    decode{4,3,2}.conv.*                -> decoder.{0,1,2}.0.*
    decode1.conv.*                      -> decoder.3.*
    decode{1..4}.bn.*                   dropped: their ConvBn* layers build a BatchNorm that forward never calls.
Their forward takes (visible, infrared) and concatenates (visible, infrared) features, as `SeAFusionNet.features`;
the names carry the modality, so the mapping is by name. The same weights serve `seafusion` and `seafusion_content`
(one network).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusion_bench.weights.released import load_strict, rename

_STREAMS = {"vis": "encoder_vis", "inf": "encoder_ir"}
_RULES = [
    *[(rf"{m}_conv\.conv\.(.+)", rf"{enc}.stem.0.\1") for m, enc in _STREAMS.items()],
    *[(rf"{m}_rgbd{k}\.{old}\.(.+)", rf"{enc}.blocks.{k - 1}.{new}.\1") for m, enc in _STREAMS.items()
      for k in range(1, 10)
      for old, new in (("dense\\.conv1\\.conv", "dense1.0"), ("dense\\.conv2\\.conv", "dense2.0"),
                       ("convdown\\.conv", "squeeze"), ("sobelconv\\.convx", "sobel.conv_x"),
                       ("sobelconv\\.convy", "sobel.conv_y"), ("convup\\.conv", "gradient_proj"))],
    (r"decode4\.conv\.(.+)", r"decoder.0.0.\1"),
    (r"decode3\.conv\.(.+)", r"decoder.1.0.\1"),
    (r"decode2\.conv\.(.+)", r"decoder.2.0.\1"),
    (r"decode1\.conv\.(.+)", r"decoder.3.\1"),
]
_UNUSED = (r"decode\d\.bn\..+",)


def convert_released(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of the authors' FusionNet to `SeAFusionNet`'s keys (see the module docstring); a leading
    `module.` is stripped, the unused BatchNorms dropped, an unknown key is a ConversionError."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return rename(state, _RULES, drop=_UNUSED, what="SeAFusion checkpoint (the authors' FusionNet)")


def load_released(module: nn.Module, state: Mapping[str, torch.Tensor], task: str | None = None) -> None:
    """Load the authors' weights into a SeAFusion / SeAFusionContent module's fusion network (the `paper` width
    16/32/48; another width is a ConversionError naming the mis-shaped keys)."""
    load_strict(getattr(module, "net", module), convert_released(state), "the SeAFusion checkpoint")
