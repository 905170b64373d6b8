"""Issue #29, configuration as LightningCLI users expect it: overrides checked against types before any work,
`bench --print-config`, `config.yaml` in every run directory (the config hash is the hash of its text), evaluator
overrides (`--set seg.*`, `det.*`), the Trainer pass-through (gradient clipping, accumulation, user callbacks by class
path), `grid --sweep`, plug-in config sections found by entry-point or class name, and a command line whose help,
listing and usage errors load no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from fusion_bench.benchmark.protocol import hash_of_text
from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.errors import BenchError

REPO = Path(__file__).resolve().parents[1]


def _bench(cli, capsys, tmp_path, *extra):
    return cli(capsys, "bench", "--dataset", "synthetic-ivif", "--out", tmp_path / "runs", "--leaderboard-dir",
               tmp_path / "lb", "--no-progress", "--no-report", *extra)


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


# ------------------------------------------------------------------------------------------------ types before work


@pytest.mark.parametrize("method, override, needles", [
    ("laplacian", "model.levels=four", ("model.levels=four", "expected an integer", "got a string")),
    ("fusion_cnn", "train.precision=65-true", ("train.precision", "65-true", "expected one of")),
    ("fusion_cnn", "train.accumulate_grad_batches=0", ("train.accumulate_grad_batches", ">= 1")),
    ("fusion_cnn", "train.gradient_clip_val=fast", ("train.gradient_clip_val=fast", "expected a number")),
    ("fusion_cnn", "train.gradient_clip_val=-1", ("train.gradient_clip_val", ">= 0")),
])
def test_a_value_of_the_wrong_type_is_exit_2_before_any_work(cli, capsys, tmp_path, method, override, needles):
    code, _, err = _bench(cli, capsys, tmp_path, "--method", method, "--downstream", "none", "--set", override)
    _one_line_error(code, err, *needles)
    assert not (tmp_path / "runs").exists(), "nothing is written (no seed0.partial left behind)"


def test_precision_64_true_runs_a_training_free_method(cli, capsys, tmp_path):
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "laplacian", "--downstream", "none",
                          "--set", "train.precision=64-true")
    assert code == 0, err
    assert not list((tmp_path / "runs").rglob("*.partial"))


# ------------------------------------------------------------------------------------------------ print / save config


def _printed(out: str) -> tuple[str, str]:
    """(the hash of the header comment, the YAML text after it) of a one-run `--print-config`."""
    header, _, text = out.partition("\n")
    assert header.startswith("# ") and "config hash " in header, out
    return header.rsplit(" ", 1)[1], text


def test_print_config_is_the_resolved_config_and_the_run_directory_keeps_it(cli, capsys, tmp_path):
    args = ("--method", "laplacian", "--downstream", "none", "--set", "model.levels=3")
    code, out, err = _bench(cli, capsys, tmp_path, *args, "--print-config")
    assert code == 0, err
    digest, text = _printed(out)
    config = yaml.safe_load(text)
    assert config["config"]["model"]["levels"] == 3 and config["overrides"] == {"model.levels": 3}
    assert config["method"] == "laplacian" and config["preset"] == "smoke" and "protocol" in config
    assert hash_of_text(text) == digest, "the config hash is the hash of exactly that text"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists(), "--print-config runs nothing"
    code, _, err = _bench(cli, capsys, tmp_path, *args)
    assert code == 0, err
    (saved,) = (tmp_path / "runs").rglob("config.yaml")
    assert saved.read_text() == text
    assert saved.parent.parent.parent.name == digest == hash_of_text(saved.read_text())
    # another value is another text, hence another hash and run directory
    code, out, _ = _bench(cli, capsys, tmp_path, "--method", "laplacian", "--downstream", "none",
                          "--set", "model.levels=2", "--print-config")
    assert code == 0 and _printed(out)[0] != digest


def test_print_config_of_several_runs_is_one_yaml_document_each(cli, capsys, tmp_path):
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "mean,max", "--downstream", "none",
                            "--print-config")
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    assert sorted(d["method"] for d in docs) == ["max", "mean"]


# ------------------------------------------------------------------------------------------------ evaluators


def test_evaluators_are_configurable_with_set(cli, capsys, tmp_path):
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--downstream", "seg,det",
                            "--set", "seg.epochs=2", "seg.pretrained=null", "det.epochs=1", "--print-config")
    assert code == 0, err
    config = yaml.safe_load(_printed(out)[1])
    assert config["downstream"]["seg"]["epochs"] == 2 and config["downstream"]["det"]["epochs"] == 1
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--downstream", "seg",
                          "--set", "seg.epochs=many")
    _one_line_error(code, err, "seg.epochs=many", "expected an integer")
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--downstream", "seg", "--set", "seg.epoch=2")
    _one_line_error(code, err, "seg.epoch", "valid seg keys")


# ------------------------------------------------------------------------------------------------ Trainer pass-through


def _spec(tmp_path: Path, **overrides) -> BenchSpec:
    base = {"train.max_steps": 2, "train.batch_size": 2, "train.crop_size": 32}
    return BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", downstream="none", out=tmp_path / "runs",
                     leaderboard_dir=None, device="cpu", progress=False, overrides={**base, **overrides})


def test_trainer_pass_through_reaches_the_trainer(tmp_path):
    from fusion_bench.benchmark.trainer_settings import trainer_kwargs, user_callbacks

    prep = prepare(_spec(tmp_path, **{"train.gradient_clip_val": 0.5, "train.accumulate_grad_batches": 2,
                                      "train.callbacks": [{"class_path": "lightning.pytorch.callbacks.Timer",
                                                           "init_args": {"duration": "00:00:10:00"}}]}))
    kwargs = trainer_kwargs(prep, has_val=False)
    assert kwargs["gradient_clip_val"] == 0.5 and kwargs["accumulate_grad_batches"] == 2
    (timer,) = user_callbacks(prep.config["train"], "fusion_cnn")
    assert type(timer).__name__ == "Timer" and timer._duration == 600
    assert "gradient_clip_val: 0.5" in prep.config_text


def test_a_user_callback_runs_in_the_fit(cli, capsys, tmp_path):
    ckpt = tmp_path / "user-ckpt"
    callbacks = json.dumps([{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                             "init_args": {"dirpath": str(ckpt), "filename": "user-{step}", "save_top_k": -1,
                                           "every_n_train_steps": 1}}])
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "fusion_cnn", "--downstream", "none", "--set",
                          "train.max_steps=2", "train.batch_size=2", "train.crop_size=32",
                          "train.accumulate_grad_batches=2", "train.gradient_clip_val=0.1",
                          f"train.callbacks={callbacks}")
    assert code == 0, err
    assert sorted(p.name for p in ckpt.iterdir()) == ["user-step=1.ckpt", "user-step=2.ckpt"]


def test_user_callbacks_come_from_installed_packages_only(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    (tmp_path / "evil_callbacks.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")
        from lightning.pytorch.callbacks import Callback
        class Evil(Callback):
            pass
        """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for entry, needle in (
        ({"class_path": "evil_callbacks.Evil"}, "not an installed package"),
        ({"class_path": "json.JSONDecoder"}, "not an installed package"),
        ({"class_path": "lightning.pytorch.callbacks.NoSuch"}, "cannot be imported"),
        ({"class_path": "lightning.pytorch.LightningModule"}, "not a Lightning Callback"),
        ({"class_path": "lightning.pytorch.callbacks.Timer", "init_args": {"nope": 1}}, "Timer("),
        ({"class_path": "lightning.pytorch.callbacks.Timer", "args": {}}, "expected {class_path"),
        ({"class_path": "not a path"}, "expected package.module.Class"),
    ):
        with pytest.raises(BenchError, match="train.callbacks") as info:
            prepare(_spec(tmp_path, **{"train.callbacks": [entry]}))
        assert needle in str(info.value), (entry, str(info.value))
    assert not marker.exists(), "no code of the user's files ran"


