"""What a grid job runs (kept free of torch imports: a submitit job process only starts the bench subprocess)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path


def run_job(command: Sequence[str], log: str | None = None) -> int:
    """Run one job's command (a submitit job, or a worker of the local pool); its output goes to `log` when given.
    Raises RuntimeError when the job fails (so a scheduler marks it failed)."""
    if log is None:
        code = subprocess.run(list(command), check=False).returncode
    else:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            code = subprocess.run(list(command), stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        raise RuntimeError(f"exit code {code}: {shlex.join(command)}" + (f" (log: {log})" if log else ""))
    return code
