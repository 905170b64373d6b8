"""The selective scan back ends agree: chunked == reference loop (float64: outputs, final state, gradients), the
chunk groups respect the memory budget, and (GPU only) mamba-ssm's CUDA kernel == the chunked scan."""

from __future__ import annotations

import importlib
import itertools

import pytest
import torch

from fusion_bench.ops import selective_scan, selective_scan_chunked, selective_scan_flops, selective_scan_ref

ss = importlib.import_module("fusion_bench.ops.selective_scan")  # the module (the package re-exports the function)


def _inputs(length: int, groups: int, strong: bool, with_d: bool, with_z: bool, dtype=torch.float64, batch=2, dim=4,
            n=3, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).to(device)

    bc_shape = (batch, groups, n, length) if groups > 1 else (batch, n, length)
    tensors = {
        "u": rand(batch, dim, length),
        "delta": rand(batch, dim, length),
        "A": -torch.exp(rand(dim, n) + (3.0 if strong else 0.0)),  # strong decay: |A| ~ 20 per unit delta
        "B": rand(*bc_shape),
        "C": rand(*bc_shape),
        "D": rand(dim) if with_d else None,
        "z": rand(batch, dim, length) if with_z else None,
        "delta_bias": rand(dim),
    }
    return {k: v.requires_grad_() if v is not None else None for k, v in tensors.items()}


def _run(fn, t, **kwargs):
    y, h = fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"], True, True, **kwargs)
    return y, h


CASES = list(itertools.product((1, 7, 37, 64), (1, 2), (False, True), ((True, True), (False, False), (True, False)),
                               (4, 16)))


@pytest.mark.parametrize("intra", ["loop", "parallel"])
def test_chunked_equals_reference_in_float64(intra):
    """Uneven lengths (L < T, L % T != 0), grouped B/C, strong decay, D/z on and off, two chunk lengths; the chunk
    groups hold 2 chunks, so the carried state crosses group (and checkpoint) boundaries too."""
    for length, groups, strong, (with_d, with_z), chunk in CASES:
        case = f"L={length} G={groups} strong={strong} D={with_d} z={with_z} T={chunk}"
        t = _inputs(length, groups, strong, with_d, with_z, seed=length * 7 + chunk)
        params = [v for v in t.values() if v is not None]
        y_ref, h_ref = _run(selective_scan_ref, t)
        y, h = _run(selective_scan_chunked, t, chunk=chunk, chunks_per_group=2, intra=intra)
        assert torch.isfinite(y).all() and torch.isfinite(h).all(), case
        torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10, msg=case)
        torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10, msg=case)
        weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        grads_ref = torch.autograd.grad((y_ref * weight).sum() + h_ref.sum(), params)
        grads = torch.autograd.grad((y * weight).sum() + h.sum(), params)
        for name, a, b in zip([k for k, v in t.items() if v is not None], grads, grads_ref):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9, msg=f"grad {name}: {case}")


def test_chunked_float32_realistic_size():
    torch.manual_seed(0)
    b, dim, n, length = 2, 64, 16, 1024
    u, z = torch.randn(b, dim, length), torch.randn(b, dim, length)
    delta = 0.5 * torch.rand(b, dim, length)
    a = -0.5 * torch.rand(dim, n) - 0.05
    bmat, cmat = torch.randn(b, 4, n, length), torch.randn(b, 4, n, length)
    d, bias = torch.randn(dim), 0.5 * torch.rand(dim)
    with torch.no_grad():
        y_ref = selective_scan_ref(u, delta, a, bmat, cmat, d, z, bias, True)
        for intra in ("loop", "parallel"):
            y = selective_scan_chunked(u, delta, a, bmat, cmat, d, z, bias, True, chunk=32, intra=intra)
            assert y.dtype == torch.float32
            torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)


def test_low_precision_inputs_compute_in_float32():
    t = _inputs(20, 2, False, True, True, dtype=torch.float32)
    half = {k: v.detach().to(torch.bfloat16) if v is not None and k in ("u", "delta", "z") else v
            for k, v in t.items()}
    y = selective_scan(half["u"], half["delta"], t["A"], t["B"], t["C"], t["D"], half["z"], t["delta_bias"], True)
    y_ref = selective_scan_ref(half["u"].float(), half["delta"].float(), t["A"], t["B"], t["C"], t["D"],
                               half["z"].float(), t["delta_bias"], True)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("intra", ["loop", "parallel"])
