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


def _mismatches(case, dtype, key, jit, shapes):
    """The shapes on which jinit's array differs from JAX's in dtype, shape or any bit (empty when equal)."""
    failures = []
    for shape in shapes:
        expected = case.jax_init(key, shape, dtype)
        ours = (jax.jit(case.init, static_argnums=(1, 2)) if jit else case.init)(key, shape, dtype)
        same = ours.dtype == expected.dtype and ours.shape == expected.shape
        if not (same and np.array_equal(_bits(ours), _bits(expected))):
            failures.append(f"{case.id} {shape} {jnp.dtype(dtype).name}: {ours.dtype}{ours.shape} vs {expected.dtype}")
    return failures


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_float32_bitwise_equal(case):
    assert _mismatches(case, jnp.float32, KEY, False, case.shapes) == []


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_float32_bitwise_equal_under_jit(case):
    assert _mismatches(case, jnp.float32, KEY, True, case.shapes[:1]) == []


@pytest.mark.parametrize("case", [c for c in WITH_JAX if c.complex_ok], ids=ids([c for c in WITH_JAX if c.complex_ok]))
def test_complex64_bitwise_equal(case):
    assert _mismatches(case, jnp.complex64, KEY, False, case.shapes[:2]) == []


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_float64_and_complex128_bitwise_equal(case):
    with jax.enable_x64(True):
        failures = _mismatches(case, jnp.float64, KEY, False, case.shapes[:2])
        if case.complex_ok:
            failures += _mismatches(case, jnp.complex128, KEY, False, case.shapes[:1])
    assert failures == []


@pytest.mark.parametrize("case", WITH_JAX, ids=ids(WITH_JAX))
def test_legacy_key_bitwise_equal(case):
    assert _mismatches(case, jnp.float32, jax.random.PRNGKey(7), False, case.shapes[:1]) == []


BOUNDS = np.round(np.arange(0.25, 8.0, 0.025), 3)
"""Bounds every 0.025 standard deviations out to 8: near ±5.3 the erf of a bound is within two ulps of ±1, where
XLA:CPU's two code generators round it apart (`jinit._src.kernel`)."""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_truncated_normal_of_any_bounds(dtype):
    """jinit's truncated normal, and JAX's found in a program (`jinit._src.jax_draws`), are JAX's for bounds far in
    the tails too: the erf of each bound is computed as JAX's sampler computes it."""
    import jinit
    from jinit._src import jax_draws

    failures = []
    with jax.enable_x64(dtype == "float64"):
        for b in BOUNDS:
            for lower, upper in ((-b, b), (-1.0, b), (-b, 0.5)):
                lower, upper = float(lower), float(upper)
                expected = _bits(jax.nn.initializers.truncated_normal(1.0, lower=lower, upper=upper)(KEY, (64,), dtype))
                ours = jinit.truncated_normal(1.0, lower=lower, upper=upper)(KEY, (64,), dtype)
                drawn = jax_draws.JaxDraw("_truncated_normal", (lower, upper), 1.0)(KEY, (64,), dtype)
                failures += [(name, lower, upper) for name, x in (("jinit", ours), ("jax_draws", drawn))
                             if not np.array_equal(_bits(x), expected)]  # fmt: skip
    assert failures == []
