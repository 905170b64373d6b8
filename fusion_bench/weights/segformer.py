"""Key layouts of Mix Transformer (MiT / SegFormer encoder) weights, and conversions between them.

Three layouts hold the same tensors:
- `release`: the SegFormer authors' files (`mit_b4.pth`; the layout AMDANet's and the RGB-X codebases' encoders
  use): `patch_embed{i}.{proj,norm}`, `block{i}.{j}.{norm1, attn.{q,kv,proj,sr,norm}, norm2, mlp.{fc1,dwconv.dwconv,
  fc2}}`, `norm{i}` (i = 1..4), keys and values in one `attn.kv` Linear (keys first);
- `v4`: transformers 4.x (and the files on the Hugging Face hub, e.g. `nvidia/mit-b4`): `encoder.patch_embeddings.{i}
  .{proj,layer_norm}`, `encoder.block.{i}.{j}.{layer_norm_1, attention.self.{query,key,value,sr,layer_norm},
  attention.output.dense, layer_norm_2, mlp.{dense1,dwconv.dwconv,dense2}}`, `encoder.layer_norm.{i}` (i = 0..3);
- `v5`: transformers 5.x `SegformerModel`: `stages.{i}.{patch_embeddings.{proj,layer_norm}, blocks.{j}.
  {layernorm_before, attention.{q_proj,k_proj,v_proj,o_proj}, attention.sequence_reduction.{sequence_reduction,
  layer_norm}, layernorm_after, mlp.{fc1,dwconv.dwconv,fc2}}, layer_norm}` (the renames of transformers'
  conversion_mapping for SegformerModel).
Any of them may carry a `segformer.` prefix (the ...ForImageClassification / ...ForSemanticSegmentation models) or a
`backbone.` prefix (mmsegmentation); classification and decode heads are not encoder weights and are dropped by
`to_release`. The decode head's v4 `decode_head.linear_c.*` is v5's `decode_head.linear_projections.*`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

from fusion_bench.weights.zoo import WeightsError

LAYOUTS = ("release", "v4", "v5")
_HEADS = ("classifier.", "head.", "decode_head.", "auxiliary_head.")
_PREFIXES = ("segformer.", "backbone.")

# release <-> v5, per block (names below stages.{i}.blocks.{j} / block{i}.{j})
_BLOCK_V5 = (("norm1.", "layernorm_before."), ("attn.q.", "attention.q_proj."), ("attn.proj.", "attention.o_proj."),
             ("attn.sr.", "attention.sequence_reduction.sequence_reduction."),
             ("attn.norm.", "attention.sequence_reduction.layer_norm."), ("norm2.", "layernorm_after."),
             ("mlp.fc1.", "mlp.fc1."), ("mlp.dwconv.dwconv.", "mlp.dwconv.dwconv."), ("mlp.fc2.", "mlp.fc2."))
_BLOCK_V4 = (("norm1.", "layer_norm_1."), ("attn.q.", "attention.self.query."),
             ("attn.proj.", "attention.output.dense."), ("attn.sr.", "attention.self.sr."),
             ("attn.norm.", "attention.self.layer_norm."), ("norm2.", "layer_norm_2."),
             ("mlp.fc1.", "mlp.dense1."), ("mlp.dwconv.dwconv.", "mlp.dwconv.dwconv."), ("mlp.fc2.", "mlp.dense2."))
_KV = {"v5": ("attention.k_proj.", "attention.v_proj."), "v4": ("attention.self.key.", "attention.self.value.")}


def _strip(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """(state with the model prefix removed from the keys that have it, the prefix)."""
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}, prefix
    return dict(state), ""


def detect_layout(keys: Iterable[str]) -> str:
    """'release', 'v4' or 'v5' from the encoder keys (prefixes ignored); WeightsError when none fits."""
    stripped = [k.split(".", 1)[1] if k.startswith(_PREFIXES) else k for k in keys]
    if any(k.startswith("stages.") for k in stripped):
        return "v5"
    if any(k.startswith("encoder.patch_embeddings.") or k.startswith("encoder.block.") for k in stripped):
        return "v4"
    if any(re.match(r"(patch_embed|block)[1-4]\.", k) for k in stripped):
        return "release"
    shown = ", ".join(list(stripped)[:4])
    raise WeightsError(f"not MiT/SegFormer encoder weights (keys such as {shown}; expected the SegFormer release's "
                       "patch_embed1/block1..., or transformers' encoder.block... / stages...)")


def _block_table(layout: str) -> tuple[tuple[str, str], ...]:
    return _BLOCK_V5 if layout == "v5" else _BLOCK_V4


def to_release(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MiT encoder weights in any layout -> the SegFormer release's key names (heads dropped; transformers' separate
    key and value projections joined into `attn.kv`, keys first)."""
    state, _ = _strip(state)
    layout = detect_layout(state)
    encoder = {k: v for k, v in state.items() if not k.startswith(_HEADS)}
    if layout == "release":
        return encoder
    out: dict[str, torch.Tensor] = {}
    kv: dict[str, dict[str, torch.Tensor]] = {}
    key_name, value_name = _KV[layout]
    table = _block_table(layout)
    patterns = {
        "v5": (r"stages\.(\d)\.patch_embeddings\.proj\.(.+)", r"stages\.(\d)\.patch_embeddings\.layer_norm\.(.+)",
               r"stages\.(\d)\.blocks\.(\d+)\.(.+)", r"stages\.(\d)\.layer_norm\.(.+)"),
        "v4": (r"encoder\.patch_embeddings\.(\d)\.proj\.(.+)", r"encoder\.patch_embeddings\.(\d)\.layer_norm\.(.+)",
               r"encoder\.block\.(\d)\.(\d+)\.(.+)", r"encoder\.layer_norm\.(\d)\.(.+)"),
    }[layout]
    for key, value in encoder.items():
        if m := re.fullmatch(patterns[0], key):
            out[f"patch_embed{int(m[1]) + 1}.proj.{m[2]}"] = value
        elif m := re.fullmatch(patterns[1], key):
            out[f"patch_embed{int(m[1]) + 1}.norm.{m[2]}"] = value
        elif m := re.fullmatch(patterns[3], key):
            out[f"norm{int(m[1]) + 1}.{m[2]}"] = value
        elif m := re.fullmatch(patterns[2], key):
            head, rest = f"block{int(m[1]) + 1}.{m[2]}", m[3]
            for part, which in ((key_name, 0), (value_name, 1)):
                if rest.startswith(part):
                    kv.setdefault(f"{head}.attn.kv.{rest[len(part):]}", {})[which] = value
                    break
            else:
                if (renamed := _renamed(rest, table, source=1)) is None:
                    raise WeightsError(f"MiT weights ({layout} layout): unexpected key {key!r}")
                out[f"{head}.{renamed}"] = value
        else:
            raise WeightsError(f"MiT weights ({layout} layout): unexpected key {key!r}")
    for key, parts in kv.items():
        if set(parts) != {0, 1}:
            raise WeightsError(f"MiT weights: {key} has a key or a value projection but not both")
        out[key] = torch.cat([parts[0], parts[1]], dim=0)
    return out


