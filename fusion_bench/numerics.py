"""Pinned CPU numerics: the same smoke numbers on every x86-64 machine.

The numbers of a trained method depend on how its kernels sum: ATen picks AVX2 or AVX-512 code at run time, MKL
and oneDNN choose kernels (and blockings) by CPU model and cache size, and the thread count splits reductions.
"Pinned" numerics remove every one of these choices:

- ATen runs its AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``; every x86-64 CPU of the last decade has AVX2);
- MKL (torch's BLAS) runs its conditional-numerical-reproducibility branch ``COMPATIBLE,STRICT``: the one code
  path Intel documents as giving the same results on Intel and non-Intel processors;
- oneDNN and NNPACK are switched off, so convolutions run ATen's own kernels (im2col + MKL GEMM);
- one intra-op thread (``OMP_NUM_THREADS=MKL_NUM_THREADS=1``, ``torch.set_num_threads(1)``);
- NumPy and OpenCV use their AVX2 code (no AVX-512 dispatch, no Intel IPP).

The environment variables must be set before torch is imported; `fusion-bench` re-executes itself with them when a
command needs pinned numerics (`regress`, and `bench`/`train`/`fuse`/`downstream` with the `smoke` preset). The
runtime switches (oneDNN, NNPACK, threads) are applied by :func:`apply_runtime` in every process that computes
(the CLI, the YOLO worker, the test session). ``FUSION_BENCH_NUMERICS=native`` turns pinning off (the libraries'
own choices: fastest, but numbers then depend on the CPU and thread count).

The downstream evaluators (SegFormer, YOLO) are where the pin costs most (oneDNN off makes SegFormer about 3x
slower, YOLO about 1.7x). A pinned `bench` may run them with native kernels (``--downstream-numerics native``, the
CLI's default for `bench` and `downstream`): the YOLO child process gets the unpinned environment
(:func:`native_environment`) and SegFormer trains inside :func:`native_kernels`. The fusion part stays pinned.

This module must not import torch at module level (it runs before the re-exec).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

MODE_ENV = "FUSION_BENCH_NUMERICS"  # "pinned" (set by the re-exec or by the user), "native", or unset
PINNED, NATIVE = "pinned", "native"
PINNED_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # NumPy (synthetic data, metrics) and OpenCV (metrics, YOLO augmentation) dispatch AVX-512 code (SVML, IPP) on
    # CPUs that have it, which can differ from the AVX2 code in the last bits: use the AVX2 level everywhere.
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX512-SKX",
    "OPENCV_IPP": "disabled",
    "OPENCV_LOG_LEVEL": "ERROR",  # OpenCV would warn "IPP was disabled" in every process
}
# Commands whose numbers are pinned by default, and for which preset (None: always).
PINNED_COMMANDS: dict[str, str | None] = {"regress": None, "bench": "smoke", "train": "smoke", "fuse": "smoke",
                                          "downstream": "smoke"}


def requested_mode() -> str | None:
    mode = os.environ.get(MODE_ENV)
    if mode not in (None, "", PINNED, NATIVE):
        raise ValueError(f"{MODE_ENV}={mode!r}: expected {PINNED!r} or {NATIVE!r}")
    return mode or None


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (None where it cannot be read, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def can_pin() -> bool:
    """Pinning needs an x86-64 CPU with AVX2 (elsewhere the libraries' own paths run and numbers may differ)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = _cpu_flags()
    return flags is None or "avx2" in flags  # not Linux: assume a modern x86-64


def wants_pinning(argv: Sequence[str]) -> bool:
    """Whether a `fusion-bench` command line runs with pinned numerics by default."""
    args = list(argv)
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in PINNED_COMMANDS:
        return False
    preset = PINNED_COMMANDS[command]
    if preset is None:
        return True
    value = "smoke"  # the CLI's default preset
    for i, arg in enumerate(args):
        if arg == "--preset" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--preset="):
            value = arg.split("=", 1)[1]
    return value == preset


def pinned_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(PINNED_ENV)
    flags = _cpu_flags()
    if flags is not None and "avx512f" not in flags:  # nothing to switch off (OpenCV would warn in every process)
        env.pop("OPENCV_CPU_DISABLE", None)
    env[MODE_ENV] = PINNED
    return env


def reexec_if_needed(argv: Sequence[str]) -> None:
    """Re-run this `fusion-bench` process with the pinned environment when the command asks for it.

    Called by the console entry point before anything imports torch. Does nothing when the mode is already set
    (by an earlier re-exec or by the user), when the command is not pinned by default, or when the CPU cannot pin.
    """
    if requested_mode() is not None or not wants_pinning(argv) or not can_pin() or "torch" in sys.modules:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "fusion_bench", *argv], pinned_environment())


