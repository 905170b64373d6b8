"""The built wheel works on its own: protocols, suites, reported numbers and split lists ship inside it, `bench` runs
from a folder outside the repository, and a missing protocol is a loud error (not a silent default)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fusion_bench.benchmark.results import read_rows

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "fusion_bench", "methods", "datamodules", "benchmarks")


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_benches_outside_the_repo(tmp_path, synthetic_cache):
    src = tmp_path / "src"  # a clean copy: building in place would leave build/ and *.egg-info in the checkout
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(src)])
    (wheel,) = (tmp_path / "dist").glob("mmfusion_bench-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("fusion_bench/_benchmarks/protocols/synthetic-ivif.yaml",
                    "fusion_bench/_benchmarks/suites/smoke.yaml", "fusion_bench/_benchmarks/reported/tno.csv",
                    "fusion_bench/_benchmarks/zoo.yaml",
                    "fusion_bench/datamodules/splits/tno/test.txt",
                    "fusion_bench/datamodules/splits/msrs/detection/test.txt",
                    "fusion_bench/methods/fusion_cnn/config.yaml", "fusion_bench/methods/baselines/model.py"):
        assert shipped in names, shipped
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"fusion_bench"}, tops  # nothing generic (methods/, datamodules/) in site-packages

    # a fresh venv that sees this environment's packages (torch, ...) but not this checkout
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["FUSION_BENCH_CACHE"] = str(synthetic_cache)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run([str(python), "-c", "import fusion_bench.benchmark.protocol as p; print(p.PROTOCOL_DIR)"],
                 cwd=outside, env=env).stdout.strip()
    assert where.startswith(str(site)), where
    command = [str(python), "-m", "fusion_bench", "bench", "--method", "mean", "--dataset", "synthetic-ivif",
               "--downstream", "none", "--out", "runs", "--leaderboard-dir", "lb", "--no-progress", "--no-report"]
    _run(command, cwd=outside, env=env)
    (row,) = read_rows(outside / "lb" / "raw" / "synthetic-ivif.csv")
    # a user project with its own `methods/` package (first on sys.path) does not shadow the installed methods
    (outside / "methods").mkdir()
    (outside / "methods" / "__init__.py").write_text("")
    code = "from fusion_bench.registry import get_method; print(get_method('mean').__module__)"
    found = _run([str(python), "-c", code], cwd=outside, env=env).stdout.strip()
    assert found == "fusion_bench.methods.baselines.model", found
    assert row["method"] == "mean" and row["metric_dialect"] == "mmif" and "mmfusion-bench=0.1.0" in row["packages"]

    # a broken install says so
    (Path(where) / "synthetic-ivif.yaml").unlink()
    done = subprocess.run(command, cwd=outside, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "protocol of dataset 'synthetic-ivif' is missing" in done.stderr, done.stderr


def test_a_users_own_methods_package_does_not_shadow_the_built_in_methods(tmp_path: Path) -> None:
    """The built-in methods live in `fusion_bench.methods`, so a user project with a top-level `methods/` package (here
    first on sys.path, before the checkout) still gets `mean` from the registry."""
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "__init__.py").write_text("")
    (tmp_path / "datamodules").mkdir()
    (tmp_path / "datamodules" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    code = ("from fusion_bench.registry import get_datamodule, get_method; "
            "print(get_method('mean').__module__, get_datamodule('tno').__module__)")
    done = _run([sys.executable, "-c", code], cwd=tmp_path, env=env)
    assert done.stdout.split() == ["fusion_bench.methods.baselines.model", "fusion_bench.datamodules.tno"]
