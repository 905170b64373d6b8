"""`bench --protocol FILE`: a user's protocol file merged over the dataset's (benchmarks/protocols/<dataset>.yaml):
metric lists, seeds, evaluator settings, the balance recipe and the robust corruption list; a file that does not fit
is exit 2 with one line naming the file and key, before any work."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from fusion_bench.benchmark.protocol import hash_of_text, load_protocol, merge_protocol
from fusion_bench.types import Task

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str, name: str = "protocol.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _bench(cli, capsys, tmp_path, *extra, dataset: str = "synthetic-ivif"):
    return cli(capsys, "bench", "--dataset", dataset, "--out", tmp_path / "runs", "--leaderboard-dir",
               tmp_path / "lb", "--no-progress", "--no-report", *extra)


def _printed(out: str) -> tuple[str, dict]:
    header, _, text = out.partition("\n")
    return header.rsplit(" ", 1)[1], yaml.safe_load(text)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_merge_is_key_by_key_for_mappings_and_replaces_the_rest():
    base = {"metrics": ["EN", "SD"], "presets": {"smoke": {"seeds": [0], "seg": {"epochs": 12}}, "paper": {}}}
    merged = merge_protocol(base, {"metrics": ["MI"], "presets": {"smoke": {"seg": {"lr": 0.1}}}})
    assert merged == {"metrics": ["MI"], "presets": {"smoke": {"seeds": [0], "seg": {"epochs": 12, "lr": 0.1}},
                                                    "paper": {}}}
    assert base["presets"]["smoke"]["seg"] == {"epochs": 12}, "the dataset's protocol is not modified"


def test_load_protocol_merges_the_file_over_the_datasets(tmp_path):
    path = _write(tmp_path, """
        metrics: [EN, SD]
        presets: {paper: {seeds: [4, 5]}}
        """)
    protocol = load_protocol("synthetic-ivif", Task.IVIF, path)
    standard = load_protocol("synthetic-ivif", Task.IVIF)
    assert protocol["metrics"] == ["EN", "SD"] and protocol["presets"]["paper"]["seeds"] == [4, 5]
    assert protocol["downstream"] == standard["downstream"] and protocol["presets"]["smoke"] == \
        standard["presets"]["smoke"], "what the file leaves out stays the dataset's"


def test_metrics_and_seeds_of_a_protocol_file_reach_the_rows(cli, capsys, tmp_path):
    path = _write(tmp_path, """
        metrics: [EN, SD]
        presets: {smoke: {seeds: [1, 2]}}
        """)
    args = ("--method", "laplacian", "--downstream", "none")
    code, out, err = _bench(cli, capsys, tmp_path, *args, "--protocol", str(path), "--print-config")
    assert code == 0, err
    digest, config = _printed(out)
    assert config["protocol"]["metrics"] == ["EN", "SD"]
    code, standard_out, _ = _bench(cli, capsys, tmp_path, *args, "--print-config")
    assert code == 0 and _printed(standard_out)[0] != digest, "another metric list is another entry"
    code, _, err = _bench(cli, capsys, tmp_path, *args, "--protocol", str(path), "--jobs", "2")
    assert code == 0, err
    rows = _rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert sorted(r["seed"] for r in rows) == ["1", "2"], "the file's seeds for the preset, each seed its own job"
    assert all(r["EN"] and r["SD"] and not r.get("MI") for r in rows), rows[0]
    (saved, *_) = sorted((tmp_path / "runs").rglob("config.yaml"))
    assert hash_of_text(saved.read_text()) == digest == rows[0]["config_hash"]


def test_evaluator_settings_of_a_protocol_file(cli, capsys, tmp_path):
    path = _write(tmp_path, "presets: {smoke: {seg: {epochs: 2}}}\n")
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--downstream", "seg",
                            "--protocol", str(path), "--print-config")
    assert code == 0, err
    assert _printed(out)[1]["downstream"]["seg"]["epochs"] == 2
    bad = _write(tmp_path, "presets: {smoke: {seg: {epoch: 2}}}\n", "bad.yaml")
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--downstream", "seg", "--protocol", str(bad))
    assert code == 2 and "epoch" in err and len(err.strip().splitlines()) == 1, err


def test_a_protocol_file_picks_the_balance_variant_and_its_recipe(cli, capsys, tmp_path):
    path = _write(tmp_path, """
        variant: balance
        variants: {balance: {seeds: [7], recipe: {smoke: {train: {max_steps: 3}}}}}
        """)
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "late_fusion", "--protocol", str(path),
                            "--print-config", dataset="synthetic-av")
    assert code == 0, err
    config = _printed(out)[1]
    assert config["protocol_variant"] == "balance" and config["config"]["train"]["max_steps"] == 3
    assert config["config"]["optim"]["optimizer"] == "sgd", "the rest of the recipe is the dataset's"


def test_a_protocol_file_picks_the_robust_variant_and_its_corruptions(cli, capsys, tmp_path):
    path = _write(tmp_path, """
        variant: robust
        robust: {corruptions: [{name: jpeg, modality: both}]}
        """)
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--protocol", str(path))
    assert code == 0, err
    rows = _rows(tmp_path / "lb" / "robust" / "raw" / "synthetic-ivif.csv")
    assert sorted({r["corruption"] for r in rows}) == ["jpeg", "none"], sorted({r["corruption"] for r in rows})
    assert len(rows) == 6, "the clean row and 5 severities of the one listed corruption"


@pytest.mark.parametrize("text, needles", [
    ("metric: [EN]\n", ("unknown key 'metric'", "keys: variant")),
    ("metrics: EN\n", ("metrics must be a list", "'EN'")),
    ("metrics: [EN, NOPE]\n", ("NOPE", "valid")),
    ("metrics: []\n", ("names no metric",)),
    ("dataset: tno\n", ("dataset 'tno' does not match", "synthetic-ivif")),
    ("task: mfif\n", ("task 'mfif' does not match",)),
    ("variant: fast\n", ("variant 'fast' is not a protocol variant", "balance, robust")),
    ("variant: balance\n", ("balance", "audio-visual")),
    ("presets: {smoke: {seeds: [-1]}}\n", ("presets.smoke.seeds", "non-negative integers")),
    ("presets: {quick: {}}\n", ("presets.quick", "smoke")),
    ("presets: {smoke: {epochs: 3}}\n", ("presets.smoke takes seeds, seg, det", "epochs")),
    ("robust: {baseline: max}\n", ("robust.baseline", "robust tables")),
    ("- metrics\n", ("expected a mapping",)),
    ("metrics: [EN\n", ("not valid YAML",)),
])
def test_a_protocol_file_that_does_not_fit_is_exit_2_naming_file_and_key(cli, capsys, tmp_path, text, needles):
    path = _write(tmp_path, text)
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "laplacian", "--downstream", "none",
                          "--protocol", str(path))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in (str(path), *needles):
        assert needle in err, (needle, err)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists(), "nothing ran"


def test_a_missing_protocol_file_or_unknown_name_is_exit_2_without_torch(tmp_path):
    script = textwrap.dedent("""
        import contextlib, io, json, sys
        from fusion_bench.cli import main
        out = []
        for value in ("missing.yaml", "nope"):
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main(["bench", "--method", "mean", "--dataset", "synthetic-ivif", "--protocol", value])
            out.append([code, err.getvalue().strip()])
        print(json.dumps({"out": out, "torch": "torch" in sys.modules}))
        """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (missing_code, missing), (nope_code, nope) = result["out"]
    assert missing_code == 2 and "missing.yaml: no such file" in missing, missing
    assert nope_code == 2 and "neither a protocol variant (balance, robust) nor a YAML protocol file" in nope, nope
    assert result["torch"] is False


def test_the_python_api_takes_protocol_as_the_command_line_does(tmp_path):
    from fusion_bench import BenchSpec, run_bench
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.errors import BenchError

    balance = prepare(BenchSpec(method="late_fusion", dataset="synthetic-av", protocol="balance",
                                out=tmp_path / "runs", leaderboard_dir=None, device="cpu", progress=False))
    assert balance.spec.protocol_variant == "balance" and balance.config["train"]["max_steps"] == 200
    path = _write(tmp_path, """
        variant: robust
        robust: {corruptions: [{name: haze, modality: vis}]}
        """)
    rows = run_bench(BenchSpec(method="mean", dataset="synthetic-ivif", protocol=str(path), downstream="none",
                               out=tmp_path / "runs", leaderboard_dir=tmp_path / "lb", device="cpu", progress=False))
    assert [(r["corruption"], r["severity"]) for r in rows] == [("none", 0)] + [("haze", s) for s in range(1, 6)]
    assert (tmp_path / "lb" / "robust" / "raw" / "synthetic-ivif.csv").is_file()
    assert not (tmp_path / "lb" / "raw").exists(), "robust rows never go to the standard raw CSV"
    with pytest.raises(BenchError, match="neither a protocol variant"):
        prepare(BenchSpec(method="mean", dataset="synthetic-ivif", protocol="sturdy"))
    with pytest.raises(BenchError, match="disagree"):
        prepare(BenchSpec(method="mean", dataset="synthetic-ivif", protocol="robust", protocol_variant="balance"))
