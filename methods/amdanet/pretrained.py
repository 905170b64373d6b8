"""ImageNet MiT initialisation of AMDANet's two encoder streams (the authors' `load_dualpath_model` with
`mit_b4.pth`).

`pretrained` in the config is `zoo:mit_b4` (the `paper` presets: resolved by fusion_bench.weights.pretrained through
the cache, the Hugging Face cache of transformers' `nvidia/mit-b4`, or a download; never silently from scratch) or a
local path: a SegFormer release file (`mit_b4.pth`), a transformers file (`pytorch_model.bin`, `model.safetensors`,
transformers 4 or 5 key names) or a `from_pretrained` folder. `nvidia/mit-b4` holds the ImageNet-1k MiT-B4 weights the
release file comes from, under transformers' names; `fusion_bench.weights.segformer.to_release` maps any of these
layouts to the release's names and `convert_mit_state_dict` to one stream of this encoder. The same tensors go into
both streams (infrared and visible), as the authors load them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fusion_bench.weights.pretrained import resolve_pretrained
from fusion_bench.weights.released import load_file, unwrap_state_dict
from fusion_bench.weights.segformer import to_release
from fusion_bench.weights.zoo import WeightsError

if TYPE_CHECKING:
    from fusion_bench.methods.amdanet.model import AMDANetModel

_MIT_KEY = re.compile(r"(patch_embed|block|norm)(\d+)\.(.+)")


def convert_mit_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename MiT weights in the SegFormer release's layout (`mit_b4.pth`: patch_embed{i}, block{i}.{j},
    norm{i}, attn.{q,kv,proj,sr,norm}, mlp.{fc1,dwconv.dwconv,fc2}) to one stream of this encoder
    (`{stage}.patch_embed`, `{stage}.blocks.{j}.attn.{q,kv,proj,sr_conv,sr_norm}`, `mlp.dwconv`, `{stage}.norm`).
    The classification head is dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("head."):
            continue
        match = _MIT_KEY.fullmatch(key)
        if match is None:
            raise WeightsError(f"unexpected key {key!r} in the MiT checkpoint")
        kind, stage, rest = match.group(1), int(match.group(2)) - 1, match.group(3)
        if kind == "norm":
            out[f"{stage}.norm.{rest}"] = value
            continue
        target = "blocks" if kind == "block" else kind
        rest = (rest.replace("attn.sr.", "attn.sr_conv.").replace("attn.norm.", "attn.sr_norm.")
                .replace("mlp.dwconv.dwconv.", "mlp.dwconv."))
        out[f"{stage}.{target}.{rest}"] = value
    return out


def read_mit_state(path: str | Path) -> dict[str, torch.Tensor]:
    """MiT encoder weights from a file or a `from_pretrained` folder, in any known layout, as one stream of this
    encoder (read with torch.load(weights_only=True) or safetensors; nothing is downloaded here)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = [path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
        if not files:
            raise WeightsError(f"pretrained: folder {path} holds neither model.safetensors nor pytorch_model.bin")
        path = files[0]
    state, _ = unwrap_state_dict(load_file(path), str(path))
    return convert_mit_state_dict(to_release(state))


def load_mit_weights(model: AMDANetModel, pretrained: str | Path) -> int:
    """Load ImageNet MiT weights (`zoo:NAME` or a local path, see the module docstring) into both encoder streams.

    Returns the number of tensors loaded per stream. Raises WeightsError (a ValueError) when the weights cannot be
    found (naming the cache file, the hub repository and the override), are not MiT weights, or do not fit the
    encoder (e.g. a B2 file for a B4 encoder)."""
    path = resolve_pretrained(pretrained).path
    converted = read_mit_state(path)
    for stream in (model.encoder_ir, model.encoder_vis):
        own = stream.state_dict()
        mismatched = sorted(k for k in set(own) | set(converted)
                            if k not in own or k not in converted or own[k].shape != converted[k].shape)
        if mismatched:
            raise WeightsError(f"pretrained: {path} does not fit the encoder ({len(mismatched)} keys missing, "
                               f"unexpected or of another shape, e.g. {mismatched[:3]})")
        stream.load_state_dict(converted, strict=True)
    return len(converted)
