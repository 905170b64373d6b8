"""Every registered method runs through the CLI on CPU (smoke preset); baselines do what they say."""

from __future__ import annotations

import pytest
import torch

from fusion_bench.base.colour import fuse_on_luminance, rgb_to_ycbcr, ycbcr_to_rgb
from fusion_bench.benchmark.results import read_rows
from fusion_bench.methods.baselines.model import (
    LaplacianPyramidFusion,
    MaxFusion,
    MeanFusion,
    SourceA,
    SourceB,
    laplacian_pyramid,
    reconstruct,
)
from fusion_bench.registry import METHODS, get_method
from fusion_bench.types import Task


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_benches_on_cpu(method, cli, capsys, tmp_path):
    dataset = "synthetic-av" if Task.CLASSIFICATION in get_method(method).tasks else "synthetic-ivif"
    code, _, err = cli(capsys, "bench", "--method", method, "--dataset", dataset, "--device", "cpu",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / f"{dataset}.csv")
    assert row["method"] == method and row["device"].startswith("cpu")


def test_mean_max_and_pass_through():
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    assert torch.allclose(MeanFusion().fuse(a, b), (a + b) / 2)
    assert torch.equal(MaxFusion().fuse(a, b), torch.maximum(a, b))
    vis = torch.rand(2, 3, 8, 8)
    assert torch.equal(SourceA().fuse(a, vis), a)
    assert torch.equal(SourceB().fuse(a, vis), vis)


def test_luminance_fusion_keeps_visible_colour():
    vis = torch.rand(1, 3, 16, 16)
    y = rgb_to_ycbcr(vis)[:, :1]
    fused = fuse_on_luminance(y, vis, lambda y1, y2: y2)  # fusing Y with itself must return the colour image
    assert torch.allclose(fused, vis, atol=1e-5)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(vis)), vis, atol=1e-5)


def test_laplacian_pyramid_is_exact_and_fusion_prefers_detail():
    x = torch.rand(1, 1, 37, 53)
    assert torch.allclose(reconstruct(laplacian_pyramid(x, 4)), x, atol=1e-5)
    flat = torch.full((1, 1, 32, 32), 0.5)
    textured = 0.5 + 0.2 * torch.sign(torch.randn(1, 1, 32, 32))
    fused = LaplacianPyramidFusion(levels=3).fuse(flat, textured)
    assert fused.std() > 0.8 * textured.std(), "max-abs detail selection keeps the texture of the detailed source"


def test_fusion_cnn_starts_as_mean_and_learns():
    from fusion_bench.methods.fusion_cnn.module import FusionCNNModule

    torch.manual_seed(0)
    module = FusionCNNModule(lr=3e-3)
    a, b = torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)
    assert torch.allclose(module.net(a, b), ((a + b) / 2).clamp(1e-3, 1 - 1e-3), atol=1e-5)
    optimiser = module.configure_optimizers()
    batch = {"ir": a, "vis": b}
    first = module.criterion(module.net(a, b), a, b)["loss"].item()
    for _ in range(30):
        loss = module.criterion(module.net(a, b), a, b)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert module.criterion(module.net(a, b), a, b)["loss"].item() < first
    assert module.inputs(batch)[0] is a
