"""The kernels: eager calls are assembled from chunks without compiling per shape, hyperparameters are
traced, and every path (chunks, exact shape, traced key, JAX's non-partitionable threefry) gives JAX's values."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jinit
from jinit._src import kernels

KEY = jax.random.key(42)
jnn = jax.nn.initializers


@given(st.integers(1, 3 * 2**18 + 5000))
@settings(max_examples=300, deadline=None)
def test_chunk_plan_covers_without_gaps(n):
    plan = kernels.chunk_plan(n)
    position = 0
    for start, size in plan:
        assert start == position and size in kernels.CHUNK_SIZES
        position += size
    assert n <= position < n + kernels.CHUNK_SIZES[-1] // 2  # less than half a largest chunk is wasted
    assert len(plan) <= n // kernels.CHUNK_SIZES[-1] + 18


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (jinit.normal(0.3), jnn.normal(0.3)),
        (jinit.truncated_normal(1.0), jnn.truncated_normal(1.0)),
        (jinit.glorot_uniform(), jnn.glorot_uniform()),
        (jinit.he_normal(), jnn.he_normal()),
    ],
    ids=["normal", "truncated_normal", "glorot_uniform", "he_normal"],
)
@pytest.mark.parametrize("shape", [(1, 1), (1023, 1), (1025, 1), (3, 2**14 + 1), (2**18 + 2**17 + 7, 1)], ids=str)
def test_chunk_boundaries_match_jax(ours, theirs, shape):
    np.testing.assert_array_equal(ours(KEY, shape), theirs(KEY, shape))


def test_non_partitionable_threefry_is_respected():
    """With `jax_threefry_partitionable=False` the stream depends on the shape: jinit follows JAX exactly."""
    with jax.threefry_partitionable(False):
        for ours, theirs, shape in [
            (jinit.normal(), jnn.normal(), (33, 5)),
            (jinit.uniform(), jnn.uniform(), (1500,)),
            (jinit.lecun_normal(), jnn.lecun_normal(), (17, 9)),
        ]:
            x = ours(KEY, shape)
            np.testing.assert_array_equal(x, theirs(KEY, shape))
            longer = ours(KEY, (math.prod(shape) + 1,))[:-1]
            assert not np.array_equal(x.reshape(-1), longer)  # the stream is not prefix-stable here


def test_other_prng_implementations():
    for impl in ("rbg", "unsafe_rbg"):
        key = jax.random.key(3, impl=impl)
        np.testing.assert_array_equal(jinit.normal()(key, (40, 3)), jnn.normal()(key, (40, 3)))


def test_new_hyperparameters_do_not_retrace(monkeypatch):
    traced = chex.assert_max_traces(kernels._draw, n=2)  # once for the chunk kernel, once for the exact one
    monkeypatch.setattr(kernels, "_draw", traced)
    shape = (13, 29, 3)  # a shape no other test uses
    for stddev in (0.1, 0.2, 0.3, 1.5):
        x = jinit.normal(stddev)(KEY, shape, jnp.float16)
        y = jax.jit(lambda k, s=stddev: jinit.normal(s)(k, shape, jnp.float16))(KEY)
        np.testing.assert_array_equal(x, y)


def test_eager_calls_on_new_shapes_do_not_compile_the_sampler():
    init = jinit.glorot_uniform()
    init(KEY, (7, 11))  # compiles the chunk kernel for this kind and dtype, once
    chunk, exact = kernels._chunk_kernel._cache_size(), kernels._exact_kernel._cache_size()
    for shape in [(31, 17), (129, 65), (3, 3, 17, 19), (4099, 3), (70, 70)]:
        init(KEY, shape)
    assert (kernels._chunk_kernel._cache_size(), kernels._exact_kernel._cache_size()) == (chunk, exact)


def test_closed_over_key_under_jit():
    """A concrete key captured by a user's jit is generated in the exact shape, with the same values."""
    init = jinit.truncated_normal(0.5)
    np.testing.assert_array_equal(jax.jit(lambda: init(KEY, (6, 7)))(), init(KEY, (6, 7)))


def test_eval_shape_allocates_nothing():
    out = jax.eval_shape(lambda k: jinit.he_uniform()(k, (1024, 4096), jnp.bfloat16), KEY)
    assert out.shape == (1024, 4096) and out.dtype == jnp.bfloat16


def test_compute_dtype_and_casts_stay_in_bounds():
    assert kernels.compute_dtype(jnp.dtype(jnp.bfloat16)) == jnp.float32
    assert kernels.compute_dtype(jnp.dtype(jnp.float64)) == jnp.float64
    x = jnp.array([0.99999, 1.0, -1.0, -1.00001], jnp.float32)
    for dtype in (jnp.bfloat16, jnp.float16, jnp.float8_e4m3fn, jnp.float8_e5m2):
        y = kernels._cast(x, jnp.dtype(dtype), -1.0, 1.0, upper_open=True).astype(jnp.float32)
        assert float(y.max()) < 1.0 and float(y.min()) >= -1.0, dtype


def test_repeated_shape_gets_its_own_kernel(monkeypatch):
    """A shape's second eager call compiles its exact kernel in the background; later calls use it."""
    init = jinit.lecun_uniform()
    shape = (37, 41)  # a shape no other test uses
    first = init(KEY, shape)
    np.testing.assert_array_equal(init(KEY, shape), first)
    kernels.settle()

    def no_chunks(*args, **kwargs):
        raise AssertionError("the chunk kernel ran for a repeated shape")

    monkeypatch.setattr(kernels, "_chunk_kernel", no_chunks)
    np.testing.assert_array_equal(init(KEY, shape), first)
    with pytest.raises(AssertionError, match="chunk kernel"):  # another dtype is another kernel
        jinit.lecun_uniform()(KEY, shape, jnp.bfloat16)


def test_random_uniform_never_reaches_maxval():
    """minval + u * (maxval - minval) rounds up to maxval for some u; the result stays in [minval, maxval)."""
    narrow = jinit.random_uniform(1.0, 1.0 + 2**-22)(KEY, (1000,))  # without the clamp, a quarter hit maxval
    assert float(narrow.min()) >= 1.0 and float(narrow.max()) < 1.0 + 2**-22
    wide = jinit.random_uniform(0.9, 1.0)(jax.random.key(0), (2**24,))  # without the clamp, 3 values are 1.0
    assert float(wide.max()) < 1.0


def test_truncated_bounds_under_jit_follow_jax_in_both_modes():
    """For some bounds JAX's own truncated_normal differs by an ulp between eager and jit (XLA fuses and
    rounds erf differently); jinit gives JAX's eager values eagerly and JAX's jit values under jit."""
    ours = jinit.truncated_normal(2.0, lower=-0.5, upper=0.25)
    theirs = jnn.truncated_normal(2.0, lower=-0.5, upper=0.25)
    np.testing.assert_array_equal(ours(KEY, (5, 7)), theirs(KEY, (5, 7)))
    jitted = jax.jit(lambda k: ours(k, (5, 7)))(KEY)
    np.testing.assert_array_equal(jitted, jax.jit(lambda k: theirs(k, (5, 7)))(KEY))
