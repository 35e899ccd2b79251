"""The examples run, each in a process of its own (sharded_init.py sets XLA_FLAGS before JAX starts)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("script, last_line", [
    ("sharded_init.py", "Every parameter is bitwise equal to its unsharded value."),
    ("gpt2_small.py", "Largest error:"),
])  # fmt: skip
def test_example_runs(script, last_line):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert proc.stdout.strip().splitlines()[-1].startswith(last_line), proc.stdout[-5000:]
