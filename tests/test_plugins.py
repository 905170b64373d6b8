"""Plug-ins: methods and datasets from installed packages (entry points) and from `package.module:Class` paths.

The "installed package" is a folder on sys.path with the package and its `*.dist-info` (METADATA and
entry_points.txt), which is what `pip install` leaves in site-packages; importlib.metadata finds it the same way.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.spec import BenchSpec

PLUGIN_METHOD = '''
from fusion_bench.base import FusionMethod
from fusion_bench.base.colour import fuse_on_luminance


class WeightedMean(FusionMethod):
    """weight * x1 + (1 - weight) * x2 on the luminance (training-free)."""

    trainable = False

    def __init__(self, weight: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= weight <= 1:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        self.weight = weight

    def fuse(self, x1, x2):
        return fuse_on_luminance(x1, x2, lambda y1, y2: self.weight * y1 + (1 - self.weight) * y2)
'''


def install_plugin(site: Path, entry_points: str, name: str = "my-fusion-plugin") -> Path:
    """A package `my_fusion_plugin` (WeightedMean + its config.yaml) and its dist-info in `site`."""
    package = site / "my_fusion_plugin"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "methods.py").write_text(PLUGIN_METHOD)
    (package / "config.yaml").write_text("weighted_mean:\n  smoke: {model: {weight: 0.25}}\n"
                                         "  paper: {model: {weight: 0.25}}\n")
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return site


@pytest.fixture
def plugin_site(tmp_path, monkeypatch) -> Path:
    site = install_plugin(tmp_path / "site", """
        [fusion_bench.methods]
        weighted_mean = my_fusion_plugin.methods:WeightedMean
        [fusion_bench.datasets]
        toy_plugin = toy_dataset:ToyDataModule
        """)
    monkeypatch.syspath_prepend(str(site))
    return site


def _bench(cli, capsys, tmp_path, *extra):
    return cli(capsys, "bench", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress",
               "--downstream", "none", *extra)


def test_an_installed_plugin_is_listed_and_benched(cli, capsys, tmp_path, plugin_site):
    code, out, err = cli(capsys, "list")
    assert code == 0, err
    assert "weighted_mean" in out.splitlines()[0] and "toy_plugin" in out.splitlines()[1]
    assert "plug-in method weighted_mean: my_fusion_plugin.methods:WeightedMean (package my-fusion-plugin)" in out
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "weighted_mean,mean", "--dataset", "synthetic-ivif")
    assert code == 0, err
    rows = {r["method"]: r for r in read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")}
    assert set(rows) == {"weighted_mean", "mean"}
    assert float(rows["weighted_mean"]["EN"]) != float(rows["mean"]["EN"]), "weight 0.25 from its config.yaml"
    prep = prepare(BenchSpec(method="weighted_mean", dataset="synthetic-ivif", downstream="none",
                             out=tmp_path / "runs"))
    assert prep.config["model"] == {"weight": 0.25} and prep.run_dir(0).parent.is_dir()


def test_an_installed_dataset_plugin(cli, capsys, tmp_path, plugin_site):
    from toy_dataset import make_toy

    root = make_toy(tmp_path / "toy")
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--dataset", "toy_plugin", "--root", root)
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "toy_plugin.csv")
    assert row["dataset"] == "toy_plugin" and row["n_images"] == "3" and row["metric_dialect"] == "mmif"


def test_a_plugin_named_like_a_builtin_is_an_error_naming_both(cli, capsys, tmp_path, monkeypatch):
    site = install_plugin(tmp_path / "site", """
        [fusion_bench.methods]
        mean = my_fusion_plugin.methods:WeightedMean
        """, name="clashing-plugin")
    monkeypatch.syspath_prepend(str(site))
    code, _, err = cli(capsys, "list")
    assert code == 2
    assert "package clashing-plugin registers the method 'mean' (my_fusion_plugin.methods:WeightedMean" in err
    assert "built-in method 'mean' (fusion_bench.methods.baselines.model:MeanFusion)" in err


def test_a_module_class_path_runs_through_bench(cli, capsys, tmp_path, monkeypatch):
    site = install_plugin(tmp_path / "site", "")  # importable, but no entry point
    monkeypatch.syspath_prepend(str(site))
    method = "my_fusion_plugin.methods:WeightedMean"  # its config.yaml's only section is used
    code, _, err = _bench(cli, capsys, tmp_path, "--method", method, "--dataset", "synthetic-ivif",
                          "--set", "model.weight=1.0")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert row["method"] == method and row["overrides"] == '{"model.weight":1.0}'
    assert list((tmp_path / "runs").iterdir()) == [tmp_path / "runs" / "my_fusion_plugin.methods-WeightedMean"]
    # a module without config.yaml takes its preset from --config
    (site / "bare_plugin.py").write_text(PLUGIN_METHOD)
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "bare_plugin:WeightedMean", "--dataset",
                          "synthetic-ivif")
    assert code == 2 and "config.yaml is missing" in err and "--config" in err
    preset = tmp_path / "preset.yaml"
    preset.write_text("model: {weight: 0.0}\n")
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "bare_plugin:WeightedMean", "--dataset",
                          "synthetic-ivif", "--config", preset)
    assert code == 0, err
    rows = {r["method"]: r for r in read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")}
    assert float(rows["bare_plugin:WeightedMean"]["EN"]) != float(rows[method]["EN"])


@pytest.mark.parametrize("method, needle", [
    ("no_such_module_xyz:Fusion", "cannot import module 'no_such_module_xyz'"),
    ("json:dumps", "is <function dumps"),
    ("json:NoSuchThing", "has no attribute 'NoSuchThing'"),
    ("not a path", "unknown method 'not a path'; valid methods: agm, amdanet"),
])
def test_bad_method_paths(cli, capsys, tmp_path, method, needle):
    code, _, err = _bench(cli, capsys, tmp_path, "--method", method, "--dataset", "synthetic-ivif")
    assert code == 2 and needle in err, err


def test_module_constants_imported_during_the_meta_check_are_real_tensors(tmp_path, monkeypatch):
    """The runner first builds a method on the meta device; a module the constructor imports lazily (a plug-in's,
    or SSVIF's backbones importing SeAFusion's Sobel kernel) would keep meta tensors as module constants."""
    import torch

    from fusion_bench.base import FusionMethod
    from fusion_bench.benchmark.build import check_method

    (tmp_path / "lazy_kernel_xyz.py").write_text("import torch\nKERNEL = torch.tensor([1.0, 2.0, 3.0])\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Lazy(FusionMethod):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            from lazy_kernel_xyz import KERNEL

            self.weight = torch.nn.Parameter(torch.zeros(3))
            with torch.no_grad():
                self.weight.copy_(KERNEL)

    check_method(Lazy, BenchSpec(method="lazy", dataset="synthetic-ivif"), {})
    assert Lazy().weight.tolist() == [1.0, 2.0, 3.0]
