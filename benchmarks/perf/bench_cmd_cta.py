"""CMD-CTA efficiency: the per-module size table (the paper's Table S3) and the time of one training step.

    python benchmarks/perf/bench_cmd_cta.py modules                     # params / GFLOPs per module, 256x256, CPU
    python benchmarks/perf/bench_cmd_cta.py step --device cuda          # one paper-preset training step, batch 16,
                                                                        # 256x256: chunked scan, SSD-style scan and
                                                                        # mamba-ssm's kernel (when installed)
    python benchmarks/perf/bench_cmd_cta.py step --device cuda --precision bf16 --scans chunked,cuda --repeats 5
    python benchmarks/perf/bench_cmd_cta.py fuse --device cuda --height 1024 --width 1280   # ms per LLVIP-size pair

`modules`: parameters of every top-level module and the FLOPs torch.utils.flop_counter counts for one fuse of a
batch-1 pair (the counter sees convolutions, linear layers, einsum and matmul; the selective scan is element-wise
work and is not counted, like fvcore/THOP do not count mamba-ssm's kernel), the prototype head's FLOPs from the
training forward (it does not run in `fuse`), and the scan's analytic FLOPs (VMamba's flops_selective_scan_fn:
9 B L D N + B D L per scan). `step`: forward + backward + AdamW step of the `paper` preset (all losses: fusion,
orthogonality, prototypes, three contrastive levels) on random data, median of `--repeats` after `--warmup`
steps, with the CUDA peak memory. Nothing is written unless --out is given.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from fusion_bench.base.mixture import TASK_ID
from fusion_bench.methods.cmd_cta.model import PATCH
from fusion_bench.methods.cmd_cta.module import CMDCTAFusion
from fusion_bench.ops import mamba_available, selective_scan_flops

CONFIG = Path(__file__).resolve().parents[2] / "methods" / "cmd_cta" / "config.yaml"
PAPER_S3 = {  # the paper's Table S3 (fvcore, batch 1, 256x256): params (M), GFLOPs
    "Mamba branch": (0.280, 4.12), "Swin branch": (0.240, 3.58), "patch embed + merge": (None, None),
    "decomposition (projector + Q)": (0.080, 0.48), "prototype head": (0.015, 0.042), "GNN": (0.035, 0.27),
    "selective aggregation": (0.022, 0.15), "decoder": (0.105, 0.798), "contrastive heads (g, w)": (None, None),
}


def build(preset: str = "paper", **overrides) -> CMDCTAFusion:
    section = yaml.safe_load(CONFIG.read_text())["cmd_cta"][preset]
    return CMDCTAFusion(modalities=("ir", "vis"), **{**section["model"], **overrides}, **section["optim"])


def _params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def modules_table(height: int, width: int) -> str:
    module = build().eval()
    net = module.net
    y = torch.rand(1, 1, height, width)
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        net(y, y)
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    train_counter = FlopCounterMode(display=False, depth=None)
    with train_counter, torch.no_grad():  # the losses' forward: the prototype head and the contrastive heads
        module.compute_losses({"ir": y, "vis": y}, training=False)
    train_flops = {k: sum(v.values()) for k, v in train_counter.get_flop_counts().items()}

    def f(name: str, table: dict[str, int] = flops) -> float:
        return table.get(name if name[0].isupper() else f"CMDCTANet.{name}", 0) / 1e9

    enc, dec = net.encoder, net.decomposition
    gnn_flops = f("decomposition.gnn")
    rows = {
        "Mamba branch": (_params(enc.mamba), f("encoder.mamba")),
        "Swin branch": (_params(enc.swin), f("encoder.swin")),
        "patch embed + merge": (_params(enc.embed) + _params(enc.merge), f("encoder.embed") + f("encoder.merge")),
        "decomposition (projector + Q)": (_params(dec) - _params(dec.gnn), f("decomposition") - gnn_flops),
        "prototype head": (_params(net.task_head), f("TaskHead", train_flops)),
        "GNN": (_params(dec.gnn), gnn_flops),
        "selective aggregation": (_params(net.aggregation), f("aggregation")),
        "decoder": (_params(net.decoder), f("decoder")),
        "contrastive heads (g, w)": (_params(net.contrast), f("ContrastHeads", train_flops)),
    }
    tokens = (height + (-height) % net.multiple) // PATCH * ((width + (-width) % net.multiple) // PATCH)
    ss2d = enc.mamba[0].ss2d if enc.mamba is not None else None
    scan = 0.0
    if ss2d is not None:  # 2 modalities per fuse, one scan of K x d_inner channels per block
        scan = len(enc.mamba) * selective_scan_flops(2, ss2d.directions * ss2d.d_inner, tokens, ss2d.d_state) / 1e9
    lines = [f"params and GFLOPs at {height}x{width}, batch 1 (GFLOPs: torch.utils.flop_counter, one fuse; the "
             "prototype and contrastive heads, which do not run in a fuse: the loss forward)", "",
             "| module | paper params (M) | paper GFLOPs | ours params (M) | ours GFLOPs |", "|---|---|---|---|---|"]
    for name, (p, g) in rows.items():
        paper_p, paper_g = PAPER_S3[name]
        lines.append(f"| {name} | {paper_p if paper_p is not None else '-'} | {paper_g if paper_g is not None else '-'}"
                     f" | {p / 1e6:.3f} | {g:.3f} |")
    total_p = _params(module)
    total_g = flops.get("Global", 0) / 1e9
    lines.append(f"| **total** (fuse) | 0.777 | 9.420 | {total_p / 1e6:.3f} | {total_g:.3f} |")
    lines.append("")
    lines.append(f"selective scan, not counted above (analytic, 9 B L D N + B D L per block): {scan:.3f} GFLOPs "
                 f"-> {total_g + scan:.3f} GFLOPs with it")
    return "\n".join(lines)


def _batch(batch: int, size: int, device: torch.device, tasks: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"ir": torch.rand(batch, 1, size, size, generator=g).to(device),
            "vis": torch.rand(batch, 3, size, size, generator=g).to(device),
            TASK_ID: (torch.arange(batch) % tasks).to(device)}


def time_steps(scan: str, device: torch.device, batch: int, size: int, precision: str, warmup: int,
               repeats: int) -> tuple[float, float]:
    """Median ms of one training step and the peak CUDA memory (MB; nan on CPU)."""
    impl, intra = {"chunked": ("chunked", "loop"), "parallel": ("chunked", "parallel"), "ref": ("ref", "loop"),
                   "cuda": ("cuda", "loop")}[scan]
    torch.manual_seed(0)
    module = build(scan_impl=impl, scan_intra=intra, num_tasks=3, proto_warmup_steps=1).to(device).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-4, weight_decay=0.05)
    data = _batch(batch, size, device, 3)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = module.compute_losses(data, training=True)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak


def time_fuse(scan: str, device: torch.device, height: int, width: int, repeats: int) -> float:
    impl, intra = {"chunked": ("chunked", "loop"), "parallel": ("chunked", "parallel"), "ref": ("ref", "loop"),
                   "cuda": ("cuda", "loop")}[scan]
    module = build(scan_impl=impl, scan_intra=intra).to(device).eval()
    x1, x2 = torch.rand(1, 1, height, width, device=device), torch.rand(1, 3, height, width, device=device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            module.fuse(x1, x2)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("modules", "step", "fuse"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scans", default=None, help="comma list of chunked, parallel, ref, cuda (default: chunked, "
                                                      "parallel, and cuda when mamba-ssm is installed)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.mode == "modules":
        text = modules_table(args.height, args.width)
    else:
        scans = args.scans.split(",") if args.scans else ["chunked", "parallel"] + (["cuda"] if mamba_available()
                                                                                   else [])
        lines = [f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
                 f"torch {torch.__version__}, mamba-ssm {'yes' if mamba_available() else 'no'}"]
        for scan in scans:
            if args.mode == "step":
                ms, peak = time_steps(scan, device, args.batch, args.size, args.precision, args.warmup, args.repeats)
                lines.append(f"train step, scan {scan}, batch {args.batch}, {args.size}x{args.size}, {args.precision}: "
                             f"{ms:.1f} ms (median of {args.repeats}), peak {peak:.0f} MB")
            else:
                ms = time_fuse(scan, device, args.height, args.width, args.repeats)
                lines.append(f"fuse, scan {scan}, {args.height}x{args.width}: {ms:.1f} ms per pair")
            print(lines[-1], flush=True)
        text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
