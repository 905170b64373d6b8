"""The GPU check: every CUDA path written since the last GPU measurement, in one command, one table.

    python benchmarks/perf/gpu_check.py                          # on a CUDA machine: -> $OUT/gpu_check.md
    python benchmarks/perf/gpu_check.py --install-mamba          # first try to install mamba-ssm (time-boxed)
    python benchmarks/perf/gpu_check.py --sections train,fuse    # some sections only (env always runs)
    python benchmarks/perf/gpu_check.py --dry-run --out /tmp/gpu_check.md   # CPU: every section at tiny sizes

This file owns the orchestration: which sections run, in which order, under which time budget, the reference
numbers and targets, and the Markdown table. What each section measures, through the project's own code paths
(`pytest -m gpu`, `fusion_bench.ops`, the scripts of benchmarks/perf, the registry, `fusion-bench train`), is in
gpu_check_sections.py.

Each section runs in its own worker process under its own time budget, within the overall --budget; a worker reports
one JSON line per item, which this process writes to the Markdown file at once (and to a .jsonl file beside it at the
end; every worker's output goes to a .log file beside it), so a timeout or a crash still leaves every finished row. A
failing item is recorded as FAIL with its first error line and the section goes on; a fatal CUDA error or a crash
restarts the worker after the failed item; a section over its budget is killed and its remaining items are recorded
as TIMEOUT; later sections still run. The exit code is 1 when a section failed or timed out.

The previous GPU table (H200, torch 2.11, before the activation-memory, Swin and metric-kernel changes; the numbers
quoted in docs/performance.md) is encoded below (REFERENCE): the rows get reference and ratio columns, and a
targets table says whether each target is met on the card that ran.

--dry-run runs every section on the CPU with the smoke presets and tiny sizes (CUDA-only parts say "skipped: no
CUDA"), in one to two minutes: it checks the plumbing; its numbers are not measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_sections import (  # noqa: E402
    EXIT_RESTART,
    MARK,
    PAPER_METHODS,
    ROOT,
    SECTIONS,
    TRAIN_VARIANTS,
    Settings,
)

WORKER = Path(__file__).resolve().parent / "gpu_check_sections.py"
TITLES = {
    "install": "installs (--install, --install-mamba)",
    "env": "machine and versions",
    "scan": "selective scan: mamba-ssm kernel and the chunked scan vs the reference loop (forward + backward)",
    "train": "one training step of every paper preset (configured precision, bf16-auto, bf16-auto + channels last)",
    "fuse": "fuse throughput, batch 1, every image method",
    "metrics": "metrics throughput per dialect",
    "ssvif16": "SSVIF Stage I -> II under 16-mixed (`fusion-bench train`)",
    "av": "audio-visual methods on the device (`fusion-bench train`, smoke preset)",
    "ddp": "DDP over two GPUs (`fusion-bench train --devices 2`)",
    "pytest": "`pytest -m gpu`",
}
# seconds per section on a GPU machine; the whole run stays within --budget (default 540 s), the last sections get
# what is left
GPU_BUDGETS = {"install": 330, "env": 60, "scan": 60, "train": 170, "fuse": 70, "metrics": 50, "ssvif16": 70,
               "av": 50, "ddp": 90, "pytest": 180}
DRY_BUDGETS = {name: 90 for name in SECTIONS}
CUDA_ONLY = ("ddp",)  # sections the dry run skips without starting a worker

# The previous GPU table (H200, torch 2.11), as quoted in docs/performance.md.
REFERENCE: dict[str, Any] = {
    "source": "previous GPU table: NVIDIA H200, torch 2.11, fp32 paper presets",
    # peak GPU memory of one training step at the paper batch x crop, GB. seafusion's 7.7 GB was measured on
    # 16 x 256x256 crops, not the preset's whole 480x640 images, so it has no ratio here; cmd_cta was not measured.
    "peak_gb": {"cfi": 32.3, "swinfusion": 25.8, "ssvif": 33.4, "amdanet": 30.1},
    "swin_fuse_images_per_s": 9.0,  # SwinFusion fuse, 480x640
    "vifb_pairs_per_s": 178.0,  # bench_metrics.py --device cuda --throughput --dialects vifb
}
# the targets: (label, section, row filter, value key, reference, comparison, factor)
TARGETS: tuple[tuple[str, str, dict[str, Any], str, float, str, float], ...] = (
    ("CFI peak memory, paper batch, configured precision (GB)", "train", {"method": "cfi", "variant": "config"},
     "peak_gb", REFERENCE["peak_gb"]["cfi"], "<=", 0.5),
    ("SwinFusion peak memory, paper batch, configured precision (GB)", "train",
     {"method": "swinfusion", "variant": "config"}, "peak_gb", REFERENCE["peak_gb"]["swinfusion"], "<=", 0.5),
    ("SwinFusion fuse at 480x640 (images/s)", "fuse", {"method": "swinfusion"}, "images_per_s",
     REFERENCE["swin_fuse_images_per_s"], ">=", 3.0),
    ("vifb metrics (pairs/s)", "metrics", {"dialect": "vifb"}, "pairs_per_s", REFERENCE["vifb_pairs_per_s"], ">=",
     2.0),
)


def with_reference(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A row's values with the previous table's number and the ratio to it, where the previous table has one."""
    key, ref = None, None
    if section == "train":
        key, ref = "peak_gb", REFERENCE["peak_gb"].get(values.get("method"))
    elif section == "fuse" and values.get("method") == "swinfusion":
        key, ref = "images_per_s", REFERENCE["swin_fuse_images_per_s"]
    elif section == "metrics" and values.get("dialect") == "vifb":
        key, ref = "pairs_per_s", REFERENCE["vifb_pairs_per_s"]
    if ref is None or not isinstance(values.get(key), (int, float)):
        return values
    return {**values, f"ref_{key}": ref, "ratio": values[key] / ref}


