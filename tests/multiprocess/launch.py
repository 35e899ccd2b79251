"""Launching local JAX processes for the multi-process tests (tests/test_multiprocess.py, tests/test_provenance.py)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_workers(script: str, processes: int, *args: str, timeout: float = 240) -> None:
    """Runs `processes` copies of `script` (in this folder) as one JAX job: each gets the coordinator's port, the
    number of processes, its id, then `args`; without the parent's XLA_FLAGS (each sets its own device count).
    Asserts that every one exits with status 0, showing its output's end otherwise."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(HERE / script), str(port), str(processes), str(i), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(processes)
    ]  # fmt: skip
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=timeout)[0])
    finally:
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]
