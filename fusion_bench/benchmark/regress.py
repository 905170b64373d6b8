"""Regression of numbers: re-run a suite (benchmarks/suites/<name>.yaml) and compare with committed values."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusion_bench.benchmark.mixture import prepare_mixture
from fusion_bench.benchmark.protocol import SUITE_DIR, load_suite
from fusion_bench.benchmark.results import (
    DIAGNOSTIC_COLUMNS,
    DOWNSTREAM_COLUMNS,
    NON_METRIC_COLUMNS,
    atomic_write_text,
)
from fusion_bench.benchmark.robust import ROBUST_COLUMNS, prepare_robust, run_robust
from fusion_bench.benchmark.runner import run_bench, run_mixture
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.errors import BenchError

KEY = ["dataset", "method", "preset", "seed", "train_mixture", "downstream", "protocol", "corruption", "modality",
       "severity"]
TEXT_KEY = ("train_mixture", "downstream", "protocol", "corruption", "modality")  # "" where they do not apply


def run_suite(suite: dict[str, Any], out: Path, progress: bool = False, methods: Sequence[str] | None = None,
              overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run every (dataset, method, seed) of a suite; one row per run, checked columns only.

    A run entry is `{dataset: D, methods: [...]}` (optionally `downstream: [seg, det]`, `seeds: [...]` and `set:
    {KEY: VALUE}`, else the suite's; an entry's `set` is merged over the suite's), or `{mixture: [D1, D2, ...],
    methods: [...]}`: one model trained on the mixture, one row per dataset (`train_mixture` set). An entry with
    `protocol: robust` (optionally `corruptions: [NAME or NAME:MODALITY, ...]`, else the protocol's list) runs the
    robustness protocol (fusion_bench.benchmark.robust): a row per corruption, modality and severity. Baseline
    downstream rows are not added: list source_a/source_b to check them. `methods`: run only these methods' entries;
    `overrides`: merged over every entry's `set` (a deliberate change, e.g. the mutation check of the README).
    """
    records = []
    for entry in suite["runs"]:
        for method in entry["methods"]:
            if methods is not None and method not in methods:
                continue
            datasets = entry.get("mixture") or [entry["dataset"]]
            spec = BenchSpec(method=method, dataset=datasets[0], preset=suite.get("preset", "smoke"),
                             seeds=entry.get("seeds", suite.get("seeds", [0])), out=out / "runs",
                             leaderboard_dir=out / "leaderboards", device="cpu", progress=progress,
                             downstream=entry.get("downstream", suite.get("downstream", "none")),
                             downstream_baselines=False,
                             overrides={**(suite.get("set") or {}), **(entry.get("set") or {}),
                                        **(overrides or {})})
            if entry.get("protocol") == "robust":
                rows = run_robust(prepare_robust(spec, corruptions=entry.get("corruptions")))
            elif entry.get("protocol") is not None:
                raise BenchError(f"suite entry {entry}: unknown protocol {entry['protocol']!r} (known: robust)")
            else:
                rows = run_mixture(prepare_mixture(spec, datasets)) if "mixture" in entry else run_bench(spec)
            evaluators = spec.downstream if isinstance(spec.downstream, (list, tuple)) else [spec.downstream]
            for row in rows:
                records.append({**{k: v for k, v in row.items()
                                   if k in KEY or (checked_column(k) and k not in ROBUST_COLUMNS)},
                                "downstream": ",".join(e for e in evaluators if e != "none")})
    return keyed_frame(pd.DataFrame(records, columns=KEY) if not records else pd.DataFrame(records))


def checked_column(column: str) -> bool:
    """Quality numbers and the evaluators' training losses are regressed; costs (time, memory) and provenance are
    not."""
    return column not in NON_METRIC_COLUMNS or column in DOWNSTREAM_COLUMNS or column in DIAGNOSTIC_COLUMNS


def tolerance_for(tolerance: dict[str, Any], method: str) -> tuple[float, float]:
    """(rtol, atol) for a method: its own entry in the suite's `tolerance`, else `default`."""
    entry = {**tolerance.get("default", {}), **tolerance.get(method, {})}
    return float(entry.get("rtol", 1e-6)), float(entry.get("atol", 1e-9))


def keyed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """KEY columns present, the text ones as text ("" for ordinary runs; a CSV reads an empty cell as NaN)."""
    frame = frame.copy()
    for col in TEXT_KEY:
        frame[col] = frame[col].fillna("").astype(str) if col in frame.columns else ""
    # severity: an integer of robust rows, "" for the others (a CSV column with empty cells reads as float)
    frame["severity"] = frame["severity"].map(lambda v: "" if pd.isna(v) or v == "" else str(int(float(v)))) \
        if "severity" in frame.columns else ""
    return frame