def is_pinned() -> bool:
    return requested_mode() == PINNED


DOWNSTREAM_MODES = (PINNED, NATIVE)


def downstream_pinned(mode: str | None) -> bool:
    """Whether downstream evaluators run pinned: `mode` ``pinned`` / ``native``, or None for the process's own
    numerics (pinned when the process is)."""
    if mode is None:
        return is_pinned()
    if mode not in DOWNSTREAM_MODES:
        raise ValueError(f"downstream numerics {mode!r}: expected one of {', '.join(DOWNSTREAM_MODES)}")
    return mode == PINNED and is_pinned()


def native_environment(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) without the pinned variables, for a child process that runs
    the libraries' own kernels on `threads` intra-op threads."""
    env = dict(os.environ if base is None else base)
    for key in PINNED_ENV:
        env.pop(key, None)
    env.update({MODE_ENV: NATIVE, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    return env


@contextmanager
def native_kernels() -> Iterator[None]:
    """Within the block, a pinned process runs oneDNN and NNPACK again (the ATen kernel level and MKL's branch
    stay as the process started: they cannot change after torch is imported); restored afterwards."""
    import torch

    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = True
    (nnpack,) = torch.backends.nnpack.set_flags(True)  # returns the previous flags
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = onednn
        torch.backends.nnpack.set_flags(nnpack)


def apply_runtime() -> None:
    """In a pinned process: switch off oneDNN and NNPACK and use one intra-op thread (call after importing torch
    and anything that sets torch's threads, e.g. ultralytics)."""
    if not is_pinned():
        return
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(1)


def apply_runtime_when_imported() -> None:
    """`apply_runtime` as soon as torch is imported (at once when it already is), so that a command which never
    needs torch (help, list, a usage error) does not load it even in a pinned process. Raises ValueError for a bad
    FUSION_BENCH_NUMERICS value."""
    if not is_pinned():
        return
    if "torch" in sys.modules:
        apply_runtime()
        return
    if not any(isinstance(finder, _AfterTorchImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterTorchImport())


class _AfterTorchImport:
    """A meta-path finder that finds nothing itself: on the first `import torch` it lets the regular finders locate
    torch and wraps the loader so that `apply_runtime` runs right after torch's module has executed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "torch":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            apply_runtime()

        loader.exec_module = exec_module
        return spec

    def invalidate_caches(self) -> None:
        """Nothing cached here."""


def environment() -> dict[str, Any]:
    """The numeric environment of this process, for result rows and the regression report."""
    import torch

    return {
        "numerics": requested_mode() or "default",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "onednn": "on" if torch.backends.mkldnn.enabled else "off",
        "cpu": cpu_model(),
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(env: dict[str, Any]) -> str:
    """One line: `pinned: AVX2 kernels, 1 thread, MKL COMPATIBLE,STRICT, oneDNN off on <cpu>`."""
    return (f"{env.get('numerics')}: {env.get('cpu_capability')} kernels, {env.get('threads')} thread(s), "
            f"MKL_CBWR={env.get('mkl_cbwr') or '-'}, oneDNN {env.get('onednn')} on {env.get('cpu')}")
