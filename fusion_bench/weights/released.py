"""Released checkpoints in their authors' formats: safe reading, unwrapping, and the per-method converters.

`read_state_dict(path)` reads a torch file with `torch.load(weights_only=True)` (tensors and plain containers only:
a file that carries code is refused and nothing in it runs) or a safetensors file, then unwraps the containers the
papers' training code writes: `{"state_dict": ...}`, `{"model": ..., "optimizer": ..., "epoch": ...}` (TorchSeg /
the RGB-X codebases), `{"params_ema": ...}` / `{"params": ...}` (KAIR / BasicSR; the EMA wins), `{"net": ...}`,
and strips the `module.` (DataParallel) and `_orig_mod.` (torch.compile) prefixes.

Each method with released weights has `methods/<name>/convert.py` (listed in `fusion_bench.registry.CONVERTERS`)
with two functions:
    convert_released(state, **options) -> the project's state dict (pure dict -> dict; ConversionError naming the
                                          missing and unexpected keys)
    load_released(module, state, task=None) -> None   (checks the module's configuration, converts, loads strictly)
`load_released_weights(method, module, path, task=...)` is what the runner calls; it returns the file's sha256.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from fusion_bench.weights.zoo import ResolvedWeights, WeightsError, fetch, find_released, sha256_file

log = logging.getLogger(__name__)

# container keys, in order of preference (the first one present that holds tensors wins)
CONTAINER_KEYS = ("state_dict", "model", "params_ema", "params", "net", "network", "model_state_dict")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")


class ConversionError(WeightsError):
    """A checkpoint that does not fit the converter or the network (keys missing, unexpected or of another
    shape); the message names them."""


def _is_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte little-endian header length followed by a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def load_file(path: str | Path) -> Any:
    """The object in a weights file: safetensors -> dict of tensors; else torch.load(weights_only=True) on CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    if _is_safetensors(path):
        from safetensors.torch import load_file as load_safetensors

        return load_safetensors(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:Unsupported global|GLOBAL) (\S+)", str(err))
        if found is None:  # not a pickle of tensors at all (e.g. a truncated or foreign file): say so, not "code"
            reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
            raise WeightsError(f"{path}: not a readable weights file (torch.load(weights_only=True): "
                               f"{reason.group(1).strip() if reason else 'not a torch file'}); nothing in it was run"
                               ) from err
        raise WeightsError(f"{path}: refused: the file holds more than tensors and plain data (it refers to "
                           f"{found.group(1)}), and it is only read with torch.load(weights_only=True); nothing in it "
                           "was run") from err
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(f"{path}: not a readable weights file ({first})") from err


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any, where: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """(the state dict inside `obj`, a description of where it was found), prefixes stripped."""
    found, inside = obj, ""
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if _tensor_dict(found):
            break
        if not isinstance(found, Mapping):
            raise ConversionError(f"{where}: expected a state dict (or a dict holding one), got {type(found).__name__}")
        key = next((k for k in CONTAINER_KEYS if k in found and isinstance(found[k], Mapping)), None)
        if key is None:
            keys = ", ".join(map(str, list(found)[:8]))
            raise ConversionError(f"{where}: no state dict found (top-level keys: {keys}; looked for "
                                  f"{', '.join(CONTAINER_KEYS)})")
        found, inside = found[key], f"{inside}[{key!r}]"
    else:
        raise ConversionError(f"{where}: no state dict found within three levels of containers")
    state = {str(k): v for k, v in found.items() if isinstance(v, torch.Tensor)}
    for prefix in STRIPPED_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            inside += f" (prefix {prefix!r} stripped)"
    return state, inside or "top level"