def _renamed(rest: str, table: Iterable[tuple[str, str]], source: int) -> str | None:
    """A block key's tail with its leading name from column `source` of `table` (0: release, 1: transformers)
    replaced by the other column's name; None when no name of that column starts it."""
    for pair in table:
        if rest.startswith(pair[source]):
            return pair[1 - source] + rest[len(pair[source]):]
    return None


def from_release(state: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Release-layout encoder weights -> transformers' `layout` ('v4' or 'v5'), without a model prefix."""
    if layout not in ("v4", "v5"):
        raise ValueError(f"layout must be v4 or v5, got {layout!r}")
    out: dict[str, torch.Tensor] = {}
    key_name, value_name = _KV[layout]
    table = _block_table(layout)
    for key, value in state.items():
        if m := re.fullmatch(r"patch_embed(\d)\.(proj|norm)\.(.+)", key):
            i, kind, tail = int(m[1]) - 1, "proj" if m[2] == "proj" else "layer_norm", m[3]
            out[f"stages.{i}.patch_embeddings.{kind}.{tail}" if layout == "v5" else
                f"encoder.patch_embeddings.{i}.{kind}.{tail}"] = value
        elif m := re.fullmatch(r"norm(\d)\.(.+)", key):
            i = int(m[1]) - 1
            out[f"stages.{i}.layer_norm.{m[2]}" if layout == "v5" else f"encoder.layer_norm.{i}.{m[2]}"] = value
        elif m := re.fullmatch(r"block(\d)\.(\d+)\.(.+)", key):
            head = (f"stages.{int(m[1]) - 1}.blocks.{m[2]}" if layout == "v5" else
                    f"encoder.block.{int(m[1]) - 1}.{m[2]}")
            rest = m[3]
            if rest.startswith("attn.kv."):
                k, v = value.chunk(2, dim=0)
                tail = rest[len("attn.kv."):]
                out[f"{head}.{key_name}{tail}"], out[f"{head}.{value_name}{tail}"] = k.clone(), v.clone()
                continue
            if (renamed := _renamed(rest, table, source=0)) is None:
                raise WeightsError(f"MiT weights (release layout): unexpected key {key!r}")
            out[f"{head}.{renamed}"] = value
        else:
            raise WeightsError(f"MiT weights (release layout): unexpected key {key!r}")
    return out


def to_model_layout(state: Mapping[str, torch.Tensor], model_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Encoder (and decode-head) weights in any layout renamed to the layout of a transformers SegFormer model whose
    state-dict keys are `model_keys` (with its `segformer.` prefix when it has one). Keys already in the model's
    layout are returned unchanged; the decode head's `linear_c` / `linear_projections` follow the version."""
    model_keys = list(model_keys)
    target = detect_layout(model_keys)
    if target == "release":
        raise ValueError("to_model_layout needs a transformers model's keys")
    prefix = "segformer." if any(k.startswith("segformer.") for k in model_keys) else ""
    stripped, _ = _strip(state)
    try:
        source = detect_layout(stripped)
    except WeightsError:
        return dict(state)  # no encoder weights: leave them to the caller's matching
    heads = {k: v for k, v in stripped.items() if k.startswith("decode_head.")}
    if source == target:
        encoder = {k: v for k, v in stripped.items() if not k.startswith(_HEADS)}
    else:
        encoder = from_release(to_release(stripped), target)
    old, new = ("decode_head.linear_c.", "decode_head.linear_projections.")
    if target == "v4":
        old, new = new, old
    heads = {k.replace(old, new, 1): v for k, v in heads.items()}
    return {**{f"{prefix}{k}": v for k, v in encoder.items()}, **heads}
