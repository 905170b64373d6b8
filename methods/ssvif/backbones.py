"""Fusion backbones SSVIF can train: name -> "module:Class", imported only when used.

A backbone is an nn.Module built as `cls(in_channels=3, out_channels=3, **arch_kwargs)` with
`feature_channels: int`, `features(x1, x2) -> BxCxHxW` fused features (C = feature_channels),
`decode(features) -> Bx3xHxW` fused image in [0, 1], and `forward(x1, x2) = decode(features(x1, x2))`.
"""

from __future__ import annotations

import importlib

from torch import nn

BACKBONES: dict[str, str] = {
    "seafusion": "fusion_bench.methods.seafusion.model:SeAFusionNet",
    "swinfusion": "fusion_bench.methods.swinfusion.model:SwinFusionNet",
}


def backbone_class(name: str) -> type[nn.Module]:
    """The backbone class registered as `name`; an unknown name lists the valid ones."""
    if name not in BACKBONES:
        raise KeyError(f"unknown SSVIF backbone {name!r}; valid backbones: {', '.join(sorted(BACKBONES))}")
    module_name, attr = BACKBONES[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def build_backbone(name: str, in_channels: int = 3, out_channels: int = 3, **arch_kwargs) -> nn.Module:
    """Instantiate backbone `name` and check that it exposes the interface SSVIF needs."""
    net = backbone_class(name)(in_channels=in_channels, out_channels=out_channels, **arch_kwargs)
    missing = [attr for attr in ("features", "decode", "feature_channels") if not hasattr(net, attr)]
    if missing:
        raise TypeError(f"SSVIF backbone {name!r} ({BACKBONES[name]}) lacks {', '.join(missing)}; it needs "
                        "features(x1, x2), decode(features) and feature_channels")
    return net