def compare(expected: pd.DataFrame, actual: pd.DataFrame, tolerance: dict[str, Any],
            methods: Sequence[str] | None = None) -> list[str]:
    """Every drift beyond |a - e| <= atol + rtol * |e|, every missing run or metric, as readable lines. `methods`:
    compare only these methods' expected rows (the others were not re-run)."""
    drifts = []
    expected = keyed_frame(expected)
    if methods is not None:
        expected = expected[expected["method"].isin(list(methods))]
    exp = expected.set_index(KEY)
    act = keyed_frame(actual).set_index(KEY)
    for key, exp_row in exp.iterrows():
        label = "/".join(str(k) for k in key if k != "")
        if key not in act.index:
            drifts.append(f"{label}: run missing from the re-run")
            continue
        act_row = act.loc[key]
        rtol, atol = tolerance_for(tolerance, str(key[KEY.index("method")]))
        for metric, e in exp_row.items():
            if pd.isna(e) and metric not in act_row:
                continue
            a = act_row.get(metric, math.nan)
            if pd.isna(e) and pd.isna(a):
                continue
            if isinstance(e, str) or isinstance(a, str):  # a text column: equal or not
                if str(a) != str(e):
                    drifts.append(f"{label}: {metric} expected {e!r}, got {a!r}")
            elif pd.isna(e) != pd.isna(a) or abs(float(a) - float(e)) > atol + rtol * abs(float(e)):
                drifts.append(f"{label}: {metric} expected {float(e)!r}, got {float(a)!r}")
    for key in act.index.difference(exp.index):
        drifts.append(f"{'/'.join(str(k) for k in key if k != '')}: new run without an expected value (run --update)")
    return drifts


ENV_PREFIX = "# environment: "


def environment_line() -> str:
    """The numeric environment of this process and the packages that shape the numbers, one line."""
    from fusion_bench import numerics
    from fusion_bench.benchmark.provenance import package_versions

    return f"{numerics.describe(numerics.environment())}; {package_versions()}"


def expected_environment(path: Path) -> str | None:
    """The environment recorded in an expected file's `# environment:` comment line, if any."""
    with path.open() as fh:
        for line in fh:
            if not line.startswith("#"):
                return None
            if line.startswith(ENV_PREFIX):
                return line[len(ENV_PREFIX):].strip()
    return None


FLOAT_FORMAT = "%.17g"  # every digit of a float64: the tolerances are far below 10 significant digits


def write_expected(frame: pd.DataFrame, path: Path, command: str) -> None:
    """The expected numbers (every digit), with comment lines saying how and where they were made."""
    header = f"# written by `{command}`\n{ENV_PREFIX}{environment_line()}\n"
    atomic_write_text(path, header + frame.to_csv(index=False, float_format=FLOAT_FORMAT))


def read_expected(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, comment="#")


def check_suite(name: str, update: bool = False, methods: Sequence[str] | None = None,
                overrides: dict[str, Any] | None = None) -> None:
    """Before anything runs: suite `name` exists, (unless `update`) so do its expected numbers, `methods` are the
    suite's and an update is of the whole suite; BenchError naming the suite or the option otherwise."""
    try:
        suite, _ = load_suite(name)
    except ValueError as err:
        raise BenchError(f"--suite: {err}") from err
    expected = SUITE_DIR / suite.get("expected", f"{name}.expected.csv")
    if not update and not expected.is_file():
        raise BenchError(f"suite {name}: the expected numbers {expected} do not exist; create them with "
                         f"`fusion-bench regress --suite {name} --update`")
    if update and (methods or overrides):
        raise BenchError("--update rewrites the whole expected file: run it without --methods and --set")
    known = {m for entry in suite["runs"] for m in entry["methods"]}
    unknown = sorted(set(methods or ()) - known)
    if unknown:
        raise BenchError(f"--methods: {', '.join(unknown)} not in suite {name} (its methods: "
                         f"{', '.join(sorted(known))})")


def regress(name: str, update: bool = False, out: Path | None = None, progress: bool = False,
            methods: Sequence[str] | None = None, overrides: dict[str, Any] | None = None,
            actual_path: Path | None = None) -> list[str]:
    """Re-run suite `name`; returns the drift lines (empty = no drift). `update` rewrites the expected file
    (with the numeric environment it was made in: see `environment_report`). `methods` and `overrides`: see
    `run_suite` (an update with either is refused: the expected file holds the whole suite as committed).
    `actual_path`: also write the re-run's numbers there (same format as the expected file)."""
    if update and (methods is not None or overrides):
        raise ValueError("--update rewrites the whole expected file: run it without --methods and --set")
    suite, path = load_suite(name)
    expected_path = SUITE_DIR / suite.get("expected", f"{name}.expected.csv")
    tolerance = suite.get("tolerance", {})
    with tempfile.TemporaryDirectory(prefix=f"fusion_bench_regress_{name}_") as tmp:
        actual = run_suite(suite, Path(out) if out else Path(tmp), progress=progress, methods=methods,
                           overrides=overrides)
    actual = actual.sort_values(KEY).reset_index(drop=True)
    if actual_path is not None:
        write_expected(actual, Path(actual_path), f"fusion-bench regress --suite {name} (actual numbers)")
    if update:
        write_expected(actual, expected_path, f"fusion-bench regress --suite {name} --update")
        return []
    if not expected_path.is_file():
        return [f"{expected_path} does not exist; create it with `fusion-bench regress --suite {name} --update`"]
    return compare(read_expected(expected_path), actual, tolerance, methods)


def environment_report(name: str) -> str:
    """Two lines for a drift report: this run's numeric environment and the expected file's."""
    suite, _ = load_suite(name)
    path = SUITE_DIR / suite.get("expected", f"{name}.expected.csv")
    recorded = expected_environment(path) if path.is_file() else None
    return f"this run:      {environment_line()}\nexpected file: {recorded or 'no environment recorded'}"
