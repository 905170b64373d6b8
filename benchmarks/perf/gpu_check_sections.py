"""The measuring side of gpu_check.py: one function per section, each run in its own worker process.

    python benchmarks/perf/gpu_check_sections.py --section train --settings '{"device": "cuda"}'

A worker prints one JSON line per item on its stdout, prefixed with MARK: first the plan (the item names), then a
row per item (status PASS | FAIL | SKIP | INFO, the measured values, a note, the seconds it took). An item that
raises is a FAIL row with its first error line and the loop goes on; after a fatal CUDA error the worker exits with
EXIT_RESTART so that gpu_check.py restarts it after the failed item. gpu_check.py owns the budgets, the reference
numbers and the Markdown table; this file owns what is measured and how, through the project's own code paths:

- install: `pip install -c constraints.txt -e .[dev]` and the `mamba` extra of pyproject.toml with
  --no-build-isolation (only when asked; time-boxed);
- env: the card, torch/CUDA/cuDNN, Lightning and the optional packages, mamba-ssm;
- scan: `fusion_bench.ops.selective_scan` back ends (mamba-ssm's kernel, the chunked scan in both intra-chunk
  modes) against the reference loop, float32 and bf16, forward and backward, at CMD-CTA's paper size;
- train: `bench_train_step.measure` (one training step of a preset on random data) per paper preset, in its
  configured precision, in `bf16-auto` (resolved as the runner does) and in `bf16-auto` with channels last;
- fuse: methods built by `perf_common.build_method` (registry + `load_method_config`), timed by
  `fusion_bench.benchmark.profiling.measure_latency_ms`;
- metrics: `bench_metrics.throughput_rate` per dialect of `fusion_bench.metrics`;
- ssvif16, av: `fusion-bench train` through `fusion_bench.cli.main`; ddp: `python -m fusion_bench train --devices 2`;
- pytest: `python -m pytest -m gpu`, its summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PERF = Path(__file__).resolve().parent
MARK = "@@gpu_check "  # prefix of a worker's result lines on its stdout
EXIT_RESTART = 3  # a worker's exit code after a fatal CUDA error: restart it after the reported item

PAPER_METHODS = ("cfi", "swinfusion", "ssvif", "amdanet", "seafusion", "cmd_cta")  # the targets' methods first
TRAIN_VARIANTS = ("config", "bf16-auto", "bf16-auto+cl")
# train.precision -> bench_train_step's --precision (autocast dtype); other values are reported as skipped
PRECISION_TO_BENCH = {"32-true": "32", "32": "32", 32: "32", "bf16-mixed": "bf16", "bf16": "bf16"}


@dataclass
class Settings:
    """What the workers measure, at which sizes (GPU defaults, or tiny CPU sizes for --dry-run)."""

    dry_run: bool = False
    device: str = "cuda"
    scratch: str = ""
    python: str = sys.executable
    inject: dict[str, str] = field(default_factory=dict)  # section -> "fail" | "hang" | "crash" (tests)
    skip_items: list[str] = field(default_factory=list)
    install: bool = False
    install_mamba: bool = False
    install_timeout: float = 300.0
    # scan: CMD-CTA's paper preset (batch 16 x 2 modalities, 4 directions x d_inner 96, d_state 16, 64x64 tokens)
    scan: dict[str, int] = field(default_factory=lambda: {"batch": 32, "groups": 4, "d_inner": 96, "d_state": 16,
                                                          "length": 4096, "chunk": 32, "repeats": 3})
    train_preset: str = "paper"
    train_methods: list[str] = field(default_factory=lambda: list(PAPER_METHODS))
    train_variants: list[str] = field(default_factory=lambda: list(TRAIN_VARIANTS))
    train_batch: int | None = None  # None: the preset's
    train_crop: list[int] | None = None
    train_warmup: int = 2
    train_steps: int = 3
    fuse_preset: str = "paper"
    fuse_methods: list[str] | None = None  # None: every registered image-fusion method
    fuse_size: list[int] = field(default_factory=lambda: [480, 640])
    fuse_warmup: int = 2
    fuse_repeats: int = 10
    metrics_dialects: list[str] | None = None  # None: every dialect
    metrics_batch: int = 32
    metrics_size: list[int] = field(default_factory=lambda: [480, 640])
    metrics_seconds: float = 3.0
    ssvif_args: list[str] = field(default_factory=lambda: [
        "--preset", "paper", "--set", "train.precision=16-mixed", "model.stage1_max_periods=null",
        "model.stage1_steps=2", "model.early_stopping=null", "train.max_steps=5", "train.log_every_n_steps=1",
        "train.limit_val_batches=1"])
    av_methods: list[str] | None = None  # None: every registered classification method
    av_steps: int = 3
    pytest_args: list[str] = field(default_factory=lambda: ["-m", "gpu"])

    @classmethod
    def dry(cls, **kw: Any) -> Settings:
        return cls(dry_run=True, device="cpu", scan={"batch": 2, "groups": 2, "d_inner": 4, "d_state": 4,
                                                      "length": 64, "chunk": 16, "repeats": 1},
                   train_preset="smoke", train_batch=2, train_crop=[32, 32], train_warmup=1, train_steps=1,
                   fuse_preset="smoke", fuse_size=[32, 48], fuse_warmup=0, fuse_repeats=1, metrics_batch=1,
                   metrics_size=[48, 64], metrics_seconds=0.0,
                   ssvif_args=["--preset", "smoke", "--set", "train.precision=16-mixed", "model.stage1_steps=1",
                               "train.max_steps=3", "train.log_every_n_steps=1", "train.limit_val_batches=1"],
                   av_steps=2, pytest_args=["-m", "gpu", "tests/test_selective_scan.py"], **kw)


@dataclass
class Outcome:
    """One item's result: status PASS | FAIL | SKIP | INFO, the measured values, a note."""

    status: str = "PASS"
    values: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def first_line(err: BaseException | str) -> str:
    text = str(err).strip().splitlines()
    head = text[0] if text else ""
    return f"{type(err).__name__}: {head}" if isinstance(err, BaseException) else head


