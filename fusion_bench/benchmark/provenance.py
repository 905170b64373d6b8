"""Environment capture for result rows: git state, package versions, device."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata

import torch

from fusion_bench.benchmark.protocol import REPO_ROOT

# Every installed package whose version can change a number of a row: the training stack, the numeric libraries the
# metrics and data pipelines call, the downstream evaluators' libraries, the audio decoders, and this package.
PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "scipy", "scikit-image", "opencv-python",
            "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless", "PyWavelets", "pillow",
            "transformers", "ultralytics", "mamba-ssm", "av", "soundfile", "mmfusion-bench")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit sha or "unknown", whether tracked files differ from it)."""
    sha = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return sha, bool(status)


def package_versions() -> str:
    """`name=version` pairs separated by `;` for the packages that shape the numbers."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    versions.append(f"python={platform.python_version()}")
    return ";".join(versions)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}x{torch.get_num_threads()}threads"


def provenance(device: torch.device) -> dict[str, object]:
    """git state, package versions, device, the numeric environment (fusion_bench.numerics) and a timestamp."""
    from fusion_bench import numerics

    sha, dirty = git_state()
    env = numerics.environment()
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "packages": package_versions(),
        "device": device_name(device),
        "numerics": f"{env['numerics']};MKL_CBWR={env['mkl_cbwr'] or 'unset'};oneDNN={env['onednn']}",
        "cpu_capability": env["cpu_capability"],
        "threads": env["threads"],
        "cpu": env["cpu"],
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
