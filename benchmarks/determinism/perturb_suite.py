"""Re-run the regression suite under every kernel and thread perturbation this machine can reach, and tabulate how far
each entry's numbers move from the pinned run.

Each variant is one `fusion-bench regress --suite S --actual <variant>.csv` process with its own environment:

- ``pinned``: the reference, what `regress` and CI run (fusion_bench.numerics: ATen AVX2 kernels, MKL_CBWR
  COMPATIBLE,STRICT, oneDNN/NNPACK off, one thread);
- ``cbwr-auto``, ``cbwr-avx2``, ``cbwr-sse42``, ``cbwr-unset``: the pin with MKL's conditional-numerical-
  reproducibility branch AUTO / AVX2 / SSE4_2 / unset (MKL picks its code path by CPU vendor and model);
- ``mkl-avx512``: MKL_CBWR unset and ``MKL_ENABLE_INSTRUCTIONS=AVX512`` (MKL's newest code path where the CPU has it);
- ``aten-default``, ``aten-avx512``: ATen's kernel level as the CPU allows (AVX-512 where present) / asked for;
- ``native-1t``, ``native-2t``: no pin at all (``FUSION_BENCH_NUMERICS=native``: oneDNN and NNPACK on, the
  libraries' own code paths) on one and two threads.

Variants a CPU cannot express (the AVX-512 ones, and ``aten-default``, on a CPU without AVX-512: they would run the
pinned AVX2 code again) are skipped and listed as such in spread.md. Output: ``<out>/<variant>.csv`` (the suite's
numbers per variant) and ``<out>/spread.md`` (per entry: the largest relative difference from ``pinned`` over its
checked columns, per variant and overall). The numbers are those `regress` checks, so the table is what sets the
suite's tolerance.

Usage (from the repository root, with the project installed)::

    python benchmarks/determinism/perturb_suite.py --out runs/perturb [--methods fusion_cnn,late_fusion]
        [--variants pinned,cbwr-avx2,native-2t] [--jobs 2]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from fusion_bench.benchmark.regress import KEY, TEXT_KEY
from fusion_bench.numerics import MODE_ENV, NATIVE, PINNED_ENV, _cpu_flags, pinned_environment

REFERENCE = "pinned"
NEEDS_AVX512 = ("mkl-avx512", "aten-default", "aten-avx512")  # the same code as `pinned` on a CPU without AVX-512


def unreachable(flags: set[str] | None = None) -> list[str]:
    """The variants this CPU cannot express (they would repeat another variant's code paths)."""
    flags = _cpu_flags() if flags is None else flags
    return [] if flags is None or "avx512f" in flags else list(NEEDS_AVX512)


def variant_environments(base: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Variant name -> the environment of its `fusion-bench regress` process."""
    base = dict(os.environ if base is None else base)
    base.pop(MODE_ENV, None)
    pinned = pinned_environment(base)  # what the launcher's re-execution sets; FUSION_BENCH_NUMERICS=pinned

    def pin(**changes: str | None) -> dict[str, str]:
        env = dict(pinned)
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def native(threads: int) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k not in PINNED_ENV}
        env.update({MODE_ENV: NATIVE, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
        return env

    return {
        REFERENCE: pinned,
        "cbwr-auto": pin(MKL_CBWR="AUTO"),
        "cbwr-avx2": pin(MKL_CBWR="AVX2"),
        "cbwr-sse42": pin(MKL_CBWR="SSE4_2"),
        "cbwr-unset": pin(MKL_CBWR=None),
        "mkl-avx512": pin(MKL_CBWR=None, MKL_ENABLE_INSTRUCTIONS="AVX512"),
        "aten-default": pin(ATEN_CPU_CAPABILITY=None),
        "aten-avx512": pin(ATEN_CPU_CAPABILITY="avx512"),
        "native-1t": native(1),
        "native-2t": native(2),
    }


def run_variant(name: str, env: dict[str, str], out: Path, suite: str, methods: list[str] | None) -> tuple[str, float]:
    """One `regress` process; returns (variant, seconds). Exit 1 (drift) is expected for the unpinned variants."""
    cmd = [sys.executable, "-m", "fusion_bench", "regress", "--suite", suite, "--actual", str(out / f"{name}.csv")]
    if methods:
        cmd += ["--methods", ",".join(methods)]
    start = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1) or not (out / f"{name}.csv").is_file():
        raise RuntimeError(f"variant {name}: regress failed (exit {code}); see {out / f'{name}.log'}")
    return name, time.perf_counter() - start


def relative_difference(a: float, b: float) -> float:
    if (isinstance(a, float) and math.isnan(a)) and (isinstance(b, float) and math.isnan(b)):
        return 0.0
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """The suite's numbers indexed by KEY (text keys that do not apply as "", a missing severity as -1)."""
    text = {c: frame[c].fillna("").astype(str) if c in frame else "" for c in TEXT_KEY}
    severity = frame["severity"].fillna(-1).astype(int) if "severity" in frame else -1
    return frame.assign(**text, severity=severity).set_index(KEY)


def _difference(a: object, b: object) -> float:
    """relative_difference of two numbers; 0 or inf for text columns (equal or not)."""
    try:
        return relative_difference(float(a), float(b))
    except (TypeError, ValueError):
        return 0.0 if str(a) == str(b) else math.inf


def spread(frames: dict[str, pd.DataFrame], methods: list[str] | None = None) -> pd.DataFrame:
    """Per suite entry (method, dataset, downstream or protocol) and variant: the largest relative difference from
    REFERENCE over the entry's seeds and checked columns (only `methods`' entries when given: the variants were run
    with --methods; a run missing from a variant is infinitely far)."""
    ref = _keyed(frames[REFERENCE])
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    for name, frame in frames.items():
        if name == REFERENCE:
            continue
        other = _keyed(frame)
        for key, row in ref.iterrows():
            fields = dict(zip(KEY, key))
            if methods is not None and fields["method"] not in methods:
                continue
            entry = (str(fields["method"]), str(fields["train_mixture"]) or str(fields["dataset"]),
                     "/".join(x for x in (str(fields["downstream"]), str(fields["protocol"])) if x))
            if key not in other.index:
                table.setdefault(entry, {})[name] = math.inf
                continue
            theirs = other.loc[key]
            values = [_difference(theirs[c] if c in theirs.index else math.nan, v) for c, v in row.items()
                      if not (isinstance(v, float) and math.isnan(v) and (c not in theirs.index
                                                                          or pd.isna(theirs[c])))]
            worst = max(values, default=0.0)
            table.setdefault(entry, {})[name] = max(table.get(entry, {}).get(name, 0.0), worst)
    out = pd.DataFrame.from_dict(table, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["method", "dataset", "downstream/protocol"])
    out["max"] = out.max(axis=1)
    return out.sort_index()


def markdown(table: pd.DataFrame, environments: dict[str, str]) -> str:
    cols = list(table.columns)
    lines = ["| method | dataset | downstream | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for (method, dataset, downstream), row in table.iterrows():
        cells = ["0" if v == 0 else f"{v:.1e}" for v in row]
        lines.append(f"| {method} | {dataset} | {downstream or '-'} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- `{name}`: {line}" for name, line in environments.items()]
    return "\n".join(lines) + "\n"


def environment_of(path: Path) -> str:
    with path.open() as fh:
        for line in fh:
            if line.startswith("# environment: "):
                return line[len("# environment: "):].split(";")[0].strip()
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the per-variant CSVs, logs and spread.md")
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--methods", default=None, help="comma-separated methods of the suite (default: all)")
    parser.add_argument("--variants", default=None, help=f"comma-separated variants (default: all; {REFERENCE} is "
                                                         "always run)")
    parser.add_argument("--jobs", type=int, default=1, help="variants at a time (each uses its threads' cores)")
    args = parser.parse_args(argv)
    envs = variant_environments()
    names = list(envs) if args.variants is None else [REFERENCE] + [v for v in args.variants.split(",")
                                                                    if v != REFERENCE]
    unknown = [n for n in names if n not in envs]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; valid: {', '.join(envs)}")
    skipped = [n for n in names if n in unreachable()]
    names = [n for n in names if n not in skipped]
    args.out.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",") if args.methods else None
    todo = [n for n in names if not (args.out / f"{n}.csv").is_file()]  # resumable: finished variants are kept
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, seconds in pool.map(lambda n: run_variant(n, envs[n], args.out, args.suite, methods), todo):
            print(f"{name}: {seconds:.0f} s", flush=True)
    frames = {n: pd.read_csv(args.out / f"{n}.csv", comment="#") for n in names}
    table = spread(frames, args.methods.split(",") if args.methods else None)
    text = markdown(table, {n: environment_of(args.out / f"{n}.csv") for n in names})
    if skipped:
        text += f"\nNot reachable on this CPU (no AVX-512; same code paths as `{REFERENCE}`): {', '.join(skipped)}\n"
    (args.out / "spread.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