def emit(record: dict[str, Any]) -> None:
    print(MARK + json.dumps(record, default=str), flush=True)


def _fatal_cuda(err: BaseException) -> bool:
    text = str(err)
    return any(s in text for s in ("CUDA error", "illegal memory access", "device-side assert", "cudaError"))


def run_items(section: str, items: list[tuple[str, Callable[[], Outcome]]], cfg: Settings) -> None:
    """Announce the items, then run each: a failure is a FAIL row and the loop goes on (a fatal CUDA error exits
    with EXIT_RESTART, so the parent restarts this section after the item)."""
    emit({"plan": [name for name, _ in items]})
    for name, fn in items:
        if name in cfg.skip_items:
            continue
        if cfg.inject.get(section) == "crash" and name == items[0][0]:
            os._exit(139)  # testing: the worker dies inside its first item, as a segfaulting kernel would
        start = time.perf_counter()
        fatal = False
        try:
            out = fn()
        except Exception as err:  # noqa: BLE001 - every failure becomes a row
            out = Outcome("FAIL", note=first_line(err))
            fatal = _fatal_cuda(err)
            del err
        emit({"item": name, "status": out.status, "values": out.values, "note": out.note,
              "seconds": round(time.perf_counter() - start, 2)})
        _release(cfg)
        if fatal:
            sys.stdout.flush()
            os._exit(EXIT_RESTART)


def _release(cfg: Settings) -> None:
    gc.collect()
    if cfg.device.startswith("cuda"):
        import torch

        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


def _perf_import(name: str) -> Any:
    if str(PERF) not in sys.path:
        sys.path.insert(0, str(PERF))
    return __import__(name)


