"""SwinFusion weights in the authors' KAIR layout (`<iter>_E.pth` / `<iter>_G.pth`, a plain state dict of their
`models/network_swinfusion1.SwinFusion`; BasicSR-style `params` / `params_ema` wrappers and `module.` prefixes are
unwrapped by fusion_bench.weights.released) -> `SwinFusionNet`.

Key layout of the authors' network, and where each part goes here (their single extraction and reconstruction
layer, `Ex_depths=[4]`, `Re_depths=[4]`; any number of fusion layers):
    conv_first1_A.* / conv_first2_A.*                         -> shallow.0.* / shallow.2.*   (shared by both streams)
    conv_first1_B.* / conv_first2_B.*                         dropped (built, never called)
    patch_embed.norm.*                                        -> token_norm.*
    layers_Ex_{A,B}.0.residual_group.blocks.{j}.<block>       -> extraction_{a,b}.{j}.<block>
    norm_Ex_{A,B}.*                                           -> norm_extraction_{a,b}.*
    layers_Fusion.{i}.residual_group_{A,B}.blocks.{j}.<block> -> fusion.{i}.intra_{a,b}.{j}.<block>
    layers_Fusion.{i}.residual_group.blocks.{j}.<cross>       -> fusion.{i}.inter.{j}.<cross>
    norm_Fusion_{A,B}.*                                       -> norm_fusion_{a,b}.*
    conv_after_body_Fusion.*                                  -> fusion_conv.0.*
    layers_Re.0.residual_group.blocks.{j}.<block>             -> reconstruction.{j}.<block>
    norm_Re.*                                                 -> norm_reconstruction.*
    conv_last{1,2,3}.*                                        -> head.{0,2,4}.*
<block>: norm1, attn.{qkv,proj,relative_position_bias_table}, norm2, mlp.fc1 -> mlp.0, mlp.fc2 -> mlp.2.
<cross>: norm1_{A,B} -> norm1_{a,b}, attn_{A,B}.{q,kv,proj,relative_position_bias_table} -> attn_{a,b}.*,
         norm2_{A,B} -> norm2_{a,b}, mlp_{A,B}.fc{1,2} -> mlp_{a,b}.{0,2}.
Buffers (`relative_position_index`, the shifted blocks' `attn_mask` for their 128x128 training size) are dropped:
this network computes them for every input size.

Streams: the authors' stream A is their option file's `dataroot_A`. Infrared-visible: A = infrared = our x1, so the
names map directly. Medical (`train_swinfusion_med.json`, the released CT-MRI / PET-MRI models): A = MRI, which is our
x2 (the Harvard datamodules give (CT|PET|SPECT, MRI)), so `swap_streams=True` maps A -> b and B -> a and swaps the
two halves of the merging convolution's input channels; `load_released(..., task="medical")` does this.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusion_bench.weights.released import ConversionError, load_strict, rename

_BUFFERS = (r".*\.relative_position_index", r".*\.attn_mask")
_UNUSED = (r"conv_first1_B\..+", r"conv_first2_B\..+", *_BUFFERS)
_MLP = ((".mlp.fc1.", ".mlp.0."), (".mlp.fc2.", ".mlp.2."))


def _rules(swap_streams: bool) -> list[tuple[str, str]]:
    """Module-prefix rules (the leaf names inside a block are renamed by `_leaf`)."""
    a, b = ("b", "a") if swap_streams else ("a", "b")
    rules = [(r"conv_first1_A\.(.+)", r"shallow.0.\1"), (r"conv_first2_A\.(.+)", r"shallow.2.\1"),
             (r"patch_embed\.norm\.(.+)", r"token_norm.\1"),
             (r"conv_after_body_Fusion\.(.+)", r"fusion_conv.0.\1"),
             (r"layers_Re\.0\.residual_group\.blocks\.(\d+)\.(.+)", r"reconstruction.\1.\2"),
             (r"norm_Re\.(.+)", r"norm_reconstruction.\1"),
             (r"conv_last1\.(.+)", r"head.0.\1"), (r"conv_last2\.(.+)", r"head.2.\1"),
             (r"conv_last3\.(.+)", r"head.4.\1"),
             (r"layers_Fusion\.(\d+)\.residual_group\.blocks\.(\d+)\.(.+)", r"fusion.\1.inter.\2.\3")]
    for theirs, ours in (("A", a), ("B", b)):
        rules += [(rf"layers_Ex_{theirs}\.0\.residual_group\.blocks\.(\d+)\.(.+)", rf"extraction_{ours}.\1.\2"),
                  (rf"norm_Ex_{theirs}\.(.+)", rf"norm_extraction_{ours}.\1"),
                  (rf"layers_Fusion\.(\d+)\.residual_group_{theirs}\.blocks\.(\d+)\.(.+)",
                   rf"fusion.\1.intra_{ours}.\2.\3"),
                  (rf"norm_Fusion_{theirs}\.(.+)", rf"norm_fusion_{ours}.\1")]
    return rules


def _leaf(key: str, swap_streams: bool) -> str:
    """Names inside the blocks: the MLPs' fc1/fc2 -> 0/2; in cross blocks the stream suffixes _A/_B -> _a/_b
    (swapped with `swap_streams`)."""
    if ".inter." in key:
        a, b = ("b", "a") if swap_streams else ("a", "b")
        for part in ("norm1", "norm2", "attn", "mlp"):
            key = key.replace(f".{part}_A.", f".{part}_{a}.").replace(f".{part}_B.", f".{part}_{b}.")
        for stream in ("a", "b"):
            key = key.replace(f".mlp_{stream}.fc1.", f".mlp_{stream}.0.").replace(f".mlp_{stream}.fc2.",
                                                                                   f".mlp_{stream}.2.")
        return key
    for old, new in _MLP:
        key = key.replace(old, new)
    return key


def convert_released(state: Mapping[str, torch.Tensor], swap_streams: bool = False) -> dict[str, torch.Tensor]:
    """Rename a state dict of the authors' SwinFusion to `SwinFusionNet`'s keys (see the module docstring).

    swap_streams=True: the authors' stream A becomes our stream b (their medical models, whose A is MRI = our x2)."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith(("layers_Ex_A.1.", "layers_Re.1.")) for k in state):
        raise ConversionError("SwinFusion checkpoint with more than one extraction / reconstruction layer "
                              "(Ex_depths / Re_depths of length > 1): this network has one of each")
    if "absolute_pos_embed" in state:
        raise ConversionError("SwinFusion checkpoint with an absolute position embedding (ape=True): not supported")
    renamed = rename(state, _rules(swap_streams), drop=_UNUSED, what="SwinFusion checkpoint (the authors' network)")
    out = {_leaf(k, swap_streams): v for k, v in renamed.items()}
    if swap_streams and "fusion_conv.0.weight" in out:
        w = out["fusion_conv.0.weight"]
        half = w.shape[1] // 2
        out["fusion_conv.0.weight"] = torch.cat([w[:, half:], w[:, :half]], dim=1)
    return out


def load_released(module: nn.Module, state: Mapping[str, torch.Tensor], task: str | None = None) -> None:
    """Load the authors' weights into a SwinFusion module's network; `task="medical"` maps their stream A (MRI) to
    our x2 (see the module docstring). Another layout (width, window, depths) is a ConversionError naming the keys."""
    swap = str(getattr(task, "value", task)) == "medical"
    load_strict(getattr(module, "net", module), convert_released(state, swap_streams=swap),
                "the SwinFusion checkpoint" + (" (medical: streams A/B swapped)" if swap else ""))
