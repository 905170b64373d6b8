"""benchmarks/perf/gpu_check.py (the GPU check): its CPU dry run and the targets table.

The dry run goes through every section with the sections' failure modes injected: a worker that fails at its start
(scan), one that dies inside its first item (fuse: the item is FAIL, the worker restarts for the rest), one that hangs
past its budget (metrics: TIMEOUT) and a bad argument (an unknown AV method: that item FAIL, the next one runs); the
other sections must still run and report."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "perf" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _summary(text: str) -> dict[str, str]:
    """section -> status from the summary table (`| name | **STATUS** | seconds | rows | note |`)."""
    return dict(re.findall(r"^\| (\w+) \| \*\*(\w+)\*\* \|", text, re.MULTILINE))


def _rows(text: str, section: str) -> dict[str, list[str]]:
    """item -> cells of the section's detail table."""
    part = text.split(f"\n## {section}: ", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in part.splitlines() if ln.startswith("| ")][1:]  # without the header
    return {cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split(" | ")] for ln in lines)}


def test_dry_run_records_every_section_and_keeps_going_after_failures(tmp_path: Path) -> None:
    out = tmp_path / "out" / "gpu_check.md"
    argv = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--train-methods", "cfi",
            "--fuse-methods", "mean,max", "--av-methods", "no_such_method,infobridge",
            "--inject", "scan=fail", "--inject", "fuse=crash", "--inject", "metrics=hang",
            "--section-budget", "metrics=3"]
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # failures were recorded
    text = out.read_text()
    module = _module()
    assert _summary(text) == {"install": "SKIP", "env": "PASS", "scan": "FAIL", "train": "PASS", "fuse": "FAIL",
                              "metrics": "TIMEOUT", "ssvif16": "PASS", "av": "FAIL", "ddp": "SKIP",
                              "pytest": "PASS"}, text
    assert set(_summary(text)) == set(module.SECTIONS)
    assert "injected failure" in text.split("| scan |", 1)[1].splitlines()[0]
    assert "killed after its budget of 3 s" in text
    # a worker that died inside an item: that item FAIL, the rest ran in a restarted worker
    fuse = _rows(text, "fuse")
    assert fuse["mean"][1] == "FAIL" and "worker died" in fuse["mean"][-1] and fuse["max"][1] == "PASS"
    # a bad argument fails its item only
    av = _rows(text, "av")
    assert av["no_such_method"][1] == "FAIL" and "exit code 2" in av["no_such_method"][-1]
    assert av["infobridge"][1] == "PASS"
    # the measurements are real: the train rows carry timed steps, the scan of the CPU dry run is skipped on CUDA
    rows = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    train = [r for r in rows if r["section"] == "train"]
    assert [r["item"] for r in train] == ["cfi config", "cfi bf16-auto", "cfi bf16-auto+cl"]
    assert all(r["status"] == "PASS" and r["values"]["s_per_step"] > 0 for r in train)
    assert train[2]["values"]["channels_last"] is True
    ssvif = next(r for r in rows if r["section"] == "ssvif16")
    assert ssvif["values"]["stages"].startswith("1") and "2" in ssvif["values"]["stages"]
    pytest_row = next(r for r in rows if r["section"] == "pytest")
    assert "skipped" in pytest_row["values"]["summary"]  # the gpu tests skip on the CPU
    assert "card: **none (CPU)**" in text and "torch " in text
    assert "| vifb metrics (pairs/s) | 178 |" in text  # the reference numbers are in the targets table
    assert out.with_suffix(".log").read_text().count("[train]") > 0


def test_targets_compare_with_the_previous_table_on_a_gpu(tmp_path: Path) -> None:
    module = _module()
    report = module.Report(tmp_path / "t.md", module.Settings(device="cuda"), [], 540)

    def add(section: str, values: dict) -> None:
        report.section(section).rows.append({"item": "x", "status": "PASS", "values": values, "seconds": 1.0})

    add("train", {"method": "cfi", "variant": "bf16-auto", "peak_gb": 1.0})  # not the configured precision
    add("train", {"method": "cfi", "variant": "config", "peak_gb": 32.3 / 2})  # at most half: met at the bound
    add("train", {"method": "swinfusion", "variant": "config", "peak_gb": 13.0})  # > 25.8 / 2
    add("fuse", {"method": "swinfusion", "images_per_s": 27.5})  # >= 3 x 9
    targets = {line.split(" | ")[0].strip("| "): line for line in report.targets()}
    assert targets["CFI peak memory, paper batch, configured precision (GB)"].endswith("| 16.1 | 0.5 | **yes** |")
    assert targets["SwinFusion peak memory, paper batch, configured precision (GB)"].endswith("| **no** |")
    assert targets["SwinFusion fuse at 480x640 (images/s)"].endswith("| 27.5 | 3.06 | **yes** |")
    assert targets["vifb metrics (pairs/s)"].endswith("| - | - | not measured |")
    dry = module.Report(tmp_path / "d.md", module.Settings.dry(), [], 60)
    dry.sections = report.sections
    assert all(line.endswith(("n/a (dry run) |", "not measured |")) for line in dry.targets())
    report.write()
    assert (tmp_path / "t.md").read_text().count("**yes**") == 2


@pytest.mark.parametrize("bad", [["--inject", "nope=fail"], ["--inject", "scan=explode"], ["--sections", "gpu"]])
def test_bad_arguments_are_usage_errors(bad: list[str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path / "x.md"), *bad],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "gpu_check.py: error:" in done.stderr, done.stderr
    assert not (tmp_path / "x.md").exists()