def _no_cuda(cfg: Settings) -> str | None:
    import torch

    if not cfg.device.startswith("cuda"):
        return "skipped: no CUDA (dry run on the CPU)"
    if not torch.cuda.is_available():
        return "skipped: no CUDA"
    return None


def section_env(cfg: Settings) -> None:
    def info() -> Outcome:
        import platform
        from importlib import metadata

        import torch

        values: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                                  "cuda_runtime": torch.version.cuda or "-",
                                  "cuda_available": torch.cuda.is_available(), "gpus": torch.cuda.device_count(),
                                  "cpus": os.cpu_count()}
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            values.update(card=torch.cuda.get_device_name(0), capability=f"{props.major}.{props.minor}",
                          memory_gb=round(props.total_memory / 1e9, 1),
                          bf16=torch.cuda.is_bf16_supported(including_emulation=False),
                          cudnn=torch.backends.cudnn.version())
            with contextlib.suppress(Exception):
                values["driver"] = subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                    text=True, timeout=20).stdout.strip().splitlines()[0]
        else:
            values["card"] = "none (CPU)"
        for package in ("lightning", "transformers", "ultralytics"):
            try:
                values[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                values[package] = "not installed"
        try:
            import mamba_ssm

            from fusion_bench.ops import mamba_available

            values["mamba_ssm"] = f"{mamba_ssm.__version__} (kernel usable: {mamba_available()})"
        except Exception as err:  # noqa: BLE001
            values["mamba_ssm"] = f"not installed: kernel comparison skipped ({first_line(err)})"
        with contextlib.suppress(Exception):
            values["git"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                           text=True, timeout=20).stdout.strip() or "no git"
        return Outcome("INFO", values)

    run_items("env", [("env", info)], cfg)


def _pip(cfg: Settings, args: list[str], env: dict[str, str] | None = None) -> Outcome:
    cmd = [cfg.python, "-m", "pip", "install", "--disable-pip-version-check", "--retries", "0", "--timeout", "15",
           *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cfg.install_timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return Outcome("FAIL", {"command": shlex.join(cmd)},
                       f"did not finish in {cfg.install_timeout:.0f} s (--install-timeout)")
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    values = {"command": shlex.join(cmd), "pip_seconds": round(time.perf_counter() - start, 1)}
    if done.returncode:
        return Outcome("FAIL", values, (errors or lines or ["pip failed"])[0].strip())
    return Outcome("PASS", values, lines[-1].strip() if lines else "")


def _pyproject_extra(name: str) -> list[str]:
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib

        return list(tomllib.loads(text)["project"]["optional-dependencies"][name])
    except ImportError:  # Python 3.10
        found = re.search(rf"^{name}\s*=\s*\[(.*?)\]", text, re.MULTILINE)
        return re.findall(r'"([^"]+)"', found.group(1)) if found else []


def section_install(cfg: Settings) -> None:
    def project() -> Outcome:
        if not cfg.install:
            return Outcome("SKIP", note="not requested (--install)")
        return _pip(cfg, ["-c", "constraints.txt", "-e", ".[dev]"])

    def mamba() -> Outcome:
        if not cfg.install_mamba:
            return Outcome("SKIP", note="not requested (--install-mamba)")
        probe = subprocess.run([cfg.python, "-c", "import mamba_ssm; print(mamba_ssm.__version__)"],
                               capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return Outcome("PASS", {"mamba_ssm": probe.stdout.strip()}, "already installed")
        # the `mamba` extra of pyproject.toml; --no-build-isolation: build against the installed torch
        out = _pip(cfg, ["--no-build-isolation", *_pyproject_extra("mamba")],
                   env={"MAX_JOBS": str(os.cpu_count() or 4)})
        if out.status == "FAIL":
            out.note = f"mamba-ssm not installed ({out.note}): kernel comparison skipped"
        return out

    run_items("install", [("project", project), ("mamba-ssm", mamba)], cfg)


def section_scan(cfg: Settings) -> None:
    import torch

    from fusion_bench.ops import mamba_available, selective_scan

    dev = torch.device(cfg.device)
    s = cfg.scan
    dim = s["groups"] * s["d_inner"]
    gen = torch.Generator().manual_seed(0)
    base = {  # mamba-ssm's test distributions: A = -0.5 U, delta = 0.5 U, delta_bias = 0.5 U
        "u": torch.randn(s["batch"], dim, s["length"], generator=gen),
        "delta": 0.5 * torch.rand(s["batch"], dim, s["length"], generator=gen),
        "A": -0.5 * torch.rand(dim, s["d_state"], generator=gen),
        "B": torch.randn(s["batch"], s["groups"], s["d_state"], s["length"], generator=gen),
        "C": torch.randn(s["batch"], s["groups"], s["d_state"], s["length"], generator=gen),
        "D": torch.randn(dim, generator=gen),
        "delta_bias": 0.5 * torch.rand(dim, generator=gen),
    }
    grad_out = torch.randn(s["batch"], dim, s["length"], generator=gen).to(dev)
    low = ("u", "delta", "B", "C")  # in the compute dtype; A, D, delta_bias stay float32 (as CMD-CTA keeps them)

    def inputs(dtype: torch.dtype, as_float: bool) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in base.items():
            v = v.to(dev, dtype if k in low else torch.float32)
            out[k] = (v.float() if as_float else v).detach().requires_grad_()
        return out

    def run(impl: str, intra: str, t: dict[str, torch.Tensor]) -> torch.Tensor:
        return selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], delta_bias=t["delta_bias"],
                              delta_softplus=True, impl=impl, intra=intra, chunk=s["chunk"])

    def timed(fn: Callable[[], Any]) -> float:
        times = []
        for i in range(1 + s["repeats"]):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i:
                times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    def forward_backward(impl: str, intra: str, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        for v in t.values():
            v.grad = None
        y = run(impl, intra, t)
        y.backward(grad_out.to(y.dtype))
        return y.detach().float(), {k: v.grad.float() for k, v in t.items()}

    oracle: dict[str, tuple[torch.Tensor, dict]] = {}

    def item(impl: str, intra: str, dtype: torch.dtype) -> Callable[[], Outcome]:
        def measure() -> Outcome:
            if impl == "cuda":
                skip = _no_cuda(cfg) or (None if mamba_available() else
                                         "mamba-ssm not installed: kernel comparison skipped")
                if skip:
                    return Outcome("SKIP", note=skip)
            name = str(dtype).replace("torch.", "")
            if name not in oracle:  # the reference loop in float32 on the same (rounded) inputs
                oracle[name] = forward_backward("ref", "loop", inputs(dtype, as_float=True))
            y_ref, g_ref = oracle[name]
            t = inputs(dtype, as_float=False)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            y, grads = forward_backward(impl, intra, t)
            peak = torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None
            with torch.no_grad():
                fwd_ms = timed(lambda: run(impl, intra, t))
            fb_ms = timed(lambda: forward_backward(impl, intra, t))

            def rel(a: torch.Tensor, b: torch.Tensor) -> float:
                return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

            errs = {k: rel(grads[k], g_ref[k]) for k in grads}
            worst = max(errs, key=errs.get)
            values = {"dtype": name, "shape": f"{s['batch']}x{dim}x{s['length']}, N {s['d_state']}",
                      "forward_ms": fwd_ms, "fwd_bwd_ms": fb_ms, "peak_gb": peak}
            if impl == "ref":
                return Outcome("INFO", values, "the reference (float32 loop): the errors of the other rows are to it")
            tol = 5e-3 if dtype == torch.float32 else 3e-2
            values.update(y_err=rel(y, y_ref), grad_err=errs[worst], worst_grad=worst, tolerance=tol)
            ok = values["y_err"] <= tol and errs[worst] <= tol
            return Outcome("PASS" if ok else "FAIL", values,
                           "" if ok else f"max error above {tol:g} (normalised by the reference's max |value|)")

        return measure

    items = []
    for dtype in (torch.float32, torch.bfloat16):
        tag = str(dtype).replace("torch.", "")
        items += [(f"ref loop {tag}", item("ref", "loop", dtype)),
                  (f"chunked loop {tag}", item("chunked", "loop", dtype)),
                  (f"chunked parallel {tag}", item("chunked", "parallel", dtype)),
                  (f"mamba-ssm kernel {tag}", item("cuda", "loop", dtype))]
    run_items("scan", items, cfg)


def _bf16_auto(cfg: Settings) -> str:
    """What train.precision=bf16-auto resolves to here (the runner's own rule,
    fusion_bench.benchmark.trainer_settings.resolve_precision), as bench_train_step's precision."""
    import torch

    from fusion_bench.benchmark.trainer_settings import resolve_precision

    device = torch.device(cfg.device if cfg.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    return "bf16" if resolve_precision("bf16-auto", device, "gpu_check") == "bf16-mixed" else "32"


def section_train(cfg: Settings) -> None:
    bench = _perf_import("bench_train_step")
    from fusion_bench.base.method import load_method_config
    from fusion_bench.registry import get_method

    done: dict[tuple[str, str, bool], dict[str, Any]] = {}

    def item(method: str, variant: str) -> Callable[[], Outcome]:
        def measure() -> Outcome:
            configured = load_method_config(get_method(method), method, cfg.train_preset)["train"].get(
                "precision", "32-true")
            if variant == "config":
                precision = PRECISION_TO_BENCH.get(configured)
                if precision is None:
                    return Outcome("SKIP", {"method": method, "variant": variant},
                                   f"train.precision {configured!r}: not measured by bench_train_step")
            else:
                precision = _bf16_auto(cfg)
            cl = variant.endswith("+cl")
            key = (method, precision, cl)
            same = key in done
            if not same:
                crop = tuple(cfg.train_crop) if cfg.train_crop else None
                done[key] = bench.measure(method, cfg.train_preset, cfg.device, cfg.train_batch, crop, precision, cl,
                                          False, cfg.train_warmup, cfg.train_steps)
            r = done[key]
            values = {"method": method, "variant": variant, "precision": "bf16-mixed" if precision == "bf16" else
                      "32-true", "channels_last": cl, "batch": r["batch"], "crop": "x".join(map(str, r["crop"])),
                      "s_per_step": r["s_per_step"], "images_per_s": r["images_per_s"], "peak_gb": r["peak_gpu_mem_gb"],
                      "loss": r["loss"]}
            if not math.isfinite(r["loss"]):
                return Outcome("FAIL", values, f"loss is {r['loss']}")
            return Outcome("PASS", values, "same run as an earlier row (same precision and layout)" if same else "")

        return measure

    items = [(f"{m} {v}", item(m, v)) for v in cfg.train_variants for m in cfg.train_methods]
    run_items("train", items, cfg)


def _image_methods() -> list[str]:
    from fusion_bench.base.method import FusionMethod
    from fusion_bench.registry import get_method, names

    return [n for n in names("method") if issubclass(get_method(n), FusionMethod)]


def _av_methods() -> list[str]:
    from fusion_bench.base.method import FusionMethod
    from fusion_bench.registry import get_method, names

    return [n for n in names("method") if not issubclass(get_method(n), FusionMethod)]


def section_fuse(cfg: Settings) -> None:
    import torch

    from fusion_bench.benchmark.profiling import fusion_inputs, measure_latency_ms

    build_method = _perf_import("perf_common").build_method
    dev = torch.device(cfg.device)
    height, width = cfg.fuse_size

    def item(name: str) -> Callable[[], Outcome]:
        def measure() -> Outcome:
            method, _ = build_method(name, cfg.fuse_preset)
            method = method.to(dev).eval()
            x1, x2 = fusion_inputs((1, 3), height, width, dev)  # ir (gray), vis (colour), as the suite's batches
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            with torch.no_grad():
                ms = measure_latency_ms(lambda: method.fuse(x1, x2), dev, cfg.fuse_warmup, cfg.fuse_repeats)
            values = {"method": name, "size": f"{height}x{width}", "ms_per_image": ms, "images_per_s": 1000 / ms,
                      "peak_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None,
                      "params_m": sum(p.numel() for p in method.parameters()) / 1e6}
            return Outcome("PASS", values)

        return measure

    methods = cfg.fuse_methods or sorted(_image_methods(), key=lambda n: n != "swinfusion")  # the target's first
    run_items("fuse", [(n, item(n)) for n in methods], cfg)


def section_metrics(cfg: Settings) -> None:
    bench = _perf_import("bench_metrics")
    from fusion_bench.metrics import DIALECTS

    height, width = cfg.metrics_size

    def item(dialect: str) -> Callable[[], Outcome]:
        def measure() -> Outcome:
            rate = bench.throughput_rate(cfg.device, cfg.metrics_batch, cfg.metrics_seconds, dialect, height, width)
            values = {"dialect": dialect, "batch": cfg.metrics_batch, "size": f"{height}x{width}", "pairs_per_s": rate}
            return Outcome("PASS", values)

        return measure

    dialects = cfg.metrics_dialects or sorted(DIALECTS, key=lambda d: d != "vifb")  # the target's first
    run_items("metrics", [(d, item(d)) for d in dialects], cfg)


def _cli_train(cfg: Settings, method: str, dataset: str, args: list[str]) -> tuple[int, float, Path, str]:
    """`fusion-bench train` in this process: (exit code, seconds, the weights path, the last output line)."""
    from fusion_bench.cli import main

    out = Path(cfg.scratch) / f"{method}-{dataset}" / "weights.pt"
    argv = ["train", "--method", method, "--dataset", dataset, "--device", cfg.device, "--out", str(out),
            "--overwrite", "--no-progress", *args]
    buffer = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(buffer):
        code = main(argv)
    lines = [ln for ln in buffer.getvalue().splitlines() if ln.strip()]
    return code, time.perf_counter() - start, out, lines[-1] if lines else ""


def section_ssvif16(cfg: Settings) -> None:
    def measure() -> Outcome:
        code, seconds, out, last = _cli_train(cfg, "ssvif", "synthetic-ivif", cfg.ssvif_args)
        values: dict[str, Any] = {"command": "fusion-bench train --method ssvif " + shlex.join(cfg.ssvif_args),
                                  "train_s": seconds}
        if code:
            return Outcome("FAIL", values, f"exit code {code}: {last}")
        logs = sorted(out.with_suffix("").rglob("metrics.csv"))
        if not logs:
            return Outcome("FAIL", values, f"no metrics.csv under {out.with_suffix('')}")
        import csv

        rows = [r for r in csv.DictReader(logs[-1].open()) if r.get("train/stage")]
        stages = [int(float(r["train/stage"])) for r in rows]
        losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
        values.update(steps_logged=len(rows), stages="".join(map(str, stages)),
                      last_loss=losses[-1] if losses else None)
        if 1 not in stages or 2 not in stages:
            return Outcome("FAIL", values, "Stage II was not reached")
        if not all(math.isfinite(v) for v in losses):
            return Outcome("FAIL", values, "a non-finite loss")
        note = "" if cfg.device.startswith("cuda") else "CPU: Lightning runs 16-mixed as bf16-mixed"
        return Outcome("PASS", values, note)

    run_items("ssvif16", [("ssvif stage I -> II, 16-mixed", measure)], cfg)


def section_av(cfg: Settings) -> None:
    def item(method: str) -> Callable[[], Outcome]:
        def measure() -> Outcome:
            code, seconds, _, last = _cli_train(cfg, method, "synthetic-av", [
                "--preset", "smoke", "--set", f"train.max_steps={cfg.av_steps}", "train.limit_val_batches=1"])
            values = {"method": method, "steps": cfg.av_steps, "train_s": seconds}
            return Outcome("FAIL", values, f"exit code {code}: {last}") if code else Outcome("PASS", values)

        return measure

    run_items("av", [(m, item(m)) for m in (cfg.av_methods or _av_methods())], cfg)


def section_ddp(cfg: Settings) -> None:
    def measure() -> Outcome:
        import torch

        skip = _no_cuda(cfg)
        if skip:
            return Outcome("SKIP", note=skip)
        if torch.cuda.device_count() < 2:
            return Outcome("SKIP", note=f"skipped: needs 2 GPUs, found {torch.cuda.device_count()}")
        out = Path(cfg.scratch) / "ddp" / "weights.pt"
        cmd = [cfg.python, "-m", "fusion_bench", "train", "--method", "fusion_cnn", "--dataset", "synthetic-ivif",
               "--preset", "smoke", "--device", "cuda", "--devices", "2", "--out", str(out), "--overwrite",
               "--no-progress", "--set", "train.max_steps=5"]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        values = {"command": shlex.join(cmd[2:]), "train_s": time.perf_counter() - start}
        if done.returncode:
            return Outcome("FAIL", values, f"exit code {done.returncode}: {lines[-1] if lines else ''}")
        return Outcome("PASS", values, lines[-1] if lines else "")

    run_items("ddp", [("fusion_cnn, 2 processes", measure)], cfg)


def section_pytest(cfg: Settings) -> None:
    def measure() -> Outcome:
        cmd = [cfg.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
               str(Path(cfg.scratch) / "pytest"), *cfg.pytest_args]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        summary = next((ln.strip("= ") for ln in reversed(lines) if re.search(
            r"\b(passed|failed|skipped|error|errors|deselected|no tests ran)\b", ln)), lines[-1] if lines else "")
        failed = [ln.split(" - ")[0].replace("FAILED ", "").replace("ERROR ", "") for ln in lines
                  if ln.startswith(("FAILED ", "ERROR "))]
        values = {"command": "pytest " + shlex.join(cfg.pytest_args), "summary": summary}
        if failed:
            values["failed"] = ", ".join(failed[:8]) + (f" (+{len(failed) - 8})" if len(failed) > 8 else "")
        if done.returncode == 5:
            return Outcome("SKIP", values, "no tests collected")
        return Outcome("FAIL" if done.returncode else "PASS", values, failed[0] if failed else "")

    run_items("pytest", [("pytest", measure)], cfg)


WORKERS: dict[str, Callable[[Settings], None]] = {  # in the order of a run
    "install": section_install, "env": section_env, "scan": section_scan, "train": section_train,
    "fuse": section_fuse, "metrics": section_metrics, "ssvif16": section_ssvif16, "av": section_av,
    "ddp": section_ddp, "pytest": section_pytest,
}


def worker_main(section: str, cfg: Settings) -> int:
    mode = cfg.inject.get(section)
    try:
        if mode == "hang":
            time.sleep(10**6)
        if mode == "fail":
            raise RuntimeError(f"injected failure (--inject {section}=fail)")
        WORKERS[section](cfg)
    except Exception as err:  # noqa: BLE001 - the section could not start (an import, a setting): one FAIL row
        emit({"item": "(section)", "status": "FAIL", "values": {}, "note": first_line(err), "seconds": 0})
        return 1
    return 0


SECTIONS = tuple(WORKERS)  # the order of a run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--section", required=True, choices=SECTIONS)
    p.add_argument("--settings", default="{}", help="Settings as JSON (gpu_check.py passes them)")
    args = p.parse_args(argv)
    return worker_main(args.section, Settings(**json.loads(args.settings)))


if __name__ == "__main__":
    raise SystemExit(main())
