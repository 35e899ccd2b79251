"""jinit gives bitwise the same arrays as jax.nn.initializers for the same key, arguments, shape and dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cases import CASES, ids

WITH_JAX = [c for c in CASES if c.jax_init is not None]
KEY = jax.random.key(20261122)


def _bits(x) -> np.ndarray:
    """The bit patterns of `x` (of its real and imaginary parts for complex), so that -0.0 != 0.0 and NaN == NaN."""
    x = np.atleast_1d(np.asarray(x))
    if x.dtype.kind == "c":
        x = np.stack([x.real, x.imag])
    return x.view(np.dtype(f"u{x.dtype.itemsize}"))


def _check(case, dtype, key, jit, shapes=None):
    for shape in shapes or case.shapes:
        if case.id == "identity" or (case.id.startswith("orthogonal") and len(shape) < 2):
            continue
        expected = case.jax_init(key, shape, dtype)
        ours = (jax.jit(case.init, static_argnums=(1, 2)) if jit else case.init)(key, shape, dtype)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape, (shape, ours.dtype, expected.dtype)
        np.testing.assert_array_equal(_bits(ours), _bits(expected), err_msg=f"{case.id} {shape} {dtype}")


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_float32_bitwise_equal(case):
    _check(case, jnp.float32, KEY, jit=False)


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_float32_bitwise_equal_under_jit(case):
    _check(case, jnp.float32, KEY, jit=True, shapes=case.shapes[:1])


@pytest.mark.parametrize("case", [c for c in WITH_JAX if c.complex_ok], ids=ids([c for c in WITH_JAX if c.complex_ok]))
def test_complex64_bitwise_equal(case):
    _check(case, jnp.complex64, KEY, jit=False, shapes=case.shapes[:2])


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_float64_and_complex128_bitwise_equal(case):
    with jax.enable_x64(True):
        _check(case, jnp.float64, KEY, jit=False, shapes=case.shapes[:2])
        if case.complex_ok:
            _check(case, jnp.complex128, KEY, jit=False, shapes=case.shapes[:1])


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_legacy_key_bitwise_equal(case):
    _check(case, jnp.float32, jax.random.PRNGKey(7), jit=False, shapes=case.shapes[:1])
