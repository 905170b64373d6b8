"""CMD-CTA's pieces: decomposition, prototypes (EMA + noise, k-means init), contrastive losses and granularity
weights on known inputs, padding for odd and tiny sizes, every Table 3 switch trains a step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from fusion_bench.base.mixture import TASK_ID
from fusion_bench.methods.cmd_cta.loss import (
    GranularityWeights,
    TaskPrototypes,
    alignment_loss,
    block_loss,
    global_loss,
    orthogonality_loss,
    pixel_loss,
    spherical_kmeans,
    symmetric_infonce,
)
from fusion_bench.methods.cmd_cta.model import SS2D, CMDCTANet, ContrastHeads, OrthogonalDecomposition
from fusion_bench.methods.cmd_cta.module import CMDCTAFusion, parse_tasks

SMOKE = yaml.safe_load((Path(__file__).parents[1] / "methods" / "cmd_cta" / "config.yaml").read_text())["cmd_cta"]


def _smoke(**overrides) -> CMDCTAFusion:
    model = {**SMOKE["smoke"]["model"], **overrides}
    optim = {k: overrides.pop(k) if k in overrides else v for k, v in SMOKE["smoke"]["optim"].items()}
    model = {k: v for k, v in model.items() if k not in optim}
    return CMDCTAFusion(modalities=("ir", "vis"), **model, **optim)


# ---------------------------------------------------------------- decomposition


def test_exact_decomposition_is_orthonormal():
    torch.manual_seed(0)
    dec = OrthogonalDecomposition(8, 24, 6, mode="exact", use_gnn=False)
    with torch.no_grad():
        dec.A.normal_(std=0.3)
    q = dec.bases()
    eye = torch.eye(6)
    for i in range(3):
        torch.testing.assert_close(q[i].T @ q[i], eye, atol=1e-5, rtol=0)
        for j in range(i + 1, 3):
            torch.testing.assert_close(q[i].T @ q[j], torch.zeros(6, 6), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="3 x sub_dim"):
        OrthogonalDecomposition(8, 16, 6, mode="exact")


def test_paper_decomposition_shapes_and_orthogonality_loss_is_differentiable():
    torch.manual_seed(0)
    dec = OrthogonalDecomposition(8, 16, 4, mode="paper", use_gnn=True, gnn_nodes=3)
    with torch.no_grad():
        dec.A.normal_(std=0.1)
    p, feats, q = dec(torch.randn(2, 4, 4, 8))
    assert p.shape == (2, 16, 16) and all(f.shape == (2, 16, 4) for f in feats) and all(b.shape == (16, 4) for b in q)
    c, m, _ = q
    assert (c.T @ m).abs().max() > 1e-3, "Eq. 2 as written does not make the bases orthogonal (README)"
    halves = [tuple(f[:1] for f in feats), tuple(f[1:] for f in feats)]
    loss = orthogonality_loss(halves, q, lambda_reg=0.01)
    grads = torch.autograd.grad(loss, [dec.A, dec.W])
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    reg = sum(float(((b.T @ b - torch.eye(4)) ** 2).sum()) for b in (x.detach() for x in q))
    assert 0 < float(loss.detach()) < 12 + 0.01 * reg + 1e-4, "normalised pair terms are at most 1 each"


def test_orthogonality_loss_known_values():
    eye = torch.eye(4)[:, :2]  # unit channels, mutually orthogonal bases
    a = torch.tensor([[1.0, 0], [0, 1], [0, 0], [0, 0]])[None]  # 1 image, 4 tokens, 2 channels
    b = torch.tensor([[0.0, 0], [0, 0], [1, 0], [0, 1]])[None]
    assert float(orthogonality_loss([(a, b, b * 2)], (eye, eye, eye), lambda_reg=0.0)) == pytest.approx(2 * 1 * 2 / 4)
    # F_c _|_ F_m and F_c _|_ F_t; F_m = F_t/2: squared cosines 1 on the diagonal -> 2 / d^2 per ordered pair
    raw = orthogonality_loss([(a, b, b * 2)], (eye, eye, eye), lambda_reg=0.0, normalize=False)
    assert float(raw) == pytest.approx(2 * 8.0)  # ||b^T 2b||_F^2 = 4 + 4, twice
    only_reg = orthogonality_loss([(a, b, torch.zeros_like(b))], (2 * eye, eye, eye), lambda_reg=1.0)
    assert float(only_reg) == pytest.approx(2 * 9.0)  # ||4 I - I||_F^2 = 9 + 9


# ---------------------------------------------------------------- alignment and prototypes


def test_alignment_is_zero_for_one_task_and_positive_for_three():
    f = F.normalize(torch.randn(5, 8), dim=-1)
    one = alignment_loss(f, torch.zeros(5, dtype=torch.long), F.normalize(torch.randn(1, 8), dim=-1))
    assert float(one) == 0.0
    three = alignment_loss(f, torch.tensor([0, 1, 2, 0, 1]), F.normalize(torch.randn(3, 8), dim=-1))
    assert torch.isfinite(three) and float(three) > 0


def test_prototype_update_is_the_ema_and_noise_of_eq6():
    protos = TaskPrototypes(2, 4, momentum=0.9, eta=0.05, beta=10.0, repulsion=0.0, cos_hard=0.8, noise="none")
    protos.prototypes.copy_(torch.eye(4)[:2])
    protos.ready.fill_(True)
    f = F.normalize(torch.tensor([[1.0, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 1, 0]]), dim=-1)
    protos.update(f, torch.tensor([0, 0, 1]), torch.Generator().manual_seed(0))
    # task 0: only f[1] is a hard positive (cos 0.6 < 0.8); task 1: f[2] has cos 0 with p_1
    torch.testing.assert_close(protos.prototypes[0], F.normalize(0.9 * torch.eye(4)[0] + 0.1 * f[1], dim=0))
    torch.testing.assert_close(protos.prototypes[1], F.normalize(0.9 * torch.eye(4)[1] + 0.1 * f[2], dim=0))
    # no hard positive: the whole task set is used (ours)
    easy = TaskPrototypes(1, 4, momentum=0.5, repulsion=0.0, cos_hard=-1.0, noise="none")
    easy.prototypes.copy_(torch.eye(4)[:1])
    easy.ready.fill_(True)
    easy.update(f[:2], torch.tensor([0, 0]), torch.Generator())
    torch.testing.assert_close(easy.prototypes[0], F.normalize(0.5 * torch.eye(4)[0] + 0.5 * f[:2].mean(0), dim=0))


def test_prototype_noise_is_seeded_unit_norm_and_sized_by_eta_beta():
    def run(seed: int) -> torch.Tensor:
        protos = TaskPrototypes(3, 64, noise="paper")
        protos.prototypes.copy_(F.normalize(torch.ones(3, 64), dim=-1))
        protos.ready.fill_(True)
        protos.update(F.normalize(torch.ones(6, 64), dim=-1), torch.tensor([0, 0, 1, 1, 2, 2]),
                      torch.Generator().manual_seed(seed))
        return protos.prototypes.clone()

    a, b, c = run(0), run(0), run(1)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
    assert TaskPrototypes(1, 4).sigma == pytest.approx(math.sqrt(2 * 0.05 / 10))
    # noise of norm sigma * sqrt(64) = 0.8 moves a unit prototype far (the paper's sigma, R6)
    assert float((a * F.normalize(torch.ones(64), dim=0)).sum(-1).min()) < 0.95


def test_repulsion_pushes_prototypes_apart_and_prototypes_are_saved():
    protos = TaskPrototypes(2, 3, momentum=1.0, eta=0.5, repulsion=1.0, noise="none")
    protos.prototypes.copy_(F.normalize(torch.tensor([[1.0, 0.2, 0], [1.0, -0.2, 0]]), dim=-1))
    protos.ready.fill_(True)
    before = float(protos.prototypes[0] @ protos.prototypes[1])
    protos.update(protos.prototypes.clone(), torch.tensor([0, 1]), torch.Generator())
    assert float(protos.prototypes[0] @ protos.prototypes[1]) < before
    state = protos.state_dict()
    assert set(state) == {"prototypes", "ready"}
    other = TaskPrototypes(1, 3)  # a single-task model loads mixture weights (K = 2)
    other.load_state_dict(state)
    torch.testing.assert_close(other.prototypes, protos.prototypes)


def test_kmeans_initialisation():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 5
    points = torch.cat([c + 0.3 * torch.randn(20, 8, generator=g) for c in centres])
    found, labels = spherical_kmeans(points, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(found.norm(dim=-1), torch.ones(3))
    for block in labels.view(3, 20):
        assert len(set(block.tolist())) == 1, "each cluster recovered whole"
    assert len(set(labels.tolist())) == 3
    # warm-up per task (tasks: dataset) -> p_k = normalised mean of task k; pseudo-tasks -> k-means
    protos = TaskPrototypes(3, 8)
    protos.observe(points, torch.arange(3).repeat_interleave(20))
    protos.initialise()
    for k in range(3):
        torch.testing.assert_close(protos.prototypes[k], F.normalize(points[20 * k:20 * (k + 1)].mean(0), dim=0))
    pseudo = TaskPrototypes(3, 8, kmeans=True)
    pseudo.observe(points, torch.zeros(60, dtype=torch.long))
    pseudo.initialise(torch.Generator().manual_seed(1))
    assert pseudo.ready.all() and len(set(pseudo.assign(points).tolist())) == 3
    assert parse_tasks("kmeans:4", 1) == (4, True) and parse_tasks("dataset", 3) == (3, False)
    with pytest.raises(ValueError, match="kmeans"):
        parse_tasks("kmeans:x", 1)


# ---------------------------------------------------------------- contrastive levels and weights


def test_infonce_on_known_inputs():
    z = torch.eye(4)[None]  # 4 orthonormal positions
    assert float(pixel_loss(z, z, tau=0.01)) < 1e-6, "identical views, tau -> 0: loss -> 0"
    # uniform similarities: the loss is log N
    flat = F.normalize(torch.ones(1, 5, 3), dim=-1)
    assert float(pixel_loss(flat, flat, tau=0.07)) == pytest.approx(math.log(5), abs=1e-5)
    z1, z2 = F.normalize(torch.randn(2, 6, 4), dim=-1), F.normalize(torch.randn(2, 6, 4), dim=-1)
    torch.testing.assert_close(symmetric_infonce(z1, z2, 0.1), symmetric_infonce(z2, z1, 0.1))
    # two positions with cosine c between the non-matching ones: -log(e^{1/t} / (e^{1/t} + e^{c/t}))
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + math.exp(0.0)))
    assert float(pixel_loss(a, a, tau=0.5)) == pytest.approx(expected, rel=1e-5)
    positions = torch.tensor([[0, 2]])
    assert float(pixel_loss(torch.eye(3)[None], torch.eye(3)[None], 0.5, positions)) == pytest.approx(expected)
    assert float(block_loss(a[0], a[0], 0.5)) == pytest.approx(expected, rel=1e-5)
    # global: one direction plus lambda_spectral * ||g1 - g2||^2
    g2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    got = global_loss(a[0], g2, tau=0.5, lambda_spectral=0.1)
    assert float(got) == pytest.approx(-math.log(1 / (1 + math.exp(2))) + 0.1 * 2.0, rel=1e-5)


def test_block_pooling_starts_as_a_mean():
    heads = ContrastHeads(3, 5)
    f = torch.randn(2, 16, 3)  # 4 x 4 grid, blocks of 2 x 2
    blocks = heads.block(f, 4, 4, 2)
    assert blocks.shape == (8, 5)
    grid = f.view(2, 2, 2, 2, 2, 3).permute(0, 1, 3, 2, 4, 5).reshape(8, 4, 3)
    torch.testing.assert_close(blocks, heads.embed(grid.mean(1)))


def test_granularity_weights():
    weights = GranularityWeights(tau_w=0.5, decay=0.9)
    first = weights.update({"pixel": torch.tensor(2.0), "block": torch.tensor(1.0), "global": torch.tensor(0.0)})
    torch.testing.assert_close(first, torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / 0.5, 0))
    second = weights.update({"pixel": torch.tensor(0.0), "block": torch.tensor(0.0), "global": torch.tensor(0.0)})
    torch.testing.assert_close(second, 0.9 * first + 0.1 * torch.full((3,), 1 / 3))
    assert float(second.sum()) == pytest.approx(1.0) and not second.requires_grad
    on_mi = GranularityWeights(tau_w=0.5, decay=0.9, ema="mi")
    on_mi.update({"pixel": torch.tensor(2.0), "block": torch.tensor(1.0), "global": torch.tensor(0.0)})
    got = on_mi.update({"pixel": torch.tensor(0.0), "block": torch.tensor(0.0), "global": torch.tensor(0.0)})
    torch.testing.assert_close(got, torch.softmax(torch.tensor([1.8, 0.9, 0.0]) / 0.5, 0))
    two = GranularityWeights(levels=["pixel", "global"])
    got = two.update({"pixel": torch.tensor(1.0), "global": torch.tensor(1.0)})
    torch.testing.assert_close(got, torch.tensor([0.5, 0.0, 0.5]))
    torch.testing.assert_close(GranularityWeights(mode="uniform").update({}), torch.full((3,), 1 / 3))
    torch.testing.assert_close(GranularityWeights(mode=[1.0, 0.5, 0.0]).current(), torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="levels"):
        GranularityWeights(levels=["patch"])


# ---------------------------------------------------------------- network and module


def test_cross_scan_and_merge_are_inverse_up_to_the_four_directions():
    x = torch.randn(2, 3, 4, 5)
    merged = SS2D.cross_merge(SS2D(3, d_state=2).cross_scan(x), 4, 5)
    torch.testing.assert_close(merged, 4 * x.flatten(2))


def test_ss2d_reference_and_chunked_scans_agree():
    torch.manual_seed(0)
    block = SS2D(8, d_state=4, scan_impl="chunked", scan_chunk=8)
    x = torch.randn(2, 6, 5, 8)
    chunked = block(x)
    block.scan["impl"] = "ref"
    torch.testing.assert_close(block(x), chunked, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(37, 53), (5, 7), (32, 32)])
def test_fuse_keeps_odd_and_tiny_sizes(size):
    torch.manual_seed(0)
    module = _smoke().eval()
    gray, colour = torch.rand(1, 1, *size), torch.rand(1, 3, *size)
    with torch.no_grad():
        out_gray = module.fuse(gray, gray.flip(-1))
        out_rgb = module.fuse(gray, colour)
    assert out_gray.shape == (1, 1, *size) and out_rgb.shape == (1, 3, *size)
    assert 0 <= float(out_rgb.min()) and float(out_rgb.max()) <= 1
    with pytest.raises(ValueError, match="x1 and x2"):
        module.net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def test_bad_configs_are_clear_errors():
    with pytest.raises(ValueError, match="block_tokens"):
        CMDCTANet(embed_dim=8, mamba_depth=1, swin_depth=1, heads=2, window=8, block_tokens=3)
    with pytest.raises(ValueError, match="decomposition"):
        _smoke(decomposition="gram")
    with pytest.raises(ValueError, match="tasks"):
        _smoke(tasks="clusters")
    with pytest.raises(ValueError, match="schedule"):
        _smoke(schedule="step")


SWITCHES = {
    "full": {},
    "no_mamba": {"use_mamba": False},
    "no_swin": {"use_swin": False},
    "no_encoder_branches": {"use_mamba": False, "use_swin": False},
    "no_gnn": {"use_gnn": False},
    "no_orthogonality": {"use_orthogonality": False},
    "exact": {"decomposition": "exact", "proj_dim": 32},
    "normalised_ortho": {"ortho_normalize": True},  # ablation: channel-normalised mean (default: Eq. 4's sum)
    "no_contrast": {"contrast_levels": []},
    "pixel_only": {"contrast_levels": ["pixel"], "pixel_samples": None},
    "no_prototypes": {"use_prototypes": False},
    "token_alpha": {"aggregation": "token"},  # ablation: alpha per token (default: per block, as the paper)
    "pseudo_tasks": {"tasks": "kmeans:2"},
    "uniform_weights": {"granularity_weights": "uniform", "granularity_ema": "mi", "proto_noise": "none",
                        "global_symmetric": True},
    "chunked_scan": {"scan_impl": "chunked"},
    "parallel_chunked_scan": {"scan_impl": "chunked", "scan_intra": "parallel", "scan_chunk": 4},
    "table3_none": {"use_mamba": False, "use_swin": False, "use_gnn": False, "use_orthogonality": False,
                    "contrast_levels": [], "use_prototypes": False},
}


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_every_switch_builds_and_trains_a_step(name):
    torch.manual_seed(0)
    module = _smoke(proto_warmup_steps=1, **SWITCHES[name])
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    batch = {"ir": torch.rand(4, 1, 32, 32), "vis": torch.rand(4, 3, 32, 32)}
    before = [p.detach().clone() for p in module.net.decoder.parameters()]
    for _ in range(2):  # step 1 ends the warm-up, step 2 updates the prototypes and aligns
        losses = module.compute_losses(batch, training=True)
        assert torch.isfinite(losses["loss"]), losses
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, module.net.decoder.parameters()))
    switches = SWITCHES[name]
    assert ("loss_orth" in losses) == switches.get("use_orthogonality", True)
    assert ("loss_align" in losses) == switches.get("use_prototypes", True)
    assert ("loss_contrast" in losses) == bool(switches.get("contrast_levels", True))
    if "loss_align" in losses:
        assert module.prototypes.initialised
    if name == "full":
        assert float(losses["loss_align"].detach()) == 0.0, "one task (K = 1): L_align is identically zero"
        assert float(losses["w_pixel"] + losses["w_block"] + losses["w_global"]) == pytest.approx(1.0)


def test_three_tasks_make_the_alignment_active():
    torch.manual_seed(0)
    module = _smoke(proto_warmup_steps=1, num_tasks=3)
    batch = {"ir": torch.rand(6, 1, 32, 32), "vis": torch.rand(6, 3, 32, 32), TASK_ID: torch.tensor([0, 0, 1, 1, 2, 2])}
    assert float(module.compute_losses(batch, training=True)["loss_align"].detach()) == 0.0, "warm-up: no alignment"
    assert module.prototypes.ready.all()
    losses = module.compute_losses(batch, training=True)
    assert float(losses["loss_align"].detach()) > 0 and losses["loss_align"].requires_grad
    with pytest.raises(ValueError, match="task ids"):
        module.compute_losses({**batch, TASK_ID: torch.tensor([0, 0, 1, 1, 2, 5])}, training=True)


def test_optimiser_is_adamw_without_weight_decay_on_a_log_and_d():
    module = _smoke(schedule="constant", weight_decay=0.05)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in module.named_parameters()}
    assert sorted(names[id(p)].rsplit(".", 1)[1] for p in no_decay["params"]) == ["A_logs", "Ds"]
    assert len(decay["params"]) + 2 == len(names)


def test_row_records_the_scan_backend():
    torch.manual_seed(0)
    batch = {"ir": torch.rand(2, 1, 32, 32), "vis": torch.rand(2, 3, 32, 32)}
    module = _smoke(scan_impl="chunked")
    assert module.row_columns() == {"scan_backend": ""}  # no scan yet
    module.compute_losses(batch, training=True)
    assert module.row_columns() == {"scan_backend": "chunked"}
    loop = _smoke(scan_impl="ref")
    loop.compute_losses(batch, training=True)
    assert loop.row_columns() == {"scan_backend": "loop"}
    plain = _smoke(use_mamba=False)
    plain.compute_losses(batch, training=True)
    assert plain.row_columns() == {"scan_backend": ""}


def test_paper_defaults_of_point_4():
    from fusion_bench.base.method import load_method_config
    from fusion_bench.methods.cmd_cta.module import CMDCTAFusion

    for preset in ("smoke", "paper"):
        model = load_method_config(CMDCTAFusion, "cmd_cta", preset, None)["model"]
        assert model["ortho_normalize"] is False and model["aggregation"] == "block", preset


def test_broken_mamba_ssm_warns_once(monkeypatch, caplog):
    import importlib
    import importlib.util
    import sys

    ss = importlib.import_module("fusion_bench.ops.selective_scan")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "mamba_ssm" else real(name, *a))
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # installed, but `import mamba_ssm` raises ImportError
    ss.mamba_import_error.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="fusion_bench.ops.selective_scan"):
            assert ss.mamba_import_error() is not None and ss.mamba_import_error() is not None
            assert not ss.mamba_available()
        warnings = [r for r in caplog.records if "mamba-ssm is installed but does not import" in r.getMessage()]
        assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    finally:
        ss.mamba_import_error.cache_clear()
