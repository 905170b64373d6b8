"""CFI (intervention-stable fusion): network, losses, training step, colour, CLI benches."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fusion_bench.registry
from fusion_bench.base.colour import rgb_to_ycbcr
from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark.results import read_rows
from fusion_bench.cli import main
from fusion_bench.data.transforms import batch_dihedral
from fusion_bench.methods.cfi.convert import load_official_weights
from fusion_bench.methods.cfi.loss import (
    CFILoss,
    binary_entropy,
    fusion_loss,
    invariance_loss,
    laplacian_magnitude,
    necessity_loss,
)
from fusion_bench.methods.cfi.model import CFINet, mean_gate, pooled_cross_attention
from fusion_bench.methods.cfi.module import CFIFusion


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(fusion_bench.registry.METHODS, "cfi", "fusion_bench.methods.cfi.module:CFIFusion")
    return "cfi"


def manual_laplacian(x: torch.Tensor) -> torch.Tensor:
    """|sum of the 8 neighbours - 8 * centre| with zeros outside the image (independent of the conv)."""
    p = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    neighbours = sum(p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
    return (neighbours - 8 * x).abs()


# ---------------------------------------------------------------- network


def test_gates_are_in_unit_interval_and_receive_gradients():
    torch.manual_seed(0)
    net = CFINet(dim=8, levels=3, tokens=4)
    y_ir, y_vis = torch.rand(2, 1, 24, 20), torch.rand(2, 1, 24, 20)
    fused, gates = net(y_ir, y_vis)
    assert fused.shape == (2, 1, 24, 20) and 0 <= fused.min() and fused.max() <= 1
    assert [tuple(g.shape[-2:]) for g in gates] == [(24, 20), (12, 10), (6, 5)]
    assert all(g.min() >= 0 and g.max() <= 1 for g in gates)
    for g in gates:
        g.retain_grad()
    g_mean = mean_gate(gates, (24, 20))
    assert g_mean.min() >= 0 and g_mean.max() <= 1
    invariance_loss(fused.detach(), [fused], [g_mean]).backward()
    for level, g in enumerate(gates):
        assert g.grad is not None and g.grad.abs().sum() > 0, f"gate of level {level} gets no gradient"
        assert net.cfi[level].gate[0].weight.grad.abs().sum() > 0


def test_pooled_cross_attention_attends_over_pooled_tokens():
    q = torch.zeros(1, 4, 6, 6)  # uniform attention -> mean of the pooled values
    v = torch.rand(1, 4, 8, 8)
    out = pooled_cross_attention(q, torch.rand(1, 4, 8, 8), v, tokens=2)
    expected = F.adaptive_avg_pool2d(v, 2).mean(dim=(2, 3), keepdim=True).expand(1, 4, 6, 6)
    assert torch.allclose(out, expected, atol=1e-6)


# ---------------------------------------------------------------- losses


def test_laplacian_is_the_8_neighbour_kernel():
    delta = torch.zeros(1, 1, 5, 5)
    delta[0, 0, 2, 2] = 1.0
    lap = laplacian_magnitude(delta)[0, 0]
    assert lap[2, 2] == 8 and lap[1:4, 1:4].sum() == 16 and lap.sum() == 16
    x = torch.rand(2, 3, 7, 9)
    assert torch.allclose(laplacian_magnitude(x), manual_laplacian(x), atol=1e-5)


def test_fusion_loss_matches_its_definition():
    torch.manual_seed(1)
    f, a, b = torch.rand(2, 1, 6, 7), torch.rand(2, 1, 6, 7), torch.rand(2, 1, 6, 7)
    out = fusion_loss(f, a, b)
    l_int = (f - a).abs().mean() + (f - b).abs().mean()
    l_grad = (manual_laplacian(f) - torch.maximum(manual_laplacian(a), manual_laplacian(b))).abs().mean()
    assert torch.allclose(out["loss_int"], l_int) and torch.allclose(out["loss_grad"], l_grad, atol=1e-6)
    assert torch.allclose(out["loss_fus"], l_int + l_grad, atol=1e-6)
    assert fusion_loss(a, a, a)["loss_fus"] == 0


def test_invariance_loss_matches_its_definition():
    y = torch.full((2, 1, 4, 4), 0.5)
    g = torch.full((2, 1, 4, 4), 0.3)
    h = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    assert binary_entropy(g).mean().item() == pytest.approx(h, rel=1e-5)
    # consistency 0.2 * 0.3, area |0.3 - 0.3| = 0, minus entropy
    assert invariance_loss(y, [y + 0.2], [g]).item() == pytest.approx(0.06 - h, abs=1e-6)
    g2 = torch.full((2, 1, 4, 4), 0.5)  # area |0.5 - 0.3| = 0.2, entropy ln 2, no output change
    two = invariance_loss(y, [y + 0.2, y], [g, g2])
    assert two.item() == pytest.approx(((0.06 - h) + (0.2 - math.log(2))) / 2, abs=1e-6)
    assert invariance_loss(y, [y], [g2], eta=0.5, w_entropy=0.0).item() == pytest.approx(0.0, abs=1e-7)


def test_necessity_modes_have_opposite_effects():
    y = torch.full((1, 1, 4, 4), 0.5)
    far, near = y + 0.3, y + 0.05
    assert necessity_loss(y, far, near, "code").item() == pytest.approx(0.35)
    assert necessity_loss(y, far, near, "hinge", margin=0.1).item() == pytest.approx(0.05)
    assert necessity_loss(y, far, far, "hinge", margin=0.1).item() == 0.0  # both modalities matter: satisfied
    assert necessity_loss(y, y, y, "code").item() == 0.0
    assert necessity_loss(y, y, y, "hinge", margin=0.1).item() == pytest.approx(0.2)
    assert necessity_loss(y, far, near).item() == pytest.approx(0.35)  # the default is the authors' code
    # gradient on a dropped-modality output that sits close to the full output
    grads = {}
    for mode in ("code", "hinge"):
        drop = (y + 0.02).requires_grad_()
        necessity_loss(y, drop, far, mode).backward()
        grads[mode] = drop.grad
    assert (grads["code"] > 0).all(), "code: descent pulls y_drop towards y (similarity)"
    assert (grads["hinge"] < 0).all(), "hinge: descent pushes y_drop away from y (each modality necessary)"
    with pytest.raises(ValueError, match="valid: code, hinge"):
        necessity_loss(y, y, y, "paper")  # the former name of the hinge is not silently accepted
    with pytest.raises(ValueError):
        CFILoss(necessity="other")


def test_total_loss_weights():
    torch.manual_seed(2)
    f, a, b = (torch.rand(2, 1, 8, 8) for _ in range(3))
    y_do, g_do = [torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)], [torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)]
    d1, d2 = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    out = CFILoss()(f, a, b, y_do, g_do, d1, d2)
    assert torch.allclose(out["loss"], out["loss_fus"] + 0.1 * out["loss_inv"] + 0.05 * out["loss_nec"])
    assert torch.allclose(out["loss_nec"], F.l1_loss(f, d1) + F.l1_loss(f, d2))  # the authors' Train.py
    hinge = CFILoss(necessity="hinge")(f, a, b, y_do, g_do, d1, d2)
    assert torch.allclose(hinge["loss_nec"], necessity_loss(f, d1, d2, "hinge", 0.1))


# ---------------------------------------------------------------- module


def test_dihedral_augment_is_shared_by_both_inputs():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(16, 1, 8, 8)
    a, b = batch_dihedral(y, y.clone(), g)
    assert torch.equal(a, b) and not torch.equal(a, y)
    a, b = batch_dihedral(torch.rand(4, 1, 8, 6), torch.rand(4, 1, 8, 6), g)  # non-square: flips only
    assert a.shape == (4, 1, 8, 6)


def test_training_step_is_finite_and_deterministic():
    batch = {"ir": torch.rand(2, 1, 32, 32), "vis": torch.rand(2, 3, 32, 32)}
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        module = CFIFusion(dim=8, intervention_seed=7, lr=1e-3)
        optimiser = module.configure_optimizers()
        losses = module.compute_losses(batch)
        assert set(losses) >= {"loss", "loss_fus", "loss_int", "loss_grad", "loss_inv", "loss_nec"}
        assert all(torch.isfinite(v) for v in losses.values())
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
        assert all(torch.isfinite(p).all() for p in module.parameters())
        results.append(losses["loss"].item())
        assert torch.isfinite(module.compute_losses(batch)["loss"])
    assert results[0] == results[1]


def test_fuse_keeps_size_and_restores_visible_colour():
    torch.manual_seed(0)
    module = CFIFusion(dim=8).eval()
    ir, vis = torch.rand(1, 1, 37, 53), 0.25 + 0.5 * torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        fused = module.fuse(ir, vis)
        gray = module.fuse(ir, vis.mean(1, keepdim=True))
    assert fused.shape == (1, 3, 37, 53) and gray.shape == (1, 1, 37, 53)
    assert 0 <= fused.min() and fused.max() <= 1
    chroma_err = (rgb_to_ycbcr(fused)[:, 1:] - rgb_to_ycbcr(vis)[:, 1:]).abs()
    assert chroma_err.mean() < 0.02, "CbCr comes from the visible image"


def test_presets(registered):
    paper = load_method_config(CFIFusion, "cfi", "paper")
    assert paper["optim"] == {"lr": 1.0e-4}
    assert paper["train"] == {"max_epochs": 50, "batch_size": 16, "crop_size": 256}
    assert paper["model"]["dim"] == 32 and paper["model"]["tokens"] == 8 and paper["model"]["levels"] == 3
    assert paper["model"]["necessity"] == "code"  # the authors' Train.py; the hinge is the ablation
    smoke = load_method_config(CFIFusion, "cfi", "smoke")
    assert smoke["model"]["necessity"] == "hinge"  # unchanged smoke regression numbers
    module = CFIFusion(modalities=("ir", "vis"), **smoke["model"], **smoke["optim"])
    assert module.mask_config.hole_size == (16, 16) and module.mask_config.num_holes == (1, 6)
    assert sum(p.numel() for p in CFIFusion(**paper["model"]).parameters()) == 192_388


# ---------------------------------------------------------------- end to end through the CLI


def _bench(tmp_path, *extra: str) -> int:
    return main(["bench", "--method", "cfi", *extra, "--device", "cpu", "--out", str(tmp_path / "runs"),
                 "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress"])


def test_bench_synthetic_ivif(registered, tmp_path):
    assert _bench(tmp_path, "--dataset", "synthetic-ivif") == 0
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert row["method"] == "cfi" and row["preset"] == "smoke" and float(row["params_m"]) > 0
    fused = list((tmp_path / "runs").rglob("fused/*.png"))
    assert fused


def test_bench_fake_msrs(registered, tmp_path):
    from fusion_bench.datamodules.msrs import MSRSDataset

    MSRSDataset.make_fake(tmp_path / "msrs")
    assert _bench(tmp_path, "--dataset", "msrs", "--root", str(tmp_path / "msrs")) == 0
    (row,) = read_rows(tmp_path / "lb" / "raw" / "msrs.csv")
    assert row["method"] == "cfi" and int(row["n_images"]) > 0


def test_official_state_dict_conversion(tmp_path):
    torch.manual_seed(3)
    net = CFINet(dim=8).eval()
    ours = net.state_dict()
    # the authors' key names (Train.py / test.py `Network`) for the same tensors, plus their unused modules
    official = {}
    for key, value in ours.items():
        parts = key.split(".")
        if parts[0].startswith("encoder_"):
            name = f"{parts[0]}.module{int(parts[2]) + 1}.{'.'.join(parts[3:])}"
        elif parts[0] == "cfi":
            proj = {"q_vis": "q_v", "k_vis": "k_v", "v_vis": "v_v", "q_ir": "q_i", "k_ir": "k_i", "v_ir": "v_i"}
            name = f"cfi{5 - int(parts[1])}.{proj.get(parts[2], parts[2])}.{'.'.join(parts[3:])}"
        elif parts[0] == "decoder":
            name = f"adjust_channels{5 - int(parts[1])}.{'.'.join(parts[2:])}"
        else:
            name = f"final_decoder.{'.'.join(parts[1:])}"
        official[name] = value.clone()
    assert {"encoder_vis.module1.0.weight", "cfi3.q_v.weight", "cfi5.gate.3.bias", "adjust_channels4.4.running_var",
            "final_decoder.0.weight"} <= set(official)
    official["module4.0.weight"] = torch.zeros(8, 8, 3, 3)
    official["adjust_channels3.0.weight"] = torch.zeros(8, 16, 1, 1)
    torch.save({f"module.{k}": v for k, v in official.items()}, tmp_path / "best.pth")
    fresh = CFINet(dim=8).eval()
    load_official_weights(fresh, tmp_path / "best.pth")
    x1, x2 = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x1, x2)[0], net(x1, x2)[0])


OFFICIAL_DIR = os.environ.get("FUSION_BENCH_CFI_OFFICIAL_DIR")


def _authors_network_class(test_py: Path) -> type[torch.nn.Module]:
    """The authors' `Network` from their test.py: its imports, functions and classes are executed, the script part
    (which builds a CUDA model and reads their image folders) is skipped; an import that is not installed (cv2,
    used only by their I/O helpers) is skipped too."""
    import ast

    tree = ast.parse(test_py.read_text())
    namespace: dict = {"__name__": "cfi_authors_test"}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            code = compile(ast.Module(body=[node], type_ignores=[]), str(test_py), "exec")
            try:
                exec(code, namespace)  # noqa: S102 - the authors' published code, from a path the user names
            except ImportError:
                continue
    return namespace["Network"]


@pytest.mark.skipif(not OFFICIAL_DIR, reason="set FUSION_BENCH_CFI_OFFICIAL_DIR to a checkout of the authors' "
                    "repository (test.py + best.pth)")
def test_official_best_pth_reproduces_the_authors_network():
    """The released best.pth through `load_official_weights` gives the authors' network (their test.py `Network`
    with the same file) to 1e-6: fused output and the three gates, at sizes that are and are not multiples of 4."""
    root = Path(OFFICIAL_DIR)
    weights, code = root / "best.pth", root / "test.py"
    if not (weights.is_file() and code.is_file()):
        pytest.skip(f"{root} lacks best.pth or test.py")
    authors = _authors_network_class(code)()
    authors.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    ours = CFINet(dim=32, levels=3, tokens=8)
    load_official_weights(ours, weights)
    authors.eval(), ours.eval()
    torch.manual_seed(0)
    for h, w in ((64, 80), (75, 101)):
        ir, vis = torch.rand(2, 1, h, w), torch.rand(2, 1, h, w)
        with torch.no_grad():
            out_a, _, gates_a = authors(vis, ir)  # the authors' order: (visible Y, infrared)
            out_o, gates_o = ours(ir, vis)
        assert (out_a - out_o).abs().max() < 1e-6
        for name, gate in zip(("g5", "g4", "g3"), gates_o, strict=True):  # ours fine -> coarse
            assert (gates_a[name] - gate).abs().max() < 1e-6
    assert sum(p.numel() for p in ours.parameters()) == 192_388
