"""What a grid job runs (kept free of torch imports: a submitit job process only starts the bench subprocess), and
the job's side of it: a job process stops when the process that started it is gone (`exit_with_parent`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

PARENT_ENV = "FUSION_BENCH_PARENT_PID"
"""Set by `run_job` in a job's environment: the process id of the process that started it."""
PARENT_POLL_S = 0.5  # how often a job looks for its parent
GRACE_S = 10.0  # after its parent is gone, how long a job may take to stop on the interrupt before it kills itself


def run_job(command: Sequence[str], log: str | None = None) -> int:
    """Run one job's command (a submitit job, or a worker of the local pool); its output goes to `log` when given.
    The job stops when this process is killed (PARENT_ENV, `exit_with_parent`). Raises RuntimeError when the job
    fails (so a scheduler marks it failed)."""
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    if log is None:
        code = subprocess.run(list(command), check=False, env=env).returncode
    else:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            code = subprocess.run(list(command), stdout=fh, stderr=subprocess.STDOUT, check=False,
                                  env=env).returncode
    if code != 0:
        raise RuntimeError(f"exit code {code}: {shlex.join(command)}" + (f" (log: {log})" if log else ""))
    return code


def exit_with_parent() -> None:
    """In a job started by `run_job` (PARENT_ENV set; taken out of the environment, so the job's own children do not
    see it): watch the parent from a daemon thread, and when it is gone (`kill -9` of `bench --jobs N`: its jobs
    would otherwise run on and append rows nobody asked for any more) send the main thread SIGINT, as Ctrl-C does (the
    fit keeps its checkpoint for --resume, the seed appends no row; rows are appended atomically, so none is ever
    half-written), then kill the process if it still runs GRACE_S later."""
    import signal
    import threading
    import time

    value = os.environ.pop(PARENT_ENV, "")
    if not value.isdigit():
        return
    parent = int(value)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        if hasattr(signal, "pthread_kill"):  # a real SIGINT to the main thread: it also ends a blocking wait
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        else:
            import _thread

            _thread.interrupt_main()
        time.sleep(GRACE_S)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))

    threading.Thread(target=watch, name="fusion-bench-parent-watch", daemon=True).start()
