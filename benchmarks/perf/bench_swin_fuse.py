"""SwinFusion fuse speed: the network of an older commit against the current one, same weights, interleaved.

    python benchmarks/perf/bench_swin_fuse.py                                  # 480x640, 1-channel (swinfusion)
    python benchmarks/perf/bench_swin_fuse.py --channels 3                     # ssvif's SwinFusion backbone (RGB)
    python benchmarks/perf/bench_swin_fuse.py --height 240 --width 320 --repeats 5 --device cuda

Loads `methods/swinfusion/model.py` as it was at `--old-rev` (git show) next to the working tree's, copies the
current network's weights (the authors' layout, random init; `--seed`) into the old one, then times
`net(x1, x2)` without gradients on the same random pair, old and new alternately (`--repeats` rounds after one
warm-up each), on `--threads` threads, and prints the per-round times (wall clock, and the process's CPU time,
which other load on a shared machine disturbs less), the median of the per-round ratios old/new,
and the largest absolute difference of the two outputs (float32). On CUDA the times are synchronised.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
BEFORE = "71fab58"  # main before the current attention code (materialised window attention)


def load_old_model(rev: str) -> types.ModuleType:
    """`methods/swinfusion/model.py` at git revision `rev`, as a module."""
    source = subprocess.run(["git", "show", f"{rev}:methods/swinfusion/model.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"swinfusion_model_{rev}")
    module.__file__ = f"{rev}:methods/swinfusion/model.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the repository's own code
    return module


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-rev", default=BEFORE)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from fusion_bench.methods.swinfusion.model import SwinFusionNet

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    old_module = load_old_model(args.old_rev)
    torch.manual_seed(args.seed)
    new = SwinFusionNet(args.channels, args.channels).eval().to(device)
    old = old_module.SwinFusionNet(args.channels, args.channels).eval().to(device)
    old.load_state_dict(new.state_dict())
    gen = torch.Generator().manual_seed(args.seed)
    x1, x2 = (torch.rand(args.batch, args.channels, args.height, args.width, generator=gen).to(device)
              for _ in range(2))
    with torch.no_grad():
        out_old, out_new = old(x1, x2), new(x1, x2)  # warm-up (and the outputs compared)
        diff = (out_old - out_new).abs().max().item()
        rows = []
        for _ in range(args.repeats):
            t_old = timed(lambda: old(x1, x2), device)
            t_new = timed(lambda: new(x1, x2), device)
            rows.append((t_old, t_new))
            print(f"wall: old {t_old[0]:8.3f} s  new {t_new[0]:8.3f} s  ratio {t_old[0] / t_new[0]:6.2f}   "
                  f"CPU: old {t_old[1]:8.3f} s  new {t_new[1]:8.3f} s  ratio {t_old[1] / t_new[1]:6.2f}", flush=True)
    print(f"SwinFusionNet({args.channels}, {args.channels}) {args.batch}x{args.height}x{args.width} on {device} "
          f"({args.threads} thread(s)), old = {args.old_rev}, {args.repeats} interleaved rounds; "
          f"max |old - new| = {diff:.2e}")
    for i, what in enumerate(("wall", "CPU (process time)")):
        ratios = [o[i] / n[i] for o, n in rows]
        new_median = statistics.median(n[i] for _, n in rows)
        print(f"  {what}: median old {statistics.median(o[i] for o, _ in rows):.3f} s, new {new_median:.3f} s "
              f"({args.batch / new_median:.2f} images/s); ratio old/new median {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
