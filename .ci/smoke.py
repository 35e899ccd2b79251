"""The release's smoke test: the built wheel, installed alone in a clean virtual environment, works.

Run by .ci/build-release (the release workflow and its dry run) as ``python smoke.py VERSION`` from outside the
checkout, with nothing installed but the wheel and what it requires (no framework, no test tool).
"""

import importlib.metadata
import importlib.util
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jinit

expected = sys.argv[1]
installed = Path(jinit.__file__).parent
assert "site-packages" in installed.parts, f"jinit was imported from {installed}, not from the installed wheel"
assert jinit.__version__ == importlib.metadata.version("jinit") == expected, (jinit.__version__, expected)
assert (installed / "py.typed").is_file(), "py.typed is not in the wheel"

key = jax.random.key(0)
x = jinit.glorot_uniform()(key, (3, 5))
assert (x.shape, x.dtype) == ((3, 5), jnp.float32), (x.shape, x.dtype)
assert float(jnp.abs(x).max()) <= math.sqrt(6 / (3 + 5)), "a glorot_uniform sample is outside its limit"
assert np.array_equal(x, jax.nn.initializers.glorot_uniform()(key, (3, 5))), "not jax.nn.initializers' values"

specs = {"kernel": jinit.ParamSpec((4, 2), jinit.he_normal()), "bias": jinit.ParamSpec((2,), jinit.zeros)}
params = jinit.init_tree(key, specs)
assert {name: p.shape for name, p in params.items()} == {"kernel": (4, 2), "bias": (2,)}, params

if importlib.util.find_spec("keras") is None:  # the optional framework is missing: the error says what to install
    try:
        import jinit.keras
    except ImportError as err:
        assert "pip install 'jinit[keras]'" in str(err), err
    else:
        raise AssertionError("import jinit.keras did not raise without Keras")

print(f"Smoke test passed: jinit {jinit.__version__} from {installed}, JAX {jax.__version__}.")
