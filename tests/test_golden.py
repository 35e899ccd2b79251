"""Golden values: a change in any random stream (in any dtype) is caught, on any CPU.

`golden.json` holds, for each case of `cases.CASES` and each dtype, the first 6 and last 2 values of its sample
(real and imaginary parts). It was written by ``python tests/test_golden.py --write`` from a run whose
float32/float64/complex values were checked bitwise against `jax.nn.initializers` (test_jax_equality.py) and
whose low-precision statistics were checked (test_statistics.py). Rewrite it only for an intended change of
stream, and say so in the commit message.

What is exactly specified is compared bitwise: threefry's bits and the elementwise transforms that make them
values (IEEE arithmetic and XLA's own polynomial approximations, the same on every CPU). A QR factorization is
not: LAPACK's blocking and its reductions round differently on other CPUs. So for the orthogonal initializers
the normal matrix that the QR factors is compared bitwise (``<case>/<dtype>/normal_matrix``), and ``Q`` within a
tolerance derived from Householder QR's backward error (see `_qr_tolerance`).
"""

import json
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinit._src import orthogonal
from jinit._src.distributions import compute_dtype

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


ENTRIES = list(_entries())
QR_CASES = {"orthogonal", "orthogonal_scaled", "delta_orthogonal"}


def _picked(x) -> np.ndarray:
    """The first 6 and last 2 values (real and imaginary parts), as float64."""
    flat = np.asarray(x).reshape(-1)
    picked = np.concatenate([flat[:6], flat[-2:]]) if flat.size > 8 else flat
    return np.stack([picked.real, picked.imag], -1).astype(np.float64).reshape(-1)


def _values(case, shape, dtype) -> np.ndarray:
    return _picked(case.init(KEY if case.random else None, shape, jnp.dtype(dtype)))


def _matrix(case, shape, dtype):
    """The normal matrix that an orthogonal case factors (delta_orthogonal: the one at the kernel's centre)."""
    column_axis = case.init.config["column_axis"]
    matrix_shape = shape[-2:] if case.id.startswith("delta") else shape
    ct = compute_dtype(jnp.dtype(dtype))
    return np.asarray(orthogonal.normal_matrix(KEY, matrix_shape, column_axis, ct))


def _qr_tolerance(case, shape, dtype) -> tuple[float, float]:
    """`(atol, rtol)` within which two LAPACKs' ``scale * Q`` of the same normal matrix agree.

    Householder QR of an m x n matrix A (m >= n) computes Q with ``A + dA = Q R``, ``|dA| <= g |A|`` and Q within
    ``sqrt(n) g`` of orthogonal, ``g = m n u`` (u the unit roundoff; Higham, Accuracy and Stability, Thm. 19.4).
    The exact Q factor moves by at most ``sqrt(2) cond(A)`` times a relative perturbation of A (Sun, 1991), so
    one computed Q is within ``(sqrt(2) cond(A) + sqrt(n)) g`` of the exact one, and two are within twice that,
    times the scale. A low-precision result is then rounded once more, which may flip its last bit: ``rtol``.
    """
    a = _matrix(case, shape, dtype).astype(np.complex128)
    m, n = a.shape
    u = float(jnp.finfo(jnp.finfo(compute_dtype(jnp.dtype(dtype))).dtype).eps) / 2
    singular = np.linalg.svd(a, compute_uv=False)
    error = (math.sqrt(2) * singular[0] / singular[-1] + math.sqrt(n)) * m * n * u
    rtol = float(jnp.finfo(dtype).eps) if jnp.finfo(dtype).bits < 32 else 0.0
    return 2 * error * case.init.config["scale"], rtol


def _golden() -> dict[str, list[float]]:
    golden = {}
    for name, case, shape, dtype in ENTRIES:
        golden[name] = _values(case, shape, dtype).tolist()
        if case.id in QR_CASES:
            golden[f"{name}/normal_matrix"] = _picked(_matrix(case, shape, dtype)).tolist()
    return golden


EXPECTED = json.loads(GOLDEN.read_text())


def test_golden_file_covers_every_case():
    names = {name for name, *_ in ENTRIES}
    names |= {f"{name}/normal_matrix" for name, case, *_ in ENTRIES if case.id in QR_CASES}
    assert set(EXPECTED) == names


@pytest.mark.parametrize("name, case, shape, dtype", ENTRIES, ids=[e[0] for e in ENTRIES])
def test_golden(name, case, shape, dtype):
    values = _values(case, shape, dtype)
    if case.id not in QR_CASES:
        np.testing.assert_array_equal(values, EXPECTED[name])
        return
    np.testing.assert_array_equal(_picked(_matrix(case, shape, dtype)), EXPECTED[f"{name}/normal_matrix"])
    atol, rtol = _qr_tolerance(case, shape, dtype)
    np.testing.assert_allclose(values, EXPECTED[name], rtol=rtol, atol=atol)


def test_qr_tolerance_catches_a_changed_stream():
    """The derived tolerance is far below what another key (another stream) changes: the test can fail."""
    case = next(c for c in CASES if c.id == "orthogonal")
    shape = case.shapes[0]
    atol, _ = _qr_tolerance(case, shape, "float32")
    other = _picked(case.init(jax.random.key(2027), shape, jnp.float32))
    assert atol < 1e-3 < np.abs(other - EXPECTED["orthogonal/float32"]).max()


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    text = ",\n".join(f"{json.dumps(name)}: {json.dumps(values)}" for name, values in _golden().items())
    GOLDEN.write_text("{\n" + text + "\n}\n")