def test_chunk_groups_respect_the_memory_budget(intra, monkeypatch):
    """Groups are sized from the chunk length: the largest intermediate of a group (b x dim x g x T x N, x T more
    for the parallel form) stays within `max_group_elements`, and the result does not depend on the grouping."""
    seen = []
    original = ss._chunk_group

    def recording(state, delta, u, a, bmat, cmat, parallel):
        seen.append(delta.shape)
        return original(state, delta, u, a, bmat, cmat, parallel)

    monkeypatch.setattr(ss, "_chunk_group", recording)
    t = _inputs(100, 2, False, True, False, dtype=torch.float32, batch=2, dim=8, n=4)
    chunk = 8
    budget = 2 * 8 * 4 * chunk * (chunk if intra == "parallel" else 1) * 3  # b dim N T (T): room for 3 chunks
    y, h = _run(selective_scan_chunked, t, chunk=chunk, intra=intra, max_group_elements=budget)
    assert [s[3] for s in seen] == [3, 3, 3, 3, 1], "13 chunks of 8 in groups of 3"
    for shape in seen:
        b, g_, h_, chunks, length = shape
        assert b * g_ * h_ * chunks * length * 4 * (length if intra == "parallel" else 1) <= budget
    y_one, h_one = _run(selective_scan_chunked, t, chunk=chunk, intra=intra, chunks_per_group=100)
    torch.testing.assert_close(y, y_one, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_one, rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_clear_errors():
    t = _inputs(8, 1, False, True, False)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(t["u"], t["delta"], t["A"], t["B"][..., :5], t["C"])
    with pytest.raises(ValueError, match="multiple of the B/C groups"):
        selective_scan(t["u"], t["delta"], t["A"], torch.zeros(2, 3, 3, 8), torch.zeros(2, 3, 3, 8))
    with pytest.raises(ValueError, match="unknown impl"):
        selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], impl="triton")
    with pytest.raises(ValueError, match="intra"):
        selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], intra="fast")


def test_auto_on_cpu_picks_by_state_size_and_cuda_impl_needs_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(ss, "selective_scan_ref", lambda *a, **k: calls.append("ref") or selective_scan_ref(*a, **k))
    monkeypatch.setattr(ss, "selective_scan_chunked",
                        lambda *a, **k: calls.append("chunked") or selective_scan_chunked(*a, **k))
    for dim, n in ((4, 3), (64, 40)):  # states of 2 x 4 x 3 and 2 x 64 x 40 > CPU_LOOP_MIN_STATE elements
        t = _inputs(9, 1, False, False, False, dtype=torch.float32, dim=dim, n=n)
        args = (t["u"], t["delta"], t["A"], t["B"], t["C"])
        torch.testing.assert_close(selective_scan(*args), selective_scan_ref(*args))
    assert calls == ["chunked", "ref"]
    with pytest.raises((RuntimeError, ValueError), match="mamba|CUDA"):
        selective_scan(*args, impl="cuda")  # CPU tensors: mamba-ssm missing, or the kernel refuses them


def test_analytic_flops():
    assert selective_scan_flops(2, 384, 4096, 16) == 9 * 2 * 4096 * 384 * 16 + 2 * 384 * 4096
    assert selective_scan_flops(1, 4, 10, 2, with_D=False, with_z=True) == 9 * 80 + 40


@pytest.mark.gpu
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("length", [128, 1000, 4096])
def test_mamba_kernel_matches_chunked_scan(groups, length):
    """mamba-ssm's CUDA kernel vs the chunked scan in fp32, at mamba-ssm's own test tolerances
    (tests/ops/test_selective_scan.py: outputs rtol 6e-4 / atol 2e-3; with z the weight tolerances are raised to
    the output ones; du x2, ddelta rtol x5 / atol x10, dA atol x5)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if not ss.mamba_available():
        pytest.skip("needs mamba-ssm (pip install -e '.[mamba]')")
    rtol, atol = 6e-4, 2e-3
    rtolw, atolw = max(1e-3, rtol), max(1e-3, atol)  # z is used
    t = _inputs(length, groups, False, True, True, dtype=torch.float32, batch=2, dim=4, n=8, device="cuda")
    with torch.no_grad():  # mamba-ssm's test distributions: A = -0.5 U, delta = 0.5 U, delta_bias = 0.5 U
        t["A"].copy_(-0.5 * torch.rand_like(t["A"]))
        t["delta"].copy_(0.5 * torch.rand_like(t["delta"]))
        t["delta_bias"].copy_(0.5 * torch.rand_like(t["delta_bias"]))
    ref = {k: v.detach().clone().requires_grad_() if v is not None else None for k, v in t.items()}
    y, h = _run(lambda *a: selective_scan(*a, impl="cuda"), t)
    y_ref, h_ref = _run(selective_scan_chunked, ref, chunk=32)
    torch.testing.assert_close(y, y_ref, rtol=rtol, atol=atol)
    torch.testing.assert_close(h, h_ref, rtol=rtol, atol=atol)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    tolerances = {"u": (rtol * 2, atol * 2), "delta": (rtol * 5, atol * 10), "A": (rtolw, atolw * 5),
                  "B": (rtol, atol), "C": (rtol, atol), "D": (rtolw, atolw), "z": (rtolw, atolw),
                  "delta_bias": (rtolw, atolw)}
    for name, (r, a) in tolerances.items():
        torch.testing.assert_close(t[name].grad, ref[name].grad, rtol=r, atol=a, msg=f"grad {name}")