# ------------------------------------------------------------------------------------------------ grid --sweep


def test_grid_sweep_is_the_cartesian_product_one_entry_each(cli, capsys, tmp_path):
    code, out, err = cli(capsys, "grid", "--methods", "laplacian", "--datasets", "synthetic-ivif", "--seeds", "0",
                         "--downstream", "none", "--sweep", "model.levels=2,3", "--sweep", "optim.lr=0.1,0.2",
                         "--launcher", "commands", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("fusion-bench bench")]
    points = sorted(line.split("--set ")[1] for line in lines)
    assert points == ["model.levels=2 optim.lr=0.1", "model.levels=2 optim.lr=0.2", "model.levels=3 optim.lr=0.1",
                      "model.levels=3 optim.lr=0.2"]
    from fusion_bench.benchmark.grid import plan_grid

    plan = plan_grid(["laplacian"], ["synthetic-ivif"], [0],
                     BenchSpec(method="", dataset="", downstream="none", out=tmp_path / "runs",
                               leaderboard_dir=tmp_path / "lb"), sweep={"model.levels": [2, 3]})
    assert len({job.run_dir.parent.parent for job in plan.jobs}) == 2, "each point has its own config hash"
    assert len({job.label for job in plan.jobs}) == 2


@pytest.mark.parametrize("sweep, needle", [
    ("model.levels=", "no empty value"),
    ("levels=2,3", "SECTION.KEY"),
    ("model.levels=2,2", "listed twice"),
    ("model.nope=1,2", "unknown key 'nope'"),
    ("model.levels=two,3", "expected an integer"),
])
def test_bad_sweeps_are_exit_2(cli, capsys, tmp_path, sweep, needle):
    code, _, err = cli(capsys, "grid", "--methods", "laplacian", "--datasets", "synthetic-ivif", "--downstream",
                       "none", "--sweep", sweep, "--launcher", "commands", "--out", tmp_path / "runs")
    _one_line_error(code, err, needle)


