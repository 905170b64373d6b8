"""CPU throughput of the metric dialects of an older commit against the working tree, side by side in one process.

    python benchmarks/perf/bench_metrics_revs.py                                  # real mix, vifb,mmif,tang
    python benchmarks/perf/bench_metrics_revs.py --images synthetic --repeats 5   # 480x640 pairs, no data needed
    python benchmarks/perf/bench_metrics_revs.py --old-rev HEAD~1 --dialects vifb --threads 2

`--old-rev` (default: 71fab58, main before the current metric kernels) is exported with `git archive` to a
temporary directory and its `fusion_bench` package imported under its own module objects next to the working
tree's (the metrics package has no import inside a function, so the two stay apart). Each round scores every
pair with every dialect, old and new back to back (which goes first alternates between rounds), so that the
load of a shared machine hits both alike; wall time per pair (`Dialect.compute` with the default workers =
torch threads). Printed: pairs/s per dialect (median over rounds), the median and range of the per-round
speed-ups, and the largest relative difference of any metric between the two trees.

Images: `mix` = one real triple per fused folder of ../shared/realdata (or $FUSION_BENCH_REALDATA), as
`bench_metrics.py --per-folder 1`; `synthetic` = random 480x640 levels: a gray and a colour source with a colour
fused image, and the same with a gray fused image.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
BEFORE = "71fab58"


def import_tree(tree: Path) -> ModuleType:
    """fusion_bench.metrics of the source tree `tree`, as module objects separate from any already imported."""
    def ours(name: str) -> bool:
        return name == "fusion_bench" or name.startswith("fusion_bench.")

    saved = {k: sys.modules.pop(k) for k in [k for k in sys.modules if ours(k)]}
    sys.path.insert(0, str(tree))
    try:
        return importlib.import_module("fusion_bench.metrics")
    finally:
        sys.path.remove(str(tree))
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]  # the returned module keeps its submodules alive through its globals
        sys.modules.update(saved)


def real_mix() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One real triple per fused folder, as [0, 1] tensors."""
    sys.path.insert(0, str(ROOT / "tests" / "metrics"))
    import kit_reference as kr
    from test_metrics_realdata import triples

    seen: set[str] = set()
    out = []
    for key, pa, pb, pf in triples():
        folder = key.rsplit("/", 1)[0]
        if folder in seen:
            continue
        seen.add(folder)
        out.append((key, *(_tensor(kr.load_rgb_or_gray(p)) for p in (pa, pb, pf))))
    return out


def _tensor(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x.astype(np.float64)) / 255
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def synthetic() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """480x640 random levels: gray + colour sources with a colour and with a gray fused image."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (1, 1, 480, 640), generator=g) / 255.0
    b = torch.randint(0, 256, (1, 3, 480, 640), generator=g) / 255.0
    f = torch.round((a + b) / 2 * 255) / 255
    return [("480x640 gray+colour->colour", a.double(), b.double(), f.double()),
            ("480x640 gray+colour->gray", a.double(), b.double(), f.mean(1, keepdim=True).mul(255).round().div(255))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-rev", default=BEFORE)
    parser.add_argument("--dialects", default="vifb,mmif,tang")
    parser.add_argument("--images", choices=("mix", "synthetic"), default="mix")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads = metric workers (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dialects = args.dialects.split(",")
    os.environ.setdefault("FUSION_BENCH_REALDATA", str(ROOT.parent / "shared" / "realdata"))
    pairs = real_mix() if args.images == "mix" else synthetic()
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "old.tar"
        subprocess.run(["git", "archive", "-o", str(archive), args.old_rev], cwd=ROOT, check=True)
        old_tree = Path(tmp) / "old"
        with tarfile.open(archive) as tar:
            tar.extractall(old_tree, filter="data")
        trees = {"old": import_tree(old_tree), "new": import_tree(ROOT)}
    for name in dialects:  # warm-up (first call per size)
        for _, a, b, f in pairs:
            for mod in trees.values():
                mod.get_dialect(name).compute(a, b, f)
    spent: dict[tuple[str, str], list[float]] = defaultdict(list)  # (dialect, tree) -> seconds per round
    worst: dict[str, tuple[float, str]] = {}
    load_before = os.getloadavg()
    for rnd in range(args.repeats):
        order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
        totals: dict[tuple[str, str], float] = defaultdict(float)
        for key, a, b, f in pairs:
            for name in dialects:
                got = {}
                for label in order:
                    d = trees[label].get_dialect(name)
                    t0 = time.perf_counter()
                    got[label] = d.compute(a, b, f)
                    totals[(name, label)] += time.perf_counter() - t0
                for metric, old in got["old"].items():
                    o, n = old.item(), got["new"][metric].item()
                    rel = 0.0 if o == n or (math.isnan(o) and math.isnan(n)) else abs(o - n) / max(abs(o), 1e-300)
                    label = f"{name}.{metric}"
                    if rel >= worst.get(label, (0.0, ""))[0]:
                        worst[label] = (rel, key)
        for k, v in totals.items():
            spent[k].append(v)
    load_after = os.getloadavg()
    n = len(pairs)
    print(f"old = {args.old_rev}, new = working tree; {n} pairs ({args.images}), {args.repeats} interleaved rounds, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; load average before "
          f"{load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print("| dialect | before pairs/s | after pairs/s | speed-up (median, min-max over rounds) | max rel. diff |")
    print("|---|---|---|---|---|")
    for name in dialects:
        old, new = spent[(name, "old")], spent[(name, "new")]
        ratios = [o / w for o, w in zip(old, new)]
        diff = max(v[0] for k, v in worst.items() if k.startswith(name + "."))
        print(f"| {name} | {n / statistics.median(old):.2f} | {n / statistics.median(new):.2f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | {diff:.1e} |")
    changed = {k: v for k, v in worst.items() if v[0] > 0}
    if changed:
        print("\nmetrics that differ: " + ", ".join(f"{k} {v[0]:.1e} ({v[1]})" for k, v in sorted(changed.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
