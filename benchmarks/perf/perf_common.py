"""Shared pieces of the training-side performance scripts (bench_memory.py).

- `build_method`: a registered method built from a preset of its config.yaml with the runner's own pieces
  (`apply_overrides`, `method_kwargs`: modalities, the model and optim sections, num_classes where needed).
- `random_batch`: random data in the suite's batch format (`ir` B x 1 x H x W, `vis` B x 3 x H x W in [0, 1],
  `mask` B x H x W class indices, `valid` B x H x W ones when the preset's crop pads, `name`).
- `training_loss`: the loss of one training step of a method, outside a Trainer (SeAFusion's two phases and SSVIF's
  two stages selectable).
- `saved_for_backward`: the bytes autograd keeps for the backward pass of a function, through
  `torch.autograd.graph.saved_tensors_hooks` (works on any device, CPU included), each storage counted once, with the
  largest holders by module and by tensor.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark.build import method_kwargs
from fusion_bench.benchmark.config import apply_overrides
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.registry import get_method
from fusion_bench.types import MASK, VALID

PHASES = {"seafusion": ("fusion", "segmentation"), "ssvif": ("stage2", "stage1")}  # first = the default


def crop_hw(crop: Any) -> tuple[int, int]:
    """A config's crop_size (int, [h, w] or None) as (h, w); None -> 480 x 640 (the suite's whole-image default)."""
    if crop is None:
        return 480, 640
    if isinstance(crop, int):
        return crop, crop
    return int(crop[0]), int(crop[1])


def build_method(name: str, preset: str = "paper", dataset: str | None = None, num_classes: int = 9,
                 overrides: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(method, config): the registered method `name` built from `preset` (per-dataset entries of `dataset`
    merged), with `overrides` ({"model.key": value, ...}) applied, as the runner builds it."""
    cls = get_method(name)
    config = apply_overrides(load_method_config(cls, name, preset, dataset), overrides or {}, name)
    spec = BenchSpec(method=name, dataset=dataset or "random data", preset=preset)
    kwargs = method_kwargs(cls, spec, config, ("ir", "vis"), [f"class {i}" for i in range(num_classes)])
    return cls(**kwargs), config


def random_batch(batch: int, height: int, width: int, num_classes: int = 9, valid: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                 ) -> dict[str, Any]:
    """Random data in the suite's batch format (what `collate_samples` gives for an IVIF dataset)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {
        "ir": torch.rand(batch, 1, height, width, generator=gen, dtype=dtype),
        "vis": torch.rand(batch, 3, height, width, generator=gen, dtype=dtype),
        MASK: torch.randint(0, num_classes, (batch, height, width), generator=gen),
    }
    if valid:
        out[VALID] = torch.ones(batch, height, width, dtype=dtype)
    out = {k: v.to(device) for k, v in out.items()}
    out["name"] = [f"random{i}" for i in range(batch)]
    return out


def prepare_phase(method: nn.Module, name: str, phase: str | None) -> str | None:
    """Put `method` in the state its training `phase` needs (SSVIF Stage II: the segmentation branches built;
    SeAFusion: the segmenter built, frozen or trained); returns the phase used (None for single-phase methods)."""
    phases = PHASES.get(name)
    if phases is None:
        if phase is not None:
            raise ValueError(f"method {name!r} has one training phase; --phase is for {', '.join(PHASES)}")
        return None
    phase = phase or phases[0]
    if phase not in phases:
        raise ValueError(f"method {name!r}: phase {phase!r} unknown; valid: {', '.join(phases)}")
    if name == "ssvif":
        method.stage = 2 if phase == "stage2" else 1
        if phase == "stage2":
            method.build_seg_branches()
    elif name == "seafusion":
        fusion = phase == "fusion"
        segmenter = method.build_segmenter()
        method.net.train(fusion).requires_grad_(fusion)
        segmenter.train(not fusion).requires_grad_(not fusion)
    return phase


def training_loss(method: nn.Module, name: str, batch: dict[str, Any], phase: str | None = None) -> torch.Tensor:
    """The loss one training step of `method` back-propagates (call `prepare_phase` first). SeAFusion's fusion phase
    is a round with the semantic loss (weight 3, the last round); its segmentation phase trains the segmenter."""
    if name == "seafusion":
        if phase == "segmentation":
            return method.segmentation_losses(batch)["loss"]
        return method.fusion_losses(batch, 3.0)["loss"]
    with warnings.catch_warnings():  # `self.log` outside a Trainer warns and does nothing
        warnings.simplefilter("ignore")
        return method.training_step(batch, 0)


@dataclass
class SavedReport:
    """What `saved_for_backward` found: total bytes of unique storages (activations; parameters apart)."""

    total: int = 0
    parameters: int = 0
    count: int = 0
    by_module: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tensors: list[tuple[int, str, tuple[int, ...], str]] = field(default_factory=list)  # bytes, module, shape, dtype

    def top_modules(self, n: int = 10, depth: int | None = None) -> list[tuple[str, int]]:
        """The `n` modules (cut to `depth` name components) holding the most saved bytes."""
        grouped: dict[str, int] = defaultdict(int)
        for module, nbytes in self.by_module.items():
            key = ".".join(module.split(".")[:depth]) if depth else module
            grouped[key] += nbytes
        return sorted(grouped.items(), key=lambda kv: -kv[1])[:n]

    def top_tensors(self, n: int = 10) -> list[tuple[int, str, tuple[int, ...], str]]:
        return sorted(self.tensors, key=lambda t: -t[0])[:n]


@contextlib.contextmanager
def _module_stack(root: nn.Module):
    names = {id(m): name or type(root).__name__ for name, m in root.named_modules()}
    stack: list[str] = []

    def pre(module: nn.Module, args: Any) -> None:
        stack.append(names.get(id(module), type(module).__name__))

    def post(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    handles = [nn.modules.module.register_module_forward_pre_hook(pre),
               nn.modules.module.register_module_forward_hook(post)]
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def saved_for_backward(fn: Callable[[], torch.Tensor], root: nn.Module | None = None) -> tuple[SavedReport, Any]:
    """Run `fn` (a forward to a loss) under `saved_tensors_hooks`; returns (report, fn's result).

    Each storage is counted once (a view saved twice, or a tensor saved by two ops, costs its bytes once), at its
    full storage size; parameters (and their views) are reported apart. With `root`, each storage is attributed
    to the innermost submodule of `root` running when it was first saved ("-" outside any module)."""
    report = SavedReport()
    params = {p.untyped_storage().data_ptr() for p in (root.parameters() if root is not None else ())}
    seen: dict[int, torch.Tensor] = {}  # storage pointer -> a tensor on it (kept alive, so pointers stay unique)
    stack: list[str] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta" and not t.is_sparse:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in seen and storage.nbytes():
                seen[ptr] = t
                nbytes = storage.nbytes()
                if ptr in params:
                    report.parameters += nbytes
                else:
                    module = stack[-1] if stack else "-"
                    report.total += nbytes
                    report.count += 1
                    report.by_module[module] += nbytes
                    report.tensors.append((nbytes, module, tuple(t.shape), str(t.dtype).replace("torch.", "")))
        return t

    with contextlib.ExitStack() as ctx:
        if root is not None:
            stack = ctx.enter_context(_module_stack(root))
        ctx.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
        result = fn()
    return report, result


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"
