"""Numbers that repeat across machines: exact training-free fusion, pinned numerics for trained methods."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fusion_bench import numerics
from fusion_bench.base.colour import rgb_to_ycbcr, ycbcr_to_rgb
from fusion_bench.base.exact import resize_bilinear, separable_filter
from fusion_bench.benchmark.regress import compare, expected_environment, read_expected, write_expected

REPO = Path(__file__).resolve().parents[1]

# Fuse test images of two synthetic datasets with the training-free rules; print one digest per method.
_FUSE_SCRIPT = r"""
import hashlib, json, sys
import torch
from fusion_bench.data.io import to_uint8
from fusion_bench.registry import get_datamodule, get_method
digests = {}
for dataset in ("synthetic-ivif", "synthetic-mfif"):
    dm_cls = get_datamodule(dataset)
    dm = dm_cls(root=dm_cls.resolve_root(None), batch_size=1, crop_size=None, seed=0)
    test = dm.dataset("test")
    a_key, b_key = dm.modalities
    for name in ("mean", "max", "laplacian"):
        method = get_method(name)(modalities=dm.modalities).eval()
        h = hashlib.sha256()
        with torch.no_grad():
            for i in range(min(len(test), 6)):
                s = test[i]
                h.update(to_uint8(method.fuse(s[a_key][None], s[b_key][None])[0]).tobytes())
        digests[f"{dataset}/{name}"] = h.hexdigest()
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                  "digests": digests}))
"""


def _native_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV}
    env.update({numerics.MODE_ENV: numerics.NATIVE, "PYTHONPATH": str(REPO), **extra})
    return env


def test_training_free_fusion_is_identical_for_any_threads_and_instruction_set():
    """mean/max/laplacian give byte-identical fused images under 1 and 2 threads and every ATen CPU capability
    (the old 1x1-convolution colour conversion changed 1,806 pixels of synthetic-mfif between 1 and 2 threads)."""
    runs = []
    for threads, capability in (("1", "default"), ("2", "avx2"), ("1", None)):  # None: the CPU's best (AVX-512 here)
        extra = {"OMP_NUM_THREADS": threads}
        if capability:
            extra["ATEN_CPU_CAPABILITY"] = capability
        out = subprocess.run([sys.executable, "-c", _FUSE_SCRIPT], env=_native_env(**extra), capture_output=True,
                             text=True, timeout=600, cwd=REPO)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {r["threads"] for r in runs} == {1, 2}
    assert "DEFAULT" in {r["capability"] for r in runs} and "AVX2" in {r["capability"] for r in runs}
    for run in runs[1:]:
        assert run["digests"] == runs[0]["digests"], (run["capability"], run["threads"])


def test_cli_pins_smoke_numerics_and_records_them(tmp_path):
    """`python -m fusion_bench bench` (smoke) re-executes itself pinned, whatever the caller's capability."""
    env = _native_env(ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="2",
                      FUSION_BENCH_CACHE=os.environ["FUSION_BENCH_CACHE"])
    env.pop(numerics.MODE_ENV)
    out = subprocess.run([sys.executable, "-m", "fusion_bench", "bench", "--method", "mean", "--dataset",
                          "synthetic-ivif", "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"),
                          "--downstream", "none", "--no-progress"], env=env, capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    with open(tmp_path / "lb" / "raw" / "synthetic-ivif.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    if numerics.can_pin():
        assert (row["numerics"], row["cpu_capability"], row["threads"]) == (
            "pinned;MKL_CBWR=COMPATIBLE,STRICT;oneDNN=off", "AVX2", "1")
    assert row["cpu"]


@pytest.mark.parametrize("argv, pinned", [
    (["regress"], True), (["regress", "--suite", "smoke"], True), (["bench", "--method", "mean"], True),
    (["bench", "--preset", "paper", "--method", "mean"], False), (["bench", "--preset=paper"], False),
    (["train", "--preset", "smoke"], True), (["metrics", "--a", "x"], False), (["list"], False), ([], False),
])
def test_which_commands_pin(argv, pinned):
    assert numerics.wants_pinning(argv) is pinned


def test_bad_numerics_mode_is_a_request_error(monkeypatch):
    monkeypatch.setenv(numerics.MODE_ENV, "fast")
    with pytest.raises(ValueError, match="FUSION_BENCH_NUMERICS"):
        numerics.requested_mode()


def test_tests_run_pinned():
    if numerics.requested_mode() == numerics.NATIVE or not numerics.can_pin():
        pytest.skip("numerics not pinned in this session")
    env = numerics.environment()
    assert (env["cpu_capability"], env["threads"], env["onednn"]) == ("AVX2", 1, "off")


@pytest.mark.parametrize("shape", [(2, 3, 37, 53), (1, 1, 2, 9), (1, 1, 3, 3), (1, 2, 1, 6)])
def test_separable_filter_equals_convolution(shape):
    x = torch.rand(shape, dtype=torch.float64)
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16
    ref, c = x, x.shape[1]
    for dim in (-1, -2):
        pad = min(2, x.shape[dim] - 1)
        k = kernel[2 - pad:3 + pad]
        if pad:
            ref = F.pad(ref, (pad, pad, 0, 0) if dim == -1 else (0, 0, pad, pad), mode="reflect")
        weight = k.view(1, 1, 1, -1) if dim == -1 else k.view(1, 1, -1, 1)
        ref = F.conv2d(ref, weight.expand(c, 1, *weight.shape[2:]).contiguous(), groups=c)
    assert torch.allclose(separable_filter(x, kernel.tolist()), ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("src, dst", [((19, 27), (37, 53)), ((37, 53), (19, 27)), ((5, 5), (5, 9)), ((1, 4), (3, 4))])
def test_resize_bilinear_equals_interpolate(src, dst):
    x = torch.rand(2, 3, *src, dtype=torch.float64)
    ref = F.interpolate(x, size=dst, mode="bilinear", align_corners=False)
    assert torch.allclose(resize_bilinear(x, dst), ref, rtol=0, atol=1e-12)


def test_colour_conversion_is_bt601_and_inverts():
    rgb = torch.rand(2, 3, 8, 8)
    ycbcr = rgb_to_ycbcr(rgb)
    assert torch.allclose(ycbcr[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2], atol=1e-7)
    assert torch.allclose(rgb_to_ycbcr(torch.ones(1, 3, 1, 1)), torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1),
                          atol=1e-6)
    assert torch.allclose(ycbcr_to_rgb(ycbcr), rgb, atol=2e-6)


def test_expected_file_records_its_environment(tmp_path):
    frame = pd.DataFrame([{"dataset": "d", "method": "mean", "preset": "smoke", "seed": 0, "EN": 7.0}])
    path = tmp_path / "suite.expected.csv"
    write_expected(frame, path, "fusion-bench regress --update")
    recorded = expected_environment(path)
    assert recorded and "kernels" in recorded and "torch=" in recorded
    assert compare(read_expected(path), frame, {}) == []


def test_synthetic_data_is_generated_with_pinned_numpy(tmp_path, monkeypatch):
    """The generators run in a child process whose environment disables NumPy's AVX-512 code (which changes
    8-bit pixels of synthetic-ivif against the AVX2 code), whatever the parent process was started with."""
    from fusion_bench.data import synthetic

    seen = {}
    real_run = subprocess.run

    def spy(cmd, env=None, **kwargs):
        seen.update(env or {})
        return real_run(cmd, env=env, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "")
    root = synthetic.ensure_generated("synthetic-meif", tmp_path / "meif")
    assert not synthetic.verify_manifest(root, "synthetic-meif")
    if numerics.can_pin():
        expected = numerics.pinned_environment({})
        assert {k: seen.get(k) for k in numerics.PINNED_ENV} == {k: expected.get(k) for k in numerics.PINNED_ENV}


# ------------------------------------------------------------------------------------------------ downstream numerics


def test_downstream_numerics_modes(monkeypatch):
    monkeypatch.setattr(numerics, "is_pinned", lambda: True)
    assert numerics.downstream_pinned(None) and numerics.downstream_pinned("pinned")
    assert not numerics.downstream_pinned("native")
    monkeypatch.setattr(numerics, "is_pinned", lambda: False)  # an unpinned process cannot pin its evaluators
    assert not numerics.downstream_pinned(None) and not numerics.downstream_pinned("pinned")
    with pytest.raises(ValueError, match="expected one of pinned, native"):
        numerics.downstream_pinned("fast")


def test_native_environment_drops_every_pinned_variable():
    env = numerics.native_environment(3, base={**numerics.pinned_environment({}), "KEEP": "1"})
    assert not set(numerics.PINNED_ENV) - {"OMP_NUM_THREADS", "MKL_NUM_THREADS"} & set(env)
    assert (env[numerics.MODE_ENV], env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"], env["KEEP"]) == (
        "native", "3", "3", "1")


def test_native_kernels_switch_onednn_on_and_restore_it():
    before = torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled()
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with numerics.native_kernels():
                assert torch.backends.mkldnn.enabled and torch._C._get_nnpack_enabled()
                raise RuntimeError("inside")
        assert not torch.backends.mkldnn.enabled and not torch._C._get_nnpack_enabled()
    finally:
        torch.backends.mkldnn.enabled = before[0]
        torch.backends.nnpack.set_flags(before[1])


def test_opencv_avx512_switch_only_where_the_cpu_has_avx512(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV warns in every process when asked to disable a feature the CPU lacks: the pin leaves it out there."""
    monkeypatch.setattr(numerics, "_cpu_flags", lambda: {"avx2", "fma"})
    assert "OPENCV_CPU_DISABLE" not in numerics.pinned_environment({})
    monkeypatch.setattr(numerics, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert numerics.pinned_environment({})["OPENCV_CPU_DISABLE"] == "AVX512-SKX"
    assert numerics.pinned_environment({})["MKL_CBWR"] == "COMPATIBLE,STRICT"
