"""The authors' AMDANet checkpoints (their Engine's `{"model": state dict, "optimizer", "epoch", "iteration"}`,
e.g. the released FMB / MFNet / PST900 `.pth` files) -> `AMDANetModel` as built by the `paper` preset.

Key layout of the authors' `models/model.py` AMDANet (`backbone` = RGBXTransformer, `decode_head` = seg_decoder,
`aux_head` = fuse_decoder), and where each part goes here. Their streams are (rgb, x) = (visible, infrared):
    backbone.patch_embed{i}.*, block{i}.{j}.*, norm{i}.*        -> encoder_vis.{i-1}.{patch_embed, blocks.{j}, norm}.*
    backbone.extra_patch_embed{i}.*, extra_block{i}.*, extra_norm{i}.*  -> encoder_ir.{i-1}.*
        inside a block: attn.sr -> attn.sr_conv, attn.norm -> attn.sr_norm, mlp.dwconv.dwconv -> mlp.dwconv
    backbone.sci_{i}.mlp.*                                      -> sci.{i-1}.mlp.*   (first layer: input halves swapped)
    backbone.sci_{i}.lambda_param                               -> sci.{i-1}.lambda_
    backbone.LEs.{k}.gate.*                                     -> local.{k}.gate.*
    backbone.LEs.{k}.fuse_sc.cha.mlp.* / fuse_sc.sap.mlp.*      -> local.{k}.channel.* / local.{k}.spatial.*
    backbone.GEs.{k}.SE_x1.* / SE_x2.*                          -> globals.{k}.enhance_vis.* / enhance_ir.*
    backbone.GEs.{k}.CM_x1toX2.* / CM_x2toX1.*                  -> globals.{k}.vis_to_ir.* / ir_to_mid.*
        q1 -> q, kv2 -> kv, sr -> sr_conv, norm -> sr_norm
    backbone.GEs.{k}.proj.*                                     -> globals.{k}.out.*
    decode_head.linear_c{n}.proj.*                              -> seg_head.embed.{n-1}.*
    decode_head.linear_fuse.* / linear_pred.*                   -> seg_head.fuse.* / seg_head.classifier.*
    aux_head.PointConv_{i}_ir.pconv.* / PointConv_{i}_rgb.pconv.* -> fusion_head.points.{2i-2}.* / points.{2i-1}.*
    aux_head.CNN_fuse.*                                         -> fusion_head.out.*  (input channel blocks reordered)

Channel orders: the authors' SCI MLP reads cat(rgb, x) tokens, ours cat(ir, vis): the two input halves of its first
Linear are swapped. The authors' fusion head concatenates [rgb_1, ir_1, ..., rgb_4, ir_4, rgb image, ir image], ours
[ir_1, vis_1, ..., ir_4, vis_4, vis image, ir image]: the stage blocks of its first convolution's input channels are
swapped pairwise (the two images keep their place). Everything else maps by name; the network must be the `paper`
preset's (the authors' code modules: `sci_gate: code`, `sci_swap_streams: true`, `local_mode`/`global_mode`/
`head_style: code`), and its class count that of the checkpoint (FMB 15, MFNet 9, PST900 5).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusion_bench.weights.released import ConversionError, load_strict, rename

# the module settings that make AMDANetModel the authors' network (the paper preset's)
AUTHORS_NETWORK = {"sci_gate": "code", "sci_swap_streams": True, "local_mode": "code", "global_mode": "code",
                   "head_style": "code"}

_ATTN = (("attn.sr.", "attn.sr_conv."), ("attn.norm.", "attn.sr_norm."), ("mlp.dwconv.dwconv.", "mlp.dwconv."))
_REDUCED = (("q1.", "q."), ("kv2.", "kv."), ("sr.", "sr_conv."), ("norm.", "sr_norm."))
_GLOBAL_PARTS = {"SE_x1": "enhance_vis", "SE_x2": "enhance_ir", "CM_x1toX2": "vis_to_ir", "CM_x2toX1": "ir_to_mid"}
_UNUSED = (r"criterion\..+",)


def _rules() -> list[tuple[str, str]]:
    """Module-prefix rules; the authors' 1-based stage numbers are written out per stage."""
    rules = []
    for i in range(1, 5):
        s = i - 1
        for theirs, ours in (("", "encoder_vis"), ("extra_", "encoder_ir")):
            rules += [(rf"backbone\.{theirs}patch_embed{i}\.(.+)", rf"{ours}.{s}.patch_embed.\1"),
                      (rf"backbone\.{theirs}block{i}\.(\d+)\.(.+)", rf"{ours}.{s}.blocks.\1.\2"),
                      (rf"backbone\.{theirs}norm{i}\.(.+)", rf"{ours}.{s}.norm.\1")]
        rules += [(rf"backbone\.sci_{i}\.mlp\.(.+)", rf"sci.{s}.mlp.\1"),
                  (rf"backbone\.sci_{i}\.lambda_param", rf"sci.{s}.lambda_"),
                  (rf"decode_head\.linear_c{i}\.proj\.(.+)", rf"seg_head.embed.{s}.\1"),
                  (rf"aux_head\.PointConv_{i}_ir\.pconv\.(.+)", rf"fusion_head.points.{2 * s}.\1"),
                  (rf"aux_head\.PointConv_{i}_rgb\.pconv\.(.+)", rf"fusion_head.points.{2 * s + 1}.\1")]
    rules += [(r"backbone\.LEs\.(\d)\.gate\.(.+)", r"local.\1.gate.\2"),
              (r"backbone\.LEs\.(\d)\.fuse_sc\.cha\.mlp\.(.+)", r"local.\1.channel.\2"),
              (r"backbone\.LEs\.(\d)\.fuse_sc\.sap\.mlp\.(.+)", r"local.\1.spatial.\2"),
              *[(rf"backbone\.GEs\.(\d)\.{theirs}\.(.+)", rf"globals.\1.{ours}.\2")
                for theirs, ours in _GLOBAL_PARTS.items()],
              (r"backbone\.GEs\.(\d)\.proj\.(.+)", r"globals.\1.out.\2"),
              (r"decode_head\.linear_fuse\.(.+)", r"seg_head.fuse.\1"),
              (r"decode_head\.linear_pred\.(.+)", r"seg_head.classifier.\1"),
              (r"aux_head\.CNN_fuse\.(.+)", r"fusion_head.out.\1")]
    return rules


