"""Precision and memory layout: one training step in bf16 autocast against fp32, channels-last against
the default layout, and the runner's `train.precision` / `train.channels_last` settings.

bf16 vs fp32, one training step of each trained image-fusion method on CPU: the same weights (one module, deep-copied)
and the same seed, a batch of two random 1x32x32 / 3x32x32 pairs (16x16 where the network allows it), the loss once
in fp32 and once under torch.autocast("cpu", dtype=torch.bfloat16), then backward. The step passes when the relative
difference |bf16 - fp32| / |fp32| is below the method's tolerance, bf16 changed the loss at all (the autocast took
effect) and every gradient is finite. Measured with the tests' pinned numerics (tests/conftest.py); the tolerance is
about 3-10x the measured difference.

| method            | preset (network) | input  | step                              | measured rel. diff | tolerance |
|-------------------|------------------|--------|-----------------------------------|--------------------|-----------|
| fusion_cnn        | paper            | 16x16  | content loss                      | 2.7e-4             | 1e-3      |
| seafusion_content | paper            | 16x16  | content loss                      | 5.1e-4             | 2e-3      |
| seafusion         | smoke (1)        | 32x32  | round-1 fusion step (+ semantic)  | 3.3e-4             | 2e-3      |
| swinfusion        | paper            | 16x16  | Eq. loss (int, tv, grad, ssim)    | 5.9e-5             | 5e-4      |
| cfi               | paper            | 16x16  | fusion + inv + nec losses         | 6.4e-4             | 3e-3      |
| cmd_cta           | paper            | 16x16  | Eq. 15 total (Eq. 4 as a sum) (4) | 5.3e-4             | 2e-3      |
| amdanet           | smoke (2)        | 32x32  | seg + fusion + CR losses          | 1.5e-4             | 1e-3      |
| ssvif             | smoke (3)        | 32x32  | Stage II (fusion + CSC, GDWA)     | 2.0e-3             | 1e-2      |

(1) the paper fusion network is seafusion_content's (above); the smoke preset keeps the step's CPU time at ~1 s
(the SegFormer-B0 segmenter at full width: ~3 s). (2) the paper preset's MiT-b4 encoder (136M parameters) takes
~13 s per step pair on CPU; the smoke preset is the authors' configuration on a tiny MiT. (3) the paper preset
(SwinFusion backbone + SegFormer-B3) takes ~30 s per step pair at 32x32 (its smallest input); the smoke preset
runs the same Stage II step with a SeAFusion backbone.
(4) the paper's orthogonality loss (Eq. 4, a sum over channels) dominates the total (about 3250 at this size);
with the channel-normalised mean (the ablation `ortho_normalize: true`) the difference was 2.1e-5.

channels-last vs default layout: fusion_cnn's paper network, fp32, the same step at 32x32: equal within 1e-5 (measured:
identical, 0.0, with the pinned numerics); a 2-step fit through the runner with train.channels_last: weights equal to
the default fit within rtol 1e-5, atol 1e-6.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch

from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark import trainer_settings
from fusion_bench.benchmark.callbacks import channels_last
from fusion_bench.benchmark.config import overrides_text
from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.benchmark.trainer_settings import resolve_precision, resolve_train_precision, trainer_kwargs
from fusion_bench.errors import BenchError
from fusion_bench.registry import get_method

NUM_CLASSES = 5
Step = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


def _content(module: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return module.luminance_losses(batch)["loss"]


def _seafusion(module: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    module.build_segmenter()
    return module.fusion_losses(batch, 1.0)["loss"]


def _ssvif(module: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    module.build_seg_branches()
    module.stage = 2
    return module.compute_losses(batch)["loss"]


def _cmd_cta(module: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return module.compute_losses(batch, training=True)["loss"]


def _losses(module: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return module.compute_losses(batch)["loss"]


# method: (preset, input side, the step's loss, tolerance on the relative loss difference); see the table above
CASES: dict[str, tuple[str, int, Step, float]] = {
    "fusion_cnn": ("paper", 16, _content, 1e-3),
    "seafusion_content": ("paper", 16, _content, 2e-3),
    "seafusion": ("smoke", 32, _seafusion, 2e-3),
    "swinfusion": ("paper", 16, _content, 5e-4),
    "cfi": ("paper", 16, _losses, 3e-3),
    "cmd_cta": ("paper", 16, _cmd_cta, 2e-3),
    "amdanet": ("smoke", 32, _losses, 1e-3),
    "ssvif": ("smoke", 32, _ssvif, 1e-2),
}


def build(name: str, preset: str) -> torch.nn.Module:
    """The method of `name` with its preset's model and optim settings (as the runner builds it), seeded, in
    training mode."""
    cls = get_method(name)
    config = load_method_config(cls, name, preset)
    kwargs: dict[str, Any] = {"modalities": ("ir", "vis"), **config["model"], **config["optim"]}
    if getattr(cls, "needs_class_labels", False):
        kwargs["num_classes"] = NUM_CLASSES
    torch.manual_seed(0)
    return cls(**kwargs).train()


def batch(side: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"ir": torch.rand(2, 1, side, side, generator=g), "vis": torch.rand(2, 3, side, side, generator=g),
            "mask": torch.randint(0, NUM_CLASSES, (2, side, side), generator=g)}


def step(module: torch.nn.Module, loss_of: Step, data: dict[str, torch.Tensor], bf16: bool = False,
         memory_format: torch.memory_format | None = None) -> tuple[float, torch.nn.Module]:
    """One training step (loss, backward) of a copy of `module` with seed 1: (the loss, the stepped copy)."""
    module = copy.deepcopy(module)
    data = {k: v.clone() for k, v in data.items()}
    if memory_format is not None:
        module.to(memory_format=memory_format)
        channels_last(data)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_of(module, data)
    loss.backward()
    return float(loss.detach()), module


def is_channels_last(tensor: torch.Tensor) -> bool:
    """In torch.channels_last and not also plain-contiguous (a layout that only channels_last explains)."""
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_step_loss_is_close_to_fp32(name: str) -> None:
    preset, side, loss_of, tolerance = CASES[name]
    module, data = build(name, preset), batch(side)
    fp32, _ = step(module, loss_of, data)
    bf16, stepped = step(module, loss_of, data, bf16=True)
    relative = abs(bf16 - fp32) / abs(fp32)
    assert bf16 != fp32, "the bf16 autocast changed nothing: is the step still under autocast?"
    assert relative < tolerance, f"{name}: bf16 loss {bf16} vs fp32 {fp32}: relative difference {relative:.2e}"
    grads = [p.grad for p in stepped.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_channels_last_step_matches_the_default_layout() -> None:
    module, data = build("fusion_cnn", "paper"), batch(32)
    plain, _ = step(module, _content, data)
    last, stepped = step(module, _content, data, memory_format=torch.channels_last)
    conv = stepped.net.modules()
    assert any(isinstance(m, torch.nn.Conv2d) and is_channels_last(m.weight) for m in conv), \
        "the network is not in channels_last"
    assert abs(last - plain) / abs(plain) < 1e-5


def test_channels_last_converts_the_batch_in_place() -> None:
    data = {"vis": torch.rand(2, 3, 4, 5), "mask": torch.zeros(2, 4, 5, dtype=torch.long), "name": ["a", "b"],
            "list": [torch.rand(1, 3, 2, 2)]}
    assert channels_last(data) is data
    assert is_channels_last(data["vis"]) and is_channels_last(data["list"][0]) and data["mask"].is_contiguous()


# ---------------------------------------------------------------- the runner's settings


@pytest.fixture
def toy(toy_registered: str, tmp_path: Any) -> dict[str, Any]:
    from toy_dataset import make_toy

    return {"method": "fusion_cnn", "dataset": toy_registered, "root": make_toy(tmp_path / "toy", n=2),
            "out": tmp_path / "runs", "leaderboard_dir": None, "device": "cpu", "downstream": "none",
            "progress": False}


def test_bf16_auto_resolves_to_fp32_on_cpu_and_is_recorded_so(toy: dict[str, Any]) -> None:
    auto = prepare(BenchSpec(**toy, overrides={"train.precision": "bf16-auto"}))
    assert auto.config["train"]["precision"] == "32-true"
    assert trainer_kwargs(auto, has_val=False)["precision"] == "32-true"
    assert overrides_text(auto.overrides) == '{"train.precision":"32-true"}', "the row's overrides column"
    explicit = prepare(BenchSpec(**toy, overrides={"train.precision": "32-true"}))
    assert auto.config_hash == explicit.config_hash, "bf16-auto on CPU is the fp32 run"


def test_bf16_auto_is_bf16_mixed_only_on_a_gpu_with_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(trainer_settings, "cuda_bf16_supported", lambda device: device.type == "cuda")
    assert resolve_precision("bf16-auto", cuda, "m") == "bf16-mixed"
    assert resolve_precision("bf16-auto", cpu, "m") == "32-true"
    monkeypatch.setattr(trainer_settings, "cuda_bf16_supported", lambda device: False)  # e.g. a V100
    assert resolve_precision("bf16-auto", cuda, "m") == "32-true"
    assert resolve_precision("bf16-mixed", cpu, "m") == "bf16-mixed" and resolve_precision(16, cpu, "m") == 16
    assert not trainer_settings.cuda_bf16_supported(cpu)
    config = {"model": {}, "optim": {}, "train": {"precision": "bf16-mixed"}}  # e.g. cmd_cta's paper preset
    assert resolve_train_precision(config, {}, cpu, "m") == (config, {})


@pytest.mark.parametrize("value", ["fp33", "bf16-auto-x", True, 8, 32.0, ["bf16-mixed"]])
def test_bad_precision_is_a_one_line_error_naming_the_key_and_the_values(value: Any) -> None:
    with pytest.raises(BenchError) as err:
        resolve_precision(value, torch.device("cpu"), "fusion_cnn")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and f"train.precision {value!r}" in message
    assert "32-true" in message and "bf16-mixed" in message and "bf16-auto" in message


def test_bad_precision_fails_before_the_dataset_is_read_bad_channels_last_too(toy: dict[str, Any],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchError, match="train.precision 'fp33': expected one of 32-true, bf16-mixed"):
        prepare(BenchSpec(**{**toy, "root": toy["root"] / "missing"}, overrides={"train.precision": "fp33"}))
    with pytest.raises(BenchError, match="train.channels_last=yes: expected true or false, got a string"):
        prepare(BenchSpec(**toy, overrides={"train.channels_last": "yes"}))


def test_channels_last_fit_trains_like_the_default_layout(toy: dict[str, Any], tmp_path: Any) -> None:
    from fusion_bench.benchmark.build import build_datamodule, build_method
    from fusion_bench.benchmark.training import fit_method

    weights = []
    for flag in (False, True):
        prep = prepare(BenchSpec(**toy, overrides={"train.channels_last": flag, "train.max_steps": 2,
                                                   "train.batch_size": 2, "train.limit_val_batches": 0}))
        datamodule = build_datamodule(prep, 0)
        torch.manual_seed(0)
        model = build_method(prep, datamodule)
        seen = []
        original = model.training_step

        def recording(batch: dict[str, Any], batch_idx: int, original: Callable = original,
                      seen: list = seen) -> torch.Tensor:
            seen.append(is_channels_last(batch["vis"]))
            return original(batch, batch_idx)

        model.training_step = recording
        torch.manual_seed(0)
        model, _ = fit_method(prep, model, datamodule, tmp_path / f"run{flag}")
        assert seen == [flag, flag]
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    for key, plain in weights[0].items():
        torch.testing.assert_close(weights[1][key], plain, rtol=1e-5, atol=1e-6, msg=key)


def _fit_weights(toy: dict[str, Any], run: Any, overrides: dict[str, Any]) -> dict[str, torch.Tensor]:
    from fusion_bench.benchmark.build import build_datamodule, build_method
    from fusion_bench.benchmark.training import fit_method

    prep = prepare(BenchSpec(**toy, overrides={"train.max_steps": 2, "train.batch_size": 2,
                                               "train.limit_val_batches": 0, **overrides}))
    datamodule = build_datamodule(prep, 0)
    torch.manual_seed(0)
    model, _ = fit_method(prep, build_method(prep, datamodule), datamodule, run)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_compile_with_inductor_trains_like_eager(toy: dict[str, Any], tmp_path: Any) -> None:
    """train.compile: true (torch.compile's default inductor backend, C++ on CPU; ~80 s of compiling for
    fusion_cnn): the weights after two steps match the uncompiled fit (measured: 4e-7 absolute)."""
    plain = _fit_weights(toy, tmp_path / "plain", {})
    compiled = _fit_weights(toy, tmp_path / "compiled", {"train.compile": True})
    for key, value in plain.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_auto_on_a_gpu(toy: dict[str, Any], tmp_path: Any) -> None:
    """On a CUDA device bf16-auto is bf16-mixed where the GPU has bf16 (Ampere and later), fp32 elsewhere, and the
    fit runs."""
    toy = {**toy, "device": "cuda"}
    prep = prepare(BenchSpec(**toy, overrides={"train.precision": "bf16-auto"}))
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "32-true"
    assert prep.config["train"]["precision"] == expected
    weights = _fit_weights(toy, tmp_path / "run", {"train.precision": "bf16-auto", "train.channels_last": True})
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