# ------------------------------------------------------------------------------------------------ plug-in sections


def test_a_plugin_config_section_is_found_by_entry_point_or_class_name(tmp_path, monkeypatch):
    from test_plugins import install_plugin

    site = install_plugin(tmp_path / "site", """
        [fusion_bench.methods]
        wmean = my_fusion_plugin.methods:WeightedMean
        """, name="wmean-plugin")
    (site / "my_fusion_plugin" / "config.yaml").write_text(
        "WeightedMean:\n  smoke: {model: {weight: 0.25}}\nOther:\n  smoke: {model: {}}\n")
    monkeypatch.syspath_prepend(str(site))
    for name in ("wmean", "my_fusion_plugin.methods:WeightedMean"):
        prep = prepare(BenchSpec(method=name, dataset="synthetic-ivif", downstream="none", out=tmp_path / "runs"))
        assert prep.config["model"] == {"weight": 0.25}, name


# ------------------------------------------------------------------------------------------------ no torch


def test_help_list_and_usage_errors_load_no_torch(tmp_path):
    script = textwrap.dedent("""
        import contextlib, io, json, sys
        from fusion_bench.cli import main
        codes = []
        for argv in (["--help"], ["bench", "--help"], ["list"], ["bench", "--method", "mean"],
                     ["bench", "--method", "nope", "--dataset", "synthetic-ivif"],
                     ["bench", "--method", "mean", "--dataset", "nope"],
                     ["bench", "--method", "mean", "--dataset", "synthetic-ivif", "--seeds", "x"],
                     ["grid", "--launcher", "local"], ["grid", "--methods", "nope", "--datasets", "synthetic-ivif",
                     "--launcher", "commands"], ["bench", "--method", "mean", "--dataset", "tno", "--set", "x"]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                codes.append(main(argv))
        print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**_env(), "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 2, 2, 2, 2, 2, 2, 2], "torch": False}


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


# ------------------------------------------------------------------------------------------------ one label per entry


def test_one_label_per_entry_in_every_format(tmp_path):
    from fusion_bench.benchmark.leaderboard import regenerate
    from fusion_bench.benchmark.results import append_rows, read_rows
    from fusion_bench.report.formats import format_leaderboard, latex_escape

    base = {"dataset": "d", "task": "ivif", "preset": "smoke", "metric_dialect": "mmif", "split_hash": "s",
            "timestamp": "t"}
    append_rows(tmp_path / "raw" / "d.csv", [
        {**base, "method": "sal_avg", "config_hash": "aaa111", "overrides": "", "seed": "0", "EN": "6.0"},
        {**base, "method": "sal_avg", "config_hash": "bbb222", "overrides": '{"model.ksize":11}', "seed": "0",
         "EN": "6.5"},
        {**base, "method": "sal_avg", "config_hash": "ccc333", "overrides": "", "seed": "0", "EN": "6.7"}])
    regenerate(tmp_path)
    labels = [r["label"] for r in read_rows(tmp_path / "d.csv")]
    assert sorted(labels) == ["sal_avg #aaa111", "sal_avg #ccc333", "sal_avg [model.ksize=11]"]
    latex = format_leaderboard(tmp_path, "latex", "d")
    html = format_leaderboard(tmp_path, "html", "d")
    markdown = format_leaderboard(tmp_path, "md", "d")
    for label in labels:
        assert f"| {label} |" in markdown and latex_escape(label) in latex and label in html, label


# ------------------------------------------------------------------------------------------------ Python API names


def test_python_api_takes_the_command_line_names_and_lists(tmp_path):
    import inspect

    from fusion_bench import build_report, run_bench
    from fusion_bench.benchmark.runner import expand_spec

    specs = expand_spec(BenchSpec(method="mean,source_a", dataset=["synthetic-ivif"], downstream="none"))
    assert [s.method for s in specs] == ["source_a", "mean"], "baselines first, as `bench --method mean,source_a`"
    with pytest.raises(BenchError, match="names nothing"):
        expand_spec(BenchSpec(method=" , ", dataset="synthetic-ivif"))
    rows = run_bench(BenchSpec(method="mean,max", dataset="synthetic-ivif", downstream="none", out=tmp_path / "runs",
                               leaderboard_dir=tmp_path / "lb", progress=False))
    assert sorted(r["method"] for r in rows) == ["max", "mean"]
    assert "runs" in inspect.signature(build_report).parameters  # `fusion-bench report --runs`
    report = build_report("synthetic-ivif", methods="mean,max", runs=tmp_path / "runs",
                          leaderboard_dir=tmp_path / "lb", out=tmp_path / "report", n_images=1)
    assert sorted(report.entries) == ["max", "mean"]


# ------------------------------------------------------------------------------------------------ GFLOPs


def test_training_free_methods_count_their_elementwise_arithmetic():
    import torch

    from fusion_bench.benchmark.profiling import count_gflops, profile_fusion
    from fusion_bench.registry import get_method

    laplacian = profile_fusion(get_method("laplacian")(modalities=("ir", "vis")), (1, 3), 64, 64)["gflops"]
    mean = profile_fusion(get_method("mean")(modalities=("ir", "vis")), (1, 3), 64, 64)["gflops"]
    copy = profile_fusion(get_method("source_a")(modalities=("ir", "vis")), (1, 3), 64, 64)["gflops"]
    assert laplacian > mean > 0 and copy == 0, (laplacian, mean, copy)
    x = torch.ones(2, 8)
    assert count_gflops(lambda: x * 2 + x, elementwise=True) * 1e9 == 32
    assert count_gflops(lambda: x * 2 + x) == 0, "learned methods: the matmul/convolution count as before"


def test_rows_of_training_free_methods_count_their_arithmetic(cli, capsys, tmp_path):
    """The leaderboard's gflops column is the same count as `fusion-bench profile`: a training-free rule's row is
    not 0 (a copy of one source is)."""
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "laplacian,mean,source_a", "--downstream", "none")
    assert code == 0, err
    import pandas as pd

    gflops = pd.read_csv(tmp_path / "lb" / "raw" / "synthetic-ivif.csv").set_index("method")["gflops"]
    assert gflops["laplacian"] > gflops["mean"] > 0 and gflops["source_a"] == 0, gflops.to_dict()


# ------------------------------------------------------------------------------------------------ report figures


@pytest.fixture
def captured(monkeypatch):
    """The figures the report functions draw, kept open instead of saved."""
    from fusion_bench.report import figures

    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path, tight_box=False: kept.append(fig) or path)
    return kept


def test_bars_sorted_best_first_on_an_axis_that_shows_the_differences(captured, tmp_path):
    import pandas as pd

    from fusion_bench.report import figures

    means = pd.DataFrame({"SSIM": [1.50, 1.52, 1.51], "MSE": [10.0, 12.0, 11.0]}, index=["a", "b", "c"])
    stds = pd.DataFrame({"SSIM": [0.001, float("nan"), 0.002], "MSE": [0.1, 0.1, 0.1]}, index=means.index)
    figures.bar_charts(means, stds, {"SSIM": True, "MSE": False}, tmp_path / "bars.png",
                       notes={"SSIM": "SSIM(F,A)+SSIM(F,B): up to 2"})
    ssim, mse = captured[0].axes[:2]
    assert [t.get_text() for t in ssim.get_xticklabels()] == ["b", "c", "a"]
    assert [t.get_text() for t in mse.get_xticklabels()] == ["a", "c", "b"], "lower is better: smallest first"
    low, high = ssim.get_ylim()
    assert 1.45 < low < 1.5 and 1.52 < high < 1.6, "the axis spans the values, not 0..max"
    assert "up to 2" in ssim.get_title()


def test_the_efficiency_plot_names_every_entry_it_cannot_place(captured, tmp_path):
    import pandas as pd

    from fusion_bench.report import figures

    x = pd.Series({"a": 0.5, "b": 2.0, "c": float("nan")}, name="gflops")
    y = pd.Series({"a": 0.4, "b": float("nan"), "c": 0.7}, name="seg_miou")
    figures.efficiency_scatter(x, y, y * 0, "gflops", "seg_miou", tmp_path / "eff.png")
    title = captured[0].axes[0].get_title(loc="left")
    assert "b (seg_miou)" in title and "c (gflops)" in title


def test_loss_curves_on_separate_panels_with_a_log_axis(captured, tmp_path):
    import pandas as pd

    from fusion_bench.report import figures

    log = pd.DataFrame({"step": [1, 2, 3, 4], "train/loss": [100.0, 10.0, 1.0, 0.5],
                        "train/loss_int": [1.0, 0.9, 0.8, 0.7], "val/loss": [float("nan"), 5.0, float("nan"), 0.6]})
    figures.training_curves({"fusion_cnn": {0: log}}, tmp_path / "training.png")
    panels = {ax.get_title(): ax for ax in captured[0].axes if ax.axison}
    assert set(panels) == {"fusion_cnn: train loss", "fusion_cnn: val loss", "fusion_cnn: train components"}
    assert panels["fusion_cnn: train loss"].get_yscale() == "log"
    assert panels["fusion_cnn: train components"].get_yscale() == "linear"
    for ax in panels.values():  # a legend entry per drawn line, none that matches no line
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [line.get_label() for line in ax.get_lines()]


def test_gradient_clipping_of_a_manually_optimised_method_is_refused_before_work(tmp_path):
    spec = BenchSpec(method="seafusion", dataset="synthetic-ivif", downstream="none", out=tmp_path / "runs",
                     leaderboard_dir=None, device="cpu", overrides={"train.gradient_clip_val": 1.0})
    with pytest.raises(BenchError, match="train.gradient_clip_val=1.0: the method optimises manually"):
        prepare(spec)
    assert not (tmp_path / "runs").exists()


def test_reproduced_vs_reported_compares_the_presets_own_entry_and_names_every_kit(tmp_path):
    from fusion_bench.report.runs import Entry
    from fusion_bench.report.sections import reported_section

    def entry(i: int, overrides: str, en: float) -> Entry:
        record = {"method": "sal_avg", "preset": "smoke", "metric_dialect": "mmif", "overrides": overrides,
                  "train_mixture": "", "EN_mean": en, "EN_std": float("nan")}
        return Entry(i, "sal_avg" + (" [model.ksize=11]" if overrides else ""), record, ["0"], {})

    reported = tmp_path / "reported"
    reported.mkdir()
    (reported / "d.csv").write_text("method,our_method,metric,value,source,dialect,note\n"
                                    "SalAvg,sal_avg,EN,6.0,Paper,mmif,\nSalAvg,sal_avg,SD,40,Paper,vifb,\n")
    (tmp_path / "out" / "tables").mkdir(parents=True)
    html = reported_section("d", [entry(0, '{"model.ksize":11}', 9.0), entry(1, "", 6.25)], reported,
                            tmp_path / "out")
    assert "ours 6.25" in html and "ours 9" not in html, "the preset's own entry, never the override entry"
    assert "same kit as ours" not in html and "kits: mmif, vifb" in html
    assert '6 <span class="kit">[mmif]</span>' in html and '40 <span class="kit">[vifb]</span>' in html


def test_a_grid_file_takes_a_sweep_and_the_command_line_adds_to_it(cli, capsys, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("methods: [laplacian]\ndatasets: synthetic-ivif\nseeds: [0]\ndownstream: none\n"
                    "sweep: {model.levels: [2, 3]}\n")
    code, out, err = cli(capsys, "grid", "--grid", grid, "--sweep", "optim.lr=0.1,0.2,0.3", "--launcher", "commands",
                         "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 0, err
    assert len([line for line in out.splitlines() if line.startswith("fusion-bench bench")]) == 6
    grid.write_text("methods: [laplacian]\ndatasets: synthetic-ivif\nsweep: {model.levels: 3}\n")
    code, _, err = cli(capsys, "grid", "--grid", grid, "--launcher", "commands", "--out", tmp_path / "runs")
    _one_line_error(code, err, "sweep.model.levels must be a non-empty list")
