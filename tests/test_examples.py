"""The examples run, each in a process of its own (sharded_init.py sets XLA_FLAGS before JAX starts).

An example that needs an optional framework is skipped when that framework is not installed. The check looks the
module up without importing it: the example imports it in its own process, and importing Keras here would pick
a backend for the whole test session.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
EXTRAS = {  # module -> (distribution, jinit extra)
    "flax": ("flax", "flax"),
    "haiku": ("dm-haiku", "haiku"),
    "equinox": ("equinox", "equinox"),
    "keras": ("keras", "keras"),
    "matplotlib": ("matplotlib", "plot"),
    "optax": ("optax", "optax"),
}


def require(*modules):
    """Skips the test, saying what to install, unless every module of `modules` is installed."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            distribution, extra = EXTRAS[module]
            pytest.skip(f"{distribution} is an optional extra: pip install -e '.[{extra}]'")


def run(script, *args):
    """Runs an example; it must exit with status 0. Returns its last printed line."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-5000:]
    return lines[-1]


EXAMPLE_RUNS = [  # (script, the start of its last printed line, the optional modules it needs)
    ("sharded_init.py", "Every parameter is bitwise equal to its unsharded value.", ()),
    ("gpt2_small.py", "Largest error:", ()),
    ("flax_mlp.py", "Loss ", ("flax",)),
    ("haiku_mlp.py", "Loss ", ("haiku",)),
    ("equinox_reinit.py", "All 4 weights are orthogonal and all biases zero.", ("equinox",)),
    ("keras_to_flax.py", "All 11 Keras initializers converted;", ("keras", "flax")),
    ("flax_model_init.py", "Flax models initialized by jinit: bitwise", ("flax",)),
    ("haiku_model_init.py", "Haiku model initialized by jinit: bitwise f.init;", ("haiku",)),
    ("keras_sharded_model.py", "Keras model built sharded by jinit: every variable bitwise", ("keras",)),
    ("einsum_fans.py", "Einsum fans:", ("flax",)),
    ("torch_defaults.py", "PyTorch defaults:", ()),
    ("lora_adapters.py", "LoRA: 4 schemes x 2 kernels rebuild their weights", ()),
    ("audit_gpt2.py", "Audit: flagged exactly the 24 residual projections", ()),
    ("fine_tuning.py", "Fine-tuning: the new head is fresh, 12 kept parameters match the checkpoint", ()),
]


@pytest.mark.parametrize("script, last_line, modules", EXAMPLE_RUNS, ids=[case[0] for case in EXAMPLE_RUNS])
def test_example_runs(script, last_line, modules):
    require(*modules)
    assert run(script).startswith(last_line)


def test_plot_distributions_writes_a_png(tmp_path):
    require("matplotlib")
    out = tmp_path / "distributions.png"
    assert run("plot_distributions.py", "--out", str(out)) == f"Wrote {out}"
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # exists, is not empty, and is a PNG


def test_mup_coordinate_check_runs_and_plots_a_png(tmp_path):
    require("optax", "matplotlib")  # the check itself runs without matplotlib, only `--plot` needs it
    out = tmp_path / "coordinate_check.png"
    assert run("mup_coordinate_check.py", "--plot", str(out)).startswith("muP coordinate check:")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