@dataclass
class Section:
    name: str
    status: str = "pending"
    seconds: float = 0.0
    note: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 0.01:
            return f"{value:.3g}"
        return f"{value:.2e}"
    return str(value).replace("|", "\\|").replace("\n", " ")


class Report:
    """The Markdown file, rewritten whole (temporary file + rename) after every row."""

    def __init__(self, path: Path, cfg: Settings, argv: list[str], budget: float):
        self.path, self.cfg, self.argv, self.budget = path, cfg, argv, budget
        self.sections: dict[str, Section] = {}
        self.started = dt.datetime.now(dt.timezone.utc)
        self.t0 = time.monotonic()
        self.env: dict[str, Any] = {}

    def section(self, name: str) -> Section:
        return self.sections.setdefault(name, Section(name))

    def write(self) -> None:
        """The Markdown table and, beside it, every row as a JSON line (.jsonl), each replaced atomically."""
        rows = [json.dumps({"section": sec.name, **row}, default=str) + "\n"
                for sec in self.sections.values() for row in sec.rows]
        for path, text in ((self.path, self.render()), (self.path.with_suffix(".jsonl"), "".join(rows))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    def render(self) -> str:
        env, cfg = self.env, self.cfg
        mode = ("CPU dry run: smoke presets and tiny sizes; the numbers check the plumbing and are not measurements"
                if cfg.dry_run else f"device run on {cfg.device}")
        lines = [
            "# GPU check", "",
            f"- card: **{env.get('card', '?')}**" + (f" (compute capability {env['capability']}, {env['memory_gb']} "
                                                     f"GB, {env.get('gpus')} GPU(s), driver {env.get('driver', '?')})"
                                                     if "capability" in env else ""),
            f"- torch {env.get('torch', '?')}, CUDA {env.get('cuda_runtime', '?')}, cuDNN {env.get('cudnn', '-')}, "
            f"Python {env.get('python', '?')}, Lightning {env.get('lightning', '?')}",
            f"- mamba-ssm: {env.get('mamba_ssm', '?')}; transformers {env.get('transformers', '?')}, ultralytics "
            f"{env.get('ultralytics', '?')}; {env.get('cpus', '?')} CPUs",
            f"- {mode}; git {env.get('git', '?')}; started {self.started:%Y-%m-%d %H:%M:%S} UTC; "
            f"{time.monotonic() - self.t0:.0f} s of the {self.budget:.0f} s budget used",
            f"- command: `python benchmarks/perf/gpu_check.py{' ' + shlex.join(self.argv) if self.argv else ''}`",
            f"- reference for the ratios: {REFERENCE['source']}", "",
            "| section | status | seconds | rows | note |", "|---|---|---|---|---|",
        ]
        for name, sec in self.sections.items():
            counts: dict[str, int] = {}
            for row in sec.rows:
                counts[row["status"]] = counts.get(row["status"], 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "-"
            lines.append(f"| {name} | **{sec.status}** | {sec.seconds:.1f} | {summary} | {_fmt(sec.note)} |")
        lines += ["", "## Targets", "",
                  "| target | reference | required | measured | ratio | met |", "|---|---|---|---|---|---|"]
        lines += self.targets()
        for name, sec in self.sections.items():
            if not sec.rows or name == "env":
                continue
            keys: list[str] = []
            for row in sec.rows:
                keys += [k for k in row["values"] if k not in keys]
            header = ["item", "status", *keys, "seconds", "note"]
            lines += ["", f"## {name}: {TITLES.get(name, name)}", "", "| " + " | ".join(header) + " |",
                      "|---" * len(header) + "|"]
            for row in sec.rows:
                cells = [row["item"], row["status"], *(row["values"].get(k) for k in keys), row.get("seconds"),
                         row.get("note")]
                lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
        return "\n".join(lines) + "\n"

    def targets(self) -> list[str]:
        out = []
        for label, section, match, key, ref, op, factor in TARGETS:
            rows = [r for r in self.sections.get(section, Section(section)).rows
                    if all(r["values"].get(k) == v for k, v in match.items())]
            value = rows[0]["values"].get(key) if rows else None
            required = f"{op} {factor:g} x {ref:g} = {ref * factor:.3g}"
            if value is None:
                met = "not measured"
            elif self.cfg.dry_run or not self.cfg.device.startswith("cuda"):
                met = "n/a (dry run)"
            else:
                met = "**yes**" if (value <= ref * factor if op == "<=" else value >= ref * factor) else "**no**"
            ratio = _fmt(value / ref) if value is not None and not self.cfg.dry_run else "-"
            out.append(f"| {label} | {ref:g} | {required} | {_fmt(value)} | {ratio} | {met} |")
        return out


def run_section(name: str, cfg: Settings, budget: float, report: Report, log: Any) -> None:
    """Run one section's worker under `budget` seconds, recording each row as it arrives; restart the worker after a
    crash or a fatal CUDA error (at most 3 times) with the items it has not reported."""
    sec = report.section(name)
    sec.status = "running"
    report.write()
    run = _Run(name, sec, report, log, deadline=time.monotonic() + budget)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    if name != "pytest":  # measurements with the libraries' own kernels and threads (no pinned CPU numerics)
        env["FUSION_BENCH_NUMERICS"] = "native"
    if cfg.dry_run:  # tiny CPU work: one thread (OpenMP threads spinning on a busy shared machine cost 100x)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
    code, restarts = 0, 0
    while True:
        settings = json.dumps(asdict(Settings(**{**asdict(cfg), "skip_items": run.reported})))
        proc = subprocess.Popen([cfg.python, str(WORKER), "--section", name, "--settings", settings], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                start_new_session=True)
        try:
            run.read(proc)
        finally:
            if proc.poll() is None:  # this process is being stopped (SIGTERM, Ctrl-C): stop the worker too
                _kill(proc)
        code = proc.wait()
        left = [i for i in run.plan if i not in run.reported]
        if run.timed_out or code == 0 or not left or restarts >= 3 or time.monotonic() > run.deadline - 5:
            break
        restarts += 1
        if code != EXIT_RESTART:  # the worker died inside the first unreported item
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            sec.rows.append({"item": left[0], "status": "FAIL", "values": {}, "seconds": None,
                             "note": f"worker died ({how})" + (f": {run.tail[-1]}" if run.tail else "")})
            run.reported.append(left[0])
    for item in (i for i in run.plan if i not in run.reported):
        sec.rows.append({"item": item, "status": "TIMEOUT" if run.timed_out else "FAIL", "values": {},
                         "seconds": None, "note": f"not run: section budget of {budget:.0f} s ran out"
                         if run.timed_out else f"not run: worker exited with code {code}"})
    fails = [r for r in sec.rows if r["status"] == "FAIL"]
    if run.timed_out:
        sec.status, sec.note = "TIMEOUT", f"killed after its budget of {budget:.0f} s"
    elif fails:
        sec.status, sec.note = "FAIL", f"{fails[0]['item']}: {fails[0].get('note', '')}"
    elif code != 0 or not sec.rows:
        sec.status, sec.note = "FAIL", f"worker exited with code {code}: {run.tail[-1] if run.tail else 'no output'}"
    elif all(r["status"] == "SKIP" for r in sec.rows):
        sec.status, sec.note = "SKIP", sec.rows[0].get("note", "")
    else:
        sec.status = "PASS"
        sec.note = next((r["note"] for r in sec.rows if r["status"] == "SKIP" and r.get("note")), "")
    if name == "env" and sec.rows:
        report.env = sec.rows[0]["values"]
    sec.seconds = time.monotonic() - run.start
    report.write()


@dataclass
class _Run:
    """The state of one section's run across worker restarts."""

    name: str
    sec: Section
    report: Report
    log: Any
    deadline: float
    start: float = field(default_factory=time.monotonic)
    plan: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    tail: deque = field(default_factory=lambda: deque(maxlen=30))  # the last lines that were not rows
    timed_out: bool = False

    def read(self, proc: subprocess.Popen) -> None:
        """Record the worker's rows until its output ends, or kill it at the deadline (then read on briefly)."""
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        drain_until: float | None = None
        while True:
            now = time.monotonic()
            if drain_until is None and now >= self.deadline:
                if proc.poll() is None:
                    self.timed_out = True
                    _kill(proc)
                drain_until = time.monotonic() + 5
            wait = (self.deadline if drain_until is None else drain_until) - now
            if wait <= 0:
                return
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                continue
            if line is None:
                return
            self.log.write(f"[{self.name}] {line}")
            if line.startswith(MARK):
                self.record(json.loads(line[len(MARK):]))
            elif line.strip():
                self.tail.append(line.strip())

    def record(self, record: dict[str, Any]) -> None:
        if "plan" in record:
            self.plan = self.plan or record["plan"]
            return
        self.reported.append(record["item"])
        record["values"] = record.get("values") or {}
        if not self.report.cfg.dry_run:  # a dry run's tiny CPU numbers have no ratio to a GPU table
            record["values"] = with_reference(self.name, record["values"])
        self.sec.rows.append(record)
        print(f"  {self.name} / {record['item']}: {record['status']} {record.get('note') or ''}".rstrip(), flush=True)
        self.sec.seconds = time.monotonic() - self.start
        self.report.write()


def _skip_reason(name: str, cfg: Settings, report: Report, left: float) -> str | None:
    """Why section `name` does not run (None: it runs)."""
    if left < 5:
        return f"skipped: the run's budget of {report.budget:.0f} s ran out"
    if name in ("install", "env"):
        return None
    if cfg.dry_run:
        return "skipped: no CUDA (dry run on the CPU)" if name in CUDA_ONLY else None
    if report.sections["env"].status != "PASS":
        return "skipped: the env section failed (torch not importable?), see its row"
    if not report.env.get("cuda_available"):
        return "skipped: no CUDA device (run with --dry-run on a CPU machine)"
    return None


def _kill(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or key not in SECTIONS:
            raise ValueError(f"{what} {v!r}: expected SECTION=VALUE with SECTION in {', '.join(SECTIONS)}")
        out[key] = val
    return out


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Sections, in order: " + ", ".join(SECTIONS))
    default_out = Path(os.environ["OUT"]) / "gpu_check.md" if os.environ.get("OUT") else None
    p.add_argument("--out", type=Path, default=default_out, help="Markdown file (default: $OUT/gpu_check.md); a "
                   "log of every worker's output (.log) and the rows as JSON lines (.jsonl) go beside it")
    p.add_argument("--dry-run", action="store_true", help="CPU, smoke presets, tiny sizes (checks the plumbing)")
    p.add_argument("--sections", default=None, help="comma list (default: all); they run in the order below, "
                   "env always")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole run (default 540)")
    p.add_argument("--section-budget", action="append", default=[], metavar="SECTION=SECONDS",
                   help="one section's budget (repeatable)")
    p.add_argument("--install", action="store_true", help="pip install -c constraints.txt -e .[dev] first")
    p.add_argument("--install-mamba", action="store_true",
                   help="pip install --no-build-isolation the `mamba` extra when mamba-ssm does not import "
                        "(time-boxed by --install-timeout; builds the CUDA kernels when no wheel matches)")
    p.add_argument("--install-timeout", type=float, default=300.0)
    p.add_argument("--train-methods", default=None, help=f"comma list (default: {','.join(PAPER_METHODS)})")
    p.add_argument("--train-variants", default=None,
                   help=f"comma list of {', '.join(TRAIN_VARIANTS)} (default: all; +cl = channels last)")
    p.add_argument("--fuse-methods", default=None, help="comma list (default: every image-fusion method)")
    p.add_argument("--av-methods", default=None, help="comma list (default: every classification method)")
    p.add_argument("--pytest-args", default=None, help="pytest arguments (default: -m gpu)")
    p.add_argument("--inject", action="append", default=[], metavar="SECTION=fail|hang|crash",
                   help="testing: make a section's worker fail at its start, hang until its budget runs out, or "
                        "die inside its first item")
    args = p.parse_args(argv)
    if args.out is None:
        p.error("--out is required when $OUT is not set")
    try:
        inject = _pairs(args.inject, "--inject")
        budgets = {k: float(v) for k, v in _pairs(args.section_budget, "--section-budget").items()}
    except ValueError as err:
        p.error(str(err))
    if any(v not in ("fail", "hang", "crash") for v in inject.values()):
        p.error("--inject SECTION=fail|hang|crash")
    section_budgets = {**(DRY_BUDGETS if args.dry_run else GPU_BUDGETS), **budgets}
    if args.install_mamba or args.install:
        section_budgets["install"] = max(section_budgets["install"], args.install_timeout * 2 + 30)
    sections = _csv(args.sections) or list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    bad_variants = [v for v in _csv(args.train_variants) or [] if v not in TRAIN_VARIANTS]
    if bad_variants:
        p.error(f"unknown train variant(s) {', '.join(bad_variants)}; valid: {', '.join(TRAIN_VARIANTS)}")
    # in the order of SECTIONS (install before env, env before the rest: the header needs the card and versions)
    sections = [s for s in SECTIONS if s in sections or s == "env"]
    scratch = tempfile.TemporaryDirectory(prefix="gpu_check-")
    options = dict(inject=inject, scratch=scratch.name, install=args.install, install_mamba=args.install_mamba,
                   install_timeout=args.install_timeout, train_methods=_csv(args.train_methods) or list(PAPER_METHODS),
                   train_variants=_csv(args.train_variants) or list(TRAIN_VARIANTS),
                   fuse_methods=_csv(args.fuse_methods), av_methods=_csv(args.av_methods))
    cfg = Settings.dry(**options) if args.dry_run else Settings(**options)
    if args.pytest_args:
        cfg.pytest_args = shlex.split(args.pytest_args)
    report = Report(args.out, cfg, argv, args.budget)
    for name in sections:
        report.section(name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check: {', '.join(sections)} -> {args.out}", flush=True)
    # SIGTERM (a wall-clock limit, a job scheduler) stops the running worker and leaves the table written
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with scratch, args.out.with_suffix(".log").open("w", buffering=1) as log:
            for name in sections:
                left = args.budget - (time.monotonic() - report.t0)
                skip = _skip_reason(name, cfg, report, left)
                if skip:
                    report.section(name).status, report.section(name).note = "SKIP", skip
                    report.write()
                    continue
                print(f"[{name}] {TITLES[name]} (budget {min(section_budgets[name], left):.0f} s)", flush=True)
                run_section(name, cfg, min(section_budgets[name], left), report, log)
                if name == "env":
                    env = report.env
                    print(f"  card {env.get('card')}, torch {env.get('torch')}, CUDA {env.get('cuda_runtime')}, "
                          f"mamba-ssm {env.get('mamba_ssm')}", flush=True)
    finally:
        for sec in report.sections.values():
            if sec.status == "running":
                sec.status, sec.note = "KILLED", "gpu_check.py was stopped during this section"
        report.write()
    bad = [s.name for s in report.sections.values() if s.status in ("FAIL", "TIMEOUT", "KILLED")]
    if not cfg.dry_run and not report.env.get("cuda_available"):
        bad.append("no CUDA device")
    print(f"gpu_check: {'FAIL: ' + ', '.join(bad) if bad else 'all sections passed or skipped'}; table: {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