def _leaf(key: str) -> str:
    """Names inside the attention modules: the MiT blocks' sr/norm/dwconv and the global alignment's q1/kv2/sr/norm."""
    parts = key.split(".")
    if parts[0] in ("encoder_vis", "encoder_ir") and parts[2] == "blocks":
        for old, new in _ATTN:
            key = key.replace(old, new)
    elif parts[0] == "globals" and parts[2] in _GLOBAL_PARTS.values():
        head, rest = ".".join(parts[:3]), ".".join(parts[3:]) + "."
        for old, new in _REDUCED:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        key = f"{head}.{rest[:-1]}"
    return key


def convert_released(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and reorder channels of) a state dict of the authors' AMDANet to `AMDANetModel`'s keys (see the
    module docstring). A leading `module.` is stripped; an unknown key is a ConversionError."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    renamed = rename(state, _rules(), drop=_UNUSED, what="AMDANet checkpoint (the authors' model)")
    out = {_leaf(k): v for k, v in renamed.items()}
    for key in [k for k in out if k.startswith("sci.") and k.endswith(".mlp.0.weight")]:
        w = out[key]
        half = w.shape[1] // 2
        out[key] = torch.cat([w[:, half:], w[:, :half]], dim=1)  # cat(rgb, x) -> cat(ir, vis)
    if "fusion_head.out.0.weight" in out:
        w = out["fusion_head.out.0.weight"]
        stages = sum(1 for k in out if k.startswith("fusion_head.points.") and k.endswith(".0.weight")) // 2
        width = (w.shape[1] - 6) // (2 * stages) if stages else 0
        blocks = []
        for s in range(stages):  # theirs: rgb_s, ir_s; ours: ir_s, vis_s
            rgb, ir = w[:, 2 * s * width:(2 * s + 1) * width], w[:, (2 * s + 1) * width:(2 * s + 2) * width]
            blocks += [ir, rgb]
        out["fusion_head.out.0.weight"] = torch.cat([*blocks, w[:, 2 * stages * width:]], dim=1)
    return out


def load_released(module: nn.Module, state: Mapping[str, torch.Tensor], task: str | None = None) -> None:
    """Load the authors' checkpoint into an AMDANet module built with the `paper` preset (see AUTHORS_NETWORK) and
    the checkpoint's class count; anything else is a ConversionError saying what differs."""
    hparams = dict(getattr(module, "hparams", {}) or {})
    differing = [f"{k}={hparams[k]!r} (the authors' network: {v!r})" for k, v in AUTHORS_NETWORK.items()
                 if k in hparams and hparams[k] != v]
    if differing:
        raise ConversionError("released AMDANet weights are the authors' network; build the module with the paper "
                              f"preset (differing: {', '.join(differing)})")
    converted = convert_released(state)
    net = getattr(module, "net", module)
    classes = converted.get("seg_head.classifier.weight")
    ours = net.seg_head.classifier.weight.shape[0] if hasattr(net, "seg_head") else None
    if classes is not None and ours is not None and classes.shape[0] != ours:
        raise ConversionError(f"the checkpoint segments {classes.shape[0]} classes and this run's dataset has {ours} "
                              "(the authors' FMB model: 15 classes, MFNet: 9, PST900: 5)")
    load_strict(net, converted, "the AMDANet checkpoint")