def is_fusion_bench_file(obj: Any) -> bool:
    """True for a weights file written by `fusion-bench train` / `fit` (method, preset, config, state_dict): those
    load through the runner's own path, not a converter."""
    return isinstance(obj, Mapping) and {"method", "config", "state_dict"} <= set(obj)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an authors' checkpoint (see the module docstring), read safely and unwrapped."""
    obj = load_file(path)
    if is_fusion_bench_file(obj):
        raise WeightsError(f"{path} was written by fusion-bench (method {obj.get('method')!r}); it loads as a "
                           "fusion-bench weights file, not as released weights")
    state, inside = unwrap_state_dict(obj, str(path))
    log.info("%s: %d tensors (%s)", path, len(state), inside)
    return state


# ------------------------------------------------------------------------------------------------
# converters
# ------------------------------------------------------------------------------------------------


def converter(method: str) -> ModuleType:
    """The converter module of `method` (`fusion_bench.registry.CONVERTERS`); a method without one is a
    WeightsError listing those that have one."""
    from fusion_bench.registry import CONVERTERS

    if method not in CONVERTERS:
        raise WeightsError(f"method {method!r} has no converter for released weights; methods with one: "
                           f"{', '.join(methods_with_converters())}")
    return importlib.import_module(CONVERTERS[method])


def methods_with_converters() -> list[str]:
    """Method names whose released weights can be loaded."""
    from fusion_bench.registry import CONVERTERS

    return sorted(CONVERTERS)


def load_released_weights(method: str, module: nn.Module, path: str | Path, task: str | None = None) -> str:
    """Load an authors' checkpoint (`path`, in their own format) into `module` (the method's LightningModule, built
    with the preset the weights belong to) through the method's converter; returns the file's sha256.

    `task` (e.g. "medical") tells converters whose authors ordered the inputs per task (SwinFusion) how to map the
    streams. Every problem is a WeightsError (ConversionError for keys that do not fit) naming the file."""
    conv = converter(method)
    state = read_state_dict(path)
    try:
        conv.load_released(module, state, task=task)
    except ConversionError as err:
        raise ConversionError(f"{path}: {err}") from err
    return sha256_file(path)


def resolve_released(method: str, value: str = "zoo", task: str | None = None,
                     dataset: str | None = None, download: bool | None = None) -> ResolvedWeights:
    """The file behind `--weights zoo` (or `zoo:NAME`) for `method` on `dataset` of `task`: the catalogue entry
    (`find_released`) fetched through the cache (hash-checked download unless offline)."""
    if value != "zoo" and not value.startswith("zoo:"):
        raise WeightsError(f"--weights {value!r}: expected a file, 'zoo' or 'zoo:NAME'")
    name = value[len("zoo:"):] if value.startswith("zoo:") else None
    entry = find_released(method, task=task, dataset=dataset, name=name)
    return fetch(entry, download=download)


# ------------------------------------------------------------------------------------------------
# helpers for the converters
# ------------------------------------------------------------------------------------------------


def rename(state: Mapping[str, torch.Tensor], rules: list[tuple[str, str]], *, drop: tuple[str, ...] = (),
           what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename keys by the first matching regex rule (`re.fullmatch`, replacement with \\1 groups); keys matching a
    `drop` regex are left out; a key no rule matches is a ConversionError listing such keys."""
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    compiled = [(re.compile(p), r) for p, r in rules]
    dropped = [re.compile(p) for p in drop]
    for key, value in state.items():
        if any(d.fullmatch(key) for d in dropped):
            continue
        for pattern, repl in compiled:
            match = pattern.fullmatch(key)
            if match:
                out[match.expand(repl)] = value
                break
        else:
            unexpected.append(key)
    if unexpected:
        raise ConversionError(f"{what}: {len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
    return out


def load_strict(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """`net.load_state_dict(state, strict=True)` with an error that names missing, unexpected and mis-shaped keys
    (ConversionError) instead of torch's RuntimeError."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                    if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("of another shape (file vs network)",
                                                                               shapes)):
            if items:
                parts.append(f"{len(items)} {label}, e.g. {items[:4]}")
        raise ConversionError(f"{what} does not fit this network ({'; '.join(parts)})")
    net.load_state_dict(state, strict=True)
