"""Time each metric dialect against a straightforward NumPy/SciPy implementation of the same kit definitions
(tests/metrics/kit_reference.py), side by side on the same real images, and record the per-metric agreement.

    python benchmarks/perf/bench_metrics.py --per-folder 1 --out benchmarks/perf/results_cpu.md
    python benchmarks/perf/bench_metrics.py --device cuda --throughput   # GPU pairs/s for the mmif dialect
    python benchmarks/perf/bench_metrics.py --device cuda --throughput --dialects vifb   # ... for vifb
    python benchmarks/perf/bench_metrics.py --pair --repeats 15          # the 20x speed target (CPU)

The real images come from ../shared/realdata (or $FUSION_BENCH_REALDATA); nothing is copied into the repo.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "metrics"))

import kit_reference as kr  # noqa: E402
from test_metrics_realdata import triples  # noqa: E402

from fusion_bench.metrics import get_dialect  # noqa: E402

REFS = {"mmif": kr.mmif_metrics, "vifb": kr.vifb_metrics, "tang": kr.tang_metrics}


def _t(x: np.ndarray, device: str) -> torch.Tensor:
    t = torch.from_numpy(x.astype(np.float64)) / 255
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    return t.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_side_by_side(dialects: list[str], per_folder: int, device: str, skip_ref: bool) -> str:
    chosen: list = []
    seen: dict[str, int] = defaultdict(int)
    for t in triples():
        folder = t[0].rsplit("/", 1)[0]
        if seen[folder] < per_folder:
            chosen.append(t)
            seen[folder] += 1
    mpx = sum(kr.load_rgb_or_gray(t[3]).shape[0] * kr.load_rgb_or_gray(t[3]).shape[1] for t in chosen) / 1e6
    lines = [f"Device: {device}; torch threads (= metric workers on CPU): {torch.get_num_threads()}; "
             f"{len(chosen)} real triples ({mpx:.1f} Mpx in all), {per_folder} per fused folder.\n"]
    for name in dialects:
        d = get_dialect(name)
        ref_time = ours_time = 0.0
        worst: dict[str, tuple[float, str]] = {}
        per_metric_ours: dict[str, float] = defaultdict(float)
        for key, pa, pb, pf in chosen:
            a, b, f = (kr.load_rgb_or_gray(p) for p in (pa, pb, pf))
            ta, tb, tf = _t(a, device), _t(b, device), _t(f, device)
            which = None
            if name == "tang" and f.shape[0] * f.shape[1] > 400_000:
                which = tuple(n for n in d.metric_names if n != "MS_SSIM")  # literal MEF reference: too much memory
            if not skip_ref:
                t0 = time.perf_counter()
                ref = REFS[name](a, b, f, which) if name != "mmif" else REFS[name](a, b, f)
                ref_time += time.perf_counter() - t0
            names = list(ref) if not skip_ref else list(d.metric_names)
            d.compute(ta, tb, tf, names)  # warm-up (first call per size)
            _sync(device)
            t0 = time.perf_counter()
            got = d.compute(ta, tb, tf, names)
            _sync(device)
            ours_time += time.perf_counter() - t0
            for n in names:
                t0 = time.perf_counter()
                d.compute(ta, tb, tf, [n])
                _sync(device)
                per_metric_ours[n] += time.perf_counter() - t0
                if skip_ref:
                    continue
                g, r = got[n].item(), ref[n]
                err = 0.0 if (math.isnan(g) and math.isnan(r)) or g == r else abs(g - r) / max(abs(r), 1e-12)
                if n not in worst or err > worst[n][0]:
                    worst[n] = (err, key)
        k = len(chosen)
        lines.append(f"### `{name}`\n")
        if not skip_ref:
            lines.append(f"NumPy/SciPy reference {ref_time / k:.3f} s/pair, fusion_bench {ours_time / k:.4f} s/pair "
                         f"-> **{ref_time / max(ours_time, 1e-9):.1f}x** faster.\n")
        else:
            lines.append(f"fusion_bench {ours_time / k:.4f} s/pair.\n")
        lines.append("| metric | ours s/pair (alone) | max rel. err vs reference | worst image |")
        lines.append("|---|---|---|---|")
        for n in per_metric_ours:
            e, where = worst.get(n, (float("nan"), ""))
            lines.append(f"| {n} | {per_metric_ours[n] / k:.4f} | {e:.1e} | {where} |")
        lines.append("")
    return "\n".join(lines)


def throughput_rate(device: str, batch: int, seconds: float, dialect: str = "mmif", height: int = 480,
                    width: int = 640) -> float:
    """Pairs per second of the full `dialect` on batches of `batch` random height x width pairs (a gray and a colour
    source, their rounded mean as the fused image) on `device`: one warm-up batch, then batches for `seconds` (at
    least one), CUDA synchronised."""
    d = get_dialect(dialect)
    g = torch.Generator().manual_seed(0)
    a = (torch.randint(0, 256, (batch, 1, height, width), generator=g) / 255.0).to(device)
    b = (torch.randint(0, 256, (batch, 3, height, width), generator=g) / 255.0).to(device)
    f = torch.round((a + b) / 2 * 255).div(255).to(device)
    d.compute(a, b, f)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        d.compute(a, b, f)
        n += batch
    _sync(device)
    return n / (time.perf_counter() - t0)


def throughput(device: str, batch: int, seconds: float, dialect: str = "mmif") -> str:
    rate = throughput_rate(device, batch, seconds, dialect)
    return f"{dialect} throughput on {device}, batch {batch} of 640x480 pairs: **{rate:.1f} pairs/s**\n"


def pair_speed(repeats: int, threads: tuple[int, ...], image: str = "VIFB/fused_SeAFusion/carLight") -> str:
    """Issue #3 target: the full mmif dialect vs the NumPy/SciPy port of the CDD evaluator on one 460x630 VIFB
    pair, interleaved in one process (reference, then ours at each worker count, repeated) so that the load
    of other jobs hits both alike; medians of the repeats."""
    key, pa, pb, pf = next(t for t in triples() if t[0] == image)
    a, b, f = (kr.load_rgb_or_gray(p) for p in (pa, pb, pf))
    ta, tb, tf = _t(a, "cpu"), _t(b, "cpu"), _t(f, "cpu")
    d = get_dialect("mmif")
    before = os.getloadavg()
    times: dict[str, list[float]] = defaultdict(list)
    saved = torch.get_num_threads()
    for n in threads:  # warm-up
        torch.set_num_threads(n)
        d.compute(ta, tb, tf)
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref = kr.mmif_metrics(a, b, f)
        times["reference"].append(time.perf_counter() - t0)
        for n in threads:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            got = d.compute(ta, tb, tf)
            times[f"ours, {n} worker(s)"].append(time.perf_counter() - t0)
    torch.set_num_threads(saved)
    after = os.getloadavg()
    worst = max(abs(got[k].item() - v) / max(abs(v), 1e-12) for k, v in ref.items())
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f"{key} ({a.shape[0]}x{a.shape[1]}), full mmif dialect ({len(ref)} metrics), {repeats} interleaved "
             f"repeats; load average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, after "
             f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}; {os.cpu_count()} CPUs; max rel. diff {worst:.1e}\n",
             "| run | median s/pair | min s/pair | speed-up vs reference (medians) |", "|---|---|---|---|"]
    for k, v in times.items():
        lines.append(f"| {k} | {med[k]:.4f} | {min(v):.4f} | {med['reference'] / med[k]:.1f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dialects", default="mmif,vifb,tang")
    p.add_argument("--per-folder", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads = metric workers on CPU (0: leave the default)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--throughput", action="store_true",
                   help="only the batch throughput of the first of --dialects (default mmif)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--pair", action="store_true", help="only the interleaved one-pair mmif speed comparison")
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--pair-threads", default="1,2", help="worker counts for --pair (metrics on N threads)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.throughput:
        text = throughput(args.device, args.batch, 10.0, args.dialects.split(",")[0])
    elif args.pair:
        text = pair_speed(args.repeats, tuple(int(n) for n in args.pair_threads.split(",")))
    else:
        text = run_side_by_side(args.dialects.split(","), args.per_folder, args.device, args.skip_reference)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
