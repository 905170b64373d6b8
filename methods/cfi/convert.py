"""The authors' released CFI weights (`best.pth`, a state dict of their 3-level `Network`) -> `CFINet`.

Key layout of the authors' `Network` (their test.py / Train.py), and where each part goes here:
    encoder_{ir,vis}.module{1,2,3}.*        -> encoder_{ir,vis}.stages.{0,1,2}.*
    cfi{5,4,3}.{q_v,k_v,v_v,q_i,k_i,v_i}.*  -> cfi.{0,1,2}.{q_vis,k_vis,v_vis,q_ir,k_ir,v_ir}.*  (fine -> coarse)
    cfi{5,4,3}.{gate,refine}.*              -> cfi.{0,1,2}.{gate,refine}.*
    adjust_channels{5,4}.*                  -> decoder.{0,1}.*
    final_decoder.*                         -> head.*
    adjust_channels3.*, module4.*, module5.* (built, never used in their forward) are dropped.
Their network is called as (visible Y, infrared), ours as (infrared, visible): the names carry the modality, so the
mapping is by name. Checked bit-identical on the real file (README, tests/test_cfi.py, tests/test_converters.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from fusion_bench.weights.released import ConversionError, load_strict, read_state_dict, rename

if TYPE_CHECKING:
    from fusion_bench.methods.cfi.model import CFINet

_PROJECTIONS = {"q_v": "q_vis", "k_v": "k_vis", "v_v": "v_vis", "q_i": "q_ir", "k_i": "k_ir", "v_i": "v_ir"}
_RULES = [
    (r"(encoder_ir|encoder_vis)\.module1\.(.+)", r"\1.stages.0.\2"),
    (r"(encoder_ir|encoder_vis)\.module2\.(.+)", r"\1.stages.1.\2"),
    (r"(encoder_ir|encoder_vis)\.module3\.(.+)", r"\1.stages.2.\2"),
    *[(rf"cfi{level}\.{old}\.(.+)", rf"cfi.{5 - level}.{new}.\1") for level in (5, 4, 3)
      for old, new in (*_PROJECTIONS.items(), ("gate", "gate"), ("refine", "refine"))],
    (r"adjust_channels5\.(.+)", r"decoder.0.\1"),
    (r"adjust_channels4\.(.+)", r"decoder.1.\1"),
    (r"final_decoder\.(.+)", r"head.\1"),
]
_UNUSED = (r"adjust_channels3\..+", r"module4\..+", r"module5\..+")


def convert_released(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of the authors' 3-level `Network` (their `best.pth`) to `CFINet(dim=32, levels=3)`'s keys
    (see the module docstring). A leading `module.` is stripped; an unknown key is a ConversionError."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return rename(state, _RULES, drop=_UNUSED, what="CFI checkpoint (the authors' Network)")


def load_released(module: nn.Module, state: Mapping[str, torch.Tensor], task: str | None = None) -> None:
    """Load the authors' weights into a CFIFusion module's network (the `paper` preset's `CFINet(dim=32, levels=3,
    tokens=8)`; any other width is a ConversionError naming the mis-shaped keys)."""
    net = getattr(module, "net", module)
    tokens = getattr(net.cfi[0], "tokens", None) if hasattr(net, "cfi") else None
    if tokens not in (None, 8):
        raise ConversionError(f"the authors' network pools keys/values to 8x8 tokens; this one uses {tokens}x{tokens} "
                              "(use the paper preset)")
    load_strict(net, convert_released(state), "the CFI checkpoint")


def load_official_weights(net: CFINet, path: str | Path) -> None:
    """Load the authors' released weights from an explicit local file into a `CFINet(dim=32, levels=3, tokens=8)`
    (never downloads; read with torch.load(weights_only=True))."""
    load_released(net, read_state_dict(path))
