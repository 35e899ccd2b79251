"""Golden values: a change in any random stream (in any dtype) is caught.

`golden.json` was written once by ``JINIT_WRITE_GOLDEN=1 pytest tests/test_golden.py`` from a run whose
float32/float64/complex values were checked bitwise against `jax.nn.initializers` (test_jax_equality.py) and
whose low-precision statistics were checked (test_statistics.py). Rewrite it only for an intended change of
stream, and say so in the commit message.

Values are compared to two units in the last place of their dtype rather than bitwise: a changed stream moves
every value far more than that, while another CPU's transcendental functions (the bitwise comparison with JAX
runs on the machine itself) may round a last bit differently.
"""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cases import CASES

GOLDEN = pathlib.Path(__file__).with_name("golden.json")
KEY = jax.random.key(2026)
DTYPES = ("float32", "bfloat16", "float16", "float8_e4m3fn", "complex64")


def _entries():
    for case in CASES:
        for dtype in DTYPES:
            if dtype == "complex64" and not case.complex_ok:
                continue
            yield f"{case.id}/{dtype}", case, case.shapes[0], dtype


def _values(case, shape, dtype) -> np.ndarray:
    """The first 6 and last 2 values (real and imaginary parts for complex), as float64."""
    flat = np.asarray(case.init(KEY if case.random else None, shape, jnp.dtype(dtype))).reshape(-1)
    picked = np.concatenate([flat[:6], flat[-2:]]) if flat.size > 8 else flat
    return np.stack([picked.real, picked.imag], -1).astype(np.float64).reshape(-1)


if os.environ.get("JINIT_WRITE_GOLDEN"):
    lines = [f"{json.dumps(name)}: {json.dumps(_values(c, s, d).tolist())}" for name, c, s, d in _entries()]
    GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")

EXPECTED = json.loads(GOLDEN.read_text())
ENTRIES = list(_entries())


def test_golden_file_covers_every_case():
    assert sorted(EXPECTED) == sorted(name for name, *_ in ENTRIES)


@pytest.mark.parametrize("name, case, shape, dtype", ENTRIES, ids=[e[0] for e in ENTRIES])
def test_golden(name, case, shape, dtype):
    real = jnp.finfo(dtype if dtype != "complex64" else "float32")
    eps, tiny = float(real.eps), float(real.smallest_subnormal)
    np.testing.assert_allclose(_values(case, shape, dtype), EXPECTED[name], rtol=2 * eps, atol=2 * tiny)
