"""The engine: eager calls draw from kernels compiled per distribution, dtype and size (never per shape), every path
(stream, exact, looped, JAX's own stream) gives JAX's values, nothing runs behind a call, and a call is short."""

import math
import os
import subprocess
import sys
import threading
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jinit
from jinit._src import distributions, engine, host_keys, threefry

KEY = jax.random.key(42)
jnn = jax.nn.initializers


@given(st.integers(1, engine.CHUNK))
@settings(max_examples=300, deadline=None)
def test_bucket_is_the_smallest_that_holds_n(n):
    size = engine.bucket(n)
    assert size >= n and size in engine.BUCKETS
    smaller = [b for b in engine.BUCKETS if b < size]
    assert not smaller or smaller[-1] < n
    assert size <= max(256, 2**0.25 * n + 64)  # four sizes per octave, multiples of 64: 19% in vain, plus 64


def test_buckets():
    assert engine.BUCKETS[0] == 256 and engine.BUCKETS[-1] == engine.CHUNK
    assert all(b % 64 == 0 for b in engine.BUCKETS) and list(engine.BUCKETS) == sorted(set(engine.BUCKETS))


PAIRS = [
    (jinit.normal(0.3), jnn.normal(0.3)),
    (jinit.truncated_normal(1.0), jnn.truncated_normal(1.0)),
    (jinit.glorot_uniform(), jnn.glorot_uniform()),
    (jinit.he_normal(), jnn.he_normal()),
]


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["normal", "truncated_normal", "glorot_uniform", "he_normal"])
@pytest.mark.parametrize(
    "shape",
    [
        *[(1, 1), (255, 1), (257, 1), (3, 2**14 + 1), (engine.CHUNK, 1), (engine.CHUNK + 1, 1)],
        *[(2 * engine.CHUNK + 7, 3), (engine.WHOLE // 4096 - 1, 4096), (engine.WHOLE // 4096, 4096)],
    ],
    ids=str,
)
def test_bucket_and_piece_boundaries_match_jax(ours, theirs, shape):
    np.testing.assert_array_equal(ours(KEY, shape), theirs(KEY, shape))


def test_positioned_stream_matches_the_specification_across_the_high_word():
    """`positioned_bits` is `reference_bits`: at the start, mid-stream and across the carry into the high word."""
    data = np.asarray(jax.random.key_data(KEY))
    draw = jax.jit(lambda d, start: threefry.positioned_bits(jnp.concatenate([d, start]), 32, (64,)))
    for start in (0, 12345, 2**32 - 20, 2**40 + 3):
        np.testing.assert_array_equal(draw(data, threefry.position(start)), threefry.reference_bits(data, start, 64))
    np.testing.assert_array_equal(threefry.reference_bits(data, 0, 1000), jax.random.bits(KEY, (1000,)))


def test_row_bits_are_the_positioned_stream_up_to_a_multiple_of_two_to_the_32():
    """`row_bits` leaves out the carry: the specification's bits for every row that ends by the next 2**32."""
    data = np.asarray(jax.random.key_data(KEY))
    draw = jax.jit(lambda d, start: threefry.row_bits(jnp.concatenate([d, start]), 32, (64,)))
    for start in (0, 12345, 2**32 - 64, 2**40 + 3):
        np.testing.assert_array_equal(draw(data, threefry.position(start)), threefry.reference_bits(data, start, 64))
    crossing = draw(data, threefry.position(2**32 - 20))  # (a row never crosses: there, no carry, other bits)
    assert not np.array_equal(crossing, threefry.reference_bits(data, 2**32 - 20, 64))


@pytest.mark.parametrize("bits", [threefry.positioned_bits, threefry.row_bits], ids=["positioned", "row"])
@pytest.mark.parametrize("bit_width", [8, 16, 32, 64])
def test_batched_bits_are_each_keys_own(bits, bit_width):
    """Under `vmap`, once and nested (the `custom_vmap` rule, and the rule's operations batched again), each key's
    bits are its own draw's, in every bit width."""
    rng = np.random.default_rng(bit_width)
    data = rng.integers(0, 2**32, (2, 3, 4), dtype=np.uint32)
    data[..., 2] = 0  # (rows from the stream's start: no carry for `row_bits` to leave out)
    data[..., 3] = rng.integers(0, 2**20, (2, 3), dtype=np.uint32)
    with jax.enable_x64(bit_width == 64):
        one = jax.jit(lambda d: bits(d, bit_width, (4, 8)))
        expected = np.stack([np.stack([np.asarray(one(data[i, j])) for j in range(3)]) for i in range(2)])
        assert expected.dtype == np.dtype(f"uint{bit_width}") and len(np.unique(expected)) > 8
        np.testing.assert_array_equal(jax.jit(jax.vmap(jax.vmap(one)))(data), expected)
        np.testing.assert_array_equal(jax.jit(jax.vmap(one))(data[1]), expected[1])
        np.testing.assert_array_equal(jax.jit(jax.vmap(one, in_axes=1, out_axes=1))(data), expected)


def test_hash_matches_jax_primitive():
    """The unrolled hash is JAX's threefry2x32, on random keys and counters (the primitive is JAX's reference)."""
    rng = np.random.default_rng(0)
    k1, k2, x0, x1 = (rng.integers(0, 2**32, 4096, dtype=np.uint32) for _ in range(4))
    from jax.extend import random as jex_random

    expected = jax.jit(lambda *a: jex_random.threefry2x32_p.bind(*a))(k1, k2, x0, x1)
    ours = jax.jit(threefry.hash_unrolled)(k1, k2, x0, x1)
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_verified_and_the_fallback_when_jax_changes(monkeypatch):
    assert threefry.verified()
    monkeypatch.setattr(host_keys, "checked", lambda: False)  # (a release `host_keys.CHECKED` does not list)
    monkeypatch.setattr(threefry, "reference_bits", lambda data, start, n: np.zeros(n, np.uint32))
    threefry.verified.cache_clear()
    try:
        assert not threefry.verified()  # a JAX whose stream differs from the specification...
        calls = []
        monkeypatch.setattr(engine, "_piece", lambda *a, **k: calls.append(a))
        for init, theirs in PAIRS:  # ...gets JAX's own code: the same values, never the positioned stream
            np.testing.assert_array_equal(init(KEY, (33, 17)), theirs(KEY, (33, 17)))
            np.testing.assert_array_equal(jax.jit(lambda k, i=init: i(k, (33, 17)))(KEY), theirs(KEY, (33, 17)))
        assert calls == []
    finally:
        threefry.verified.cache_clear()


def test_a_checked_release_knows_jaxs_bits_without_compiling(monkeypatch):
    """Under a release `host_keys.CHECKED` lists (on CPU), `verified` holds without JAX's program: the release's
    bits are the specification's (`test_positioned_stream_matches_the_specification_across_the_high_word`)."""
    if not host_keys.checked():
        pytest.skip(f"jax {jax.__version__} is not in host_keys.CHECKED: its bits are compiled and compared")

    def compiled(*_):
        raise AssertionError("compiled JAX's program")

    monkeypatch.setattr(host_keys, "reference", compiled)
    threefry.verified.cache_clear()
    try:
        assert threefry.verified()
    finally:
        threefry.verified.cache_clear()


def test_verified_first_under_x64_is_still_true(monkeypatch):
    """First asked under ``jax_enable_x64`` (a float64 draw), the check compares 32-bit words, not x64's 64-bit
    default bits (which made it fail, and every later draw of the process take JAX's own, slower, code). Checked
    by compiling JAX's program, as under a release `host_keys.CHECKED` does not list."""
    monkeypatch.setattr(host_keys, "checked", lambda: False)
    threefry.verified.cache_clear()
    host_keys.reference.cache_clear()
    try:
        with jax.enable_x64(True):
            assert threefry.verified()
    finally:
        threefry.verified.cache_clear()
        host_keys.reference.cache_clear()


def test_fast_adopt_is_checked_and_falls_back(monkeypatch):
    assert engine._fast_adopt()
    changed = types.SimpleNamespace(batched_device_put=lambda *a, **k: jnp.zeros(3))  # a JAX whose internal differs
    monkeypatch.setattr(engine, "pxla", changed)
    engine._fast_adopt.cache_clear()
    try:
        assert not engine._fast_adopt()
        np.testing.assert_array_equal(jinit.normal()(KEY, (9, 5)), jnn.normal()(KEY, (9, 5)))
    finally:
        engine._fast_adopt.cache_clear()


def test_small_results_alias_the_kernels_buffer_and_keep_the_keys_device():
    x = jinit.uniform()(KEY, (300, 7))
    assert not x.committed and x.sharding == jnp.zeros(3).sharding
    committed = jax.device_put(KEY, jax.devices()[0])
    y = jinit.uniform()(committed, (300, 7))
    assert y.committed
    np.testing.assert_array_equal(x, y)
    big = jinit.uniform()(committed, (engine.CHUNK + 5,))
    assert big.committed and not jinit.uniform()(KEY, (engine.CHUNK + 5,)).committed


LAWS = [
    distributions.Normal(0.1),
    distributions.Normal(0.1, 0.2),
    distributions.Uniform(0.1, 0.0, 0.1),
    distributions.truncated_normal(1.0, None, -2.0, 2.0, -2.0, 2.0, np.dtype("float32")),
    distributions.truncated_normal(1.0, 0.5, -2.0, 2.0, -1.5, 2.5, np.dtype("float32")),
    distributions.RandomUniform(0.0, 1.0, 0.0, 0.99),
    distributions.ScaledNormal(0.1),
    distributions.ScaledUniform(0.1),
    distributions.ScaledTruncatedNormal(0.1),
]


def test_distributions_never_share_a_kernel():
    """Each distribution's pytree structure differs from every other's, so a jit cache never confuses them.

    (With `jax.tree_util.register_dataclass`, jax 0.10.2 compared the structures of two classes with the same
    fields equal: a kernel cache then gave, now and then, one distribution the program of another.)
    """
    structures = [jax.tree.structure(law) for law in LAWS]
    for i, a in enumerate(structures):
        for j, b in enumerate(structures):
            assert (a == b) == (i == j), (LAWS[i], LAWS[j])


def test_every_distribution_at_one_size_in_one_process():
    """Same size, same dtype, every variance-scaling distribution in turn: each gives JAX's values."""
    shape = (131, 97)
    for distribution in ("normal", "uniform", "truncated_normal") * 2:
        for mode in ("fan_in", "fan_avg"):
            ours = jinit.variance_scaling(1.3, mode, distribution)(KEY, shape)
            np.testing.assert_array_equal(ours, jnn.variance_scaling(1.3, mode, distribution)(KEY, shape))


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


OWN_STREAM_CASES = [
    (jinit.normal(0.7), jnn.normal(0.7)),
    (jinit.uniform(2.0), jnn.uniform(2.0)),
    (jinit.truncated_normal(0.3), jnn.truncated_normal(0.3)),
    (jinit.lecun_normal(), jnn.lecun_normal()),
    (jinit.glorot_uniform(), jnn.glorot_uniform()),
    (jinit.he_normal(), jnn.he_normal()),
]


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_other_prng_implementations_draw_staged_bits_with_jaxs_values(impl, monkeypatch):
    """Their bits come from XLA's RngBitGenerator: drawn in a loop of their own (`engine.stages`), with JAX's
    values in float32, and in narrower floats (computed in float32, `distributions.compute_dtype`) the values
    drawn without staging."""
    key = jax.random.key(3, impl=impl)
    assert engine.stages(key)
    cases = [(ours, theirs, shape) for ours, theirs in OWN_STREAM_CASES for shape in [(7, 5, 6)]]
    narrow = [(jnp.bfloat16, jnp.float16), ()]
    for ours, theirs, shape in cases:
        np.testing.assert_array_equal(ours(key, shape), theirs(key, shape))
        narrow[1] += tuple(ours(key, shape, dtype) for dtype in narrow[0])
    monkeypatch.setattr(engine, "stages", lambda key: False)
    unstaged = [ours(key, shape, dtype) for ours, _, shape in cases for dtype in narrow[0]]
    for a, b in zip(narrow[1], unstaged, strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    monkeypatch.undo()
    hlo = engine._exact.lower(
        key, distributions.Normal(1.0), shape=(8, 4), dtype=np.dtype(np.float32), sharding=None,
        positioned=False, staged=True,
    ).as_text()  # fmt: skip
    assert "case" in hlo or "conditional" in hlo or "stablehlo.if" in hlo  # the bits' own loop


def test_threefry_bits_are_not_staged():
    assert not engine.stages(KEY) and not engine.stages(jax.random.key_data(KEY))  # typed and raw keys
    assert not engine.stages(jax.random.key_data(jax.random.key(0, impl="rbg")))  # raw, not the default's shape
    with jax.threefry_partitionable(False):
        assert not engine.stages(KEY)


def test_staging_is_refused_when_its_bits_differ(monkeypatch):
    impl = jax.random.key(0, impl="rbg").dtype._impl
    engine._staged_impl.cache_clear()

    def different(words, impl, staged):
        plain, ours = engine._staging_example(words, impl, staged)
        return [plain, ours + 1]

    monkeypatch.setattr(engine, "_staging_example", different)
    try:
        assert engine._staged_impl(impl) is None
        key = jax.random.key(3, impl="rbg")
        np.testing.assert_array_equal(jinit.normal()(key, (40, 3)), jnn.normal()(key, (40, 3)))  # JAX's way
    finally:
        engine._staged_impl.cache_clear()


def test_new_hyperparameters_do_not_retrace(monkeypatch):
    traced = chex.assert_max_traces(distributions.Normal.sample, n=2)  # the stream kernel and the exact one
    monkeypatch.setattr(distributions.Normal, "sample", traced)
    shape = (13, 29, 3)  # a shape no other test uses
    for stddev in (0.1, 0.2, 0.3, 1.5):
        x = jinit.normal(stddev)(KEY, shape, jnp.float16)
        y = jax.jit(lambda k, s=stddev: jinit.normal(s)(k, shape, jnp.float16))(KEY)
        np.testing.assert_array_equal(x, y)


def test_eager_calls_on_new_shapes_compile_only_new_sizes():
    init = jinit.glorot_uniform()
    init(KEY, (7, 11))  # 77 elements: the smallest bucket
    init(KEY, (1000, 1000))  # pieces of CHUNK
    before = engine._piece._cache_size(), engine._exact._cache_size()
    for shape in [(31, 5), (4, 4, 3, 5), (2, 128), (999, 1001), (3, 3, 300, 300)]:  # new shapes, known sizes
        init(KEY, shape)
    assert (engine._piece._cache_size(), engine._exact._cache_size()) == before


def test_closed_over_key_under_jit():
    """A concrete key captured by a user's jit is drawn in the exact shape, with the same values."""
    init = jinit.truncated_normal(0.5)
    np.testing.assert_array_equal(jax.jit(lambda: init(KEY, (6, 7)))(), init(KEY, (6, 7)))
    big = (engine.CHUNK + 3,)
    np.testing.assert_array_equal(jax.jit(lambda: init(KEY, big))(), init(KEY, big))


def test_eval_shape_allocates_nothing():
    out = jax.eval_shape(lambda k: jinit.he_uniform()(k, (1024, 4096), jnp.bfloat16), KEY)
    assert out.shape == (1024, 4096) and out.dtype == jnp.bfloat16


def test_compute_dtype_and_casts_stay_in_bounds():
    assert distributions.compute_dtype(jnp.dtype(jnp.bfloat16)) == jnp.float32
    assert distributions.compute_dtype(jnp.dtype(jnp.float64)) == jnp.float64
    x = jnp.array([0.99999, 1.0, -1.0, -1.00001], jnp.float32)
    for dtype in (jnp.bfloat16, jnp.float16, jnp.float8_e4m3fn, jnp.float8_e5m2):
        y = distributions.cast(x, jnp.dtype(dtype), -1.0, 1.0, upper_open=True).astype(jnp.float32)
        assert float(y.max()) < 1.0 and float(y.min()) >= -1.0, dtype


def test_random_uniform_never_reaches_maxval():
    """minval + u * (maxval - minval) rounds up to maxval for some u; the result stays in [minval, maxval)."""
    narrow = jinit.random_uniform(1.0, 1.0 + 2**-22)(KEY, (1000,))  # without the clamp, a quarter hit maxval
    assert float(narrow.min()) >= 1.0 and float(narrow.max()) < 1.0 + 2**-22
    wide = jinit.random_uniform(0.9, 1.0)(jax.random.key(0), (2**24,))  # without the clamp, 3 values are 1.0
    assert float(wide.max()) < 1.0


def test_truncated_bounds_under_jit_give_the_eager_values():
    """For bounds other than ±2, JAX's own truncated_normal differs between eager and jit (XLA evaluates the erf
    of constant bounds while compiling); jinit gives JAX's eager values in both modes."""
    ours = jinit.truncated_normal(2.0, lower=-0.5, upper=0.25)
    theirs = jnn.truncated_normal(2.0, lower=-0.5, upper=0.25)
    eager = theirs(KEY, (5, 7))
    np.testing.assert_array_equal(ours(KEY, (5, 7)), eager)
    np.testing.assert_array_equal(jax.jit(lambda k: ours(k, (5, 7)))(KEY), eager)
    assert not np.array_equal(jax.jit(lambda k: theirs(k, (5, 7)))(KEY), eager)  # JAX's own jit: not the same


# ------------------------------------------------------------------------------------------ nothing behind a call


def test_no_threads_and_nothing_pending():
    """Repeated shapes (which used to start background compilations) leave no thread behind."""
    before = set(threading.enumerate())
    for _ in range(3):
        for shape in [(41, 43), (43, 47), (engine.CHUNK + 11,)]:
            jinit.lecun_uniform()(KEY, shape).block_until_ready()
    assert set(threading.enumerate()) == before


EXIT_SCRIPT = """
import atexit, jax, jinit
init = jinit.he_uniform()
key = jax.random.key(0)
for shape in [(37, 41), (37, 41), (engine_chunk + 5,), (engine_chunk + 5,)]:
    init(key, shape).block_until_ready()
atexit.register(lambda: print("at exit", init(key, (37, 41)).shape, flush=True))  # a call during shutdown
print("done", flush=True)
""".replace("engine_chunk", str(engine.CHUNK))


def test_calls_at_interpreter_exit_work():
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["done", "at", "exit", "(37,", "41)"] and "Error" not in proc.stderr


# --------------------------------------------------------------------------------------------- bad sizes


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((2**40, 2**40), "float32"),
        ((2**63,), "float32"),
        ((2**62,), "float32"),
        ((2**61,), "complex128"),
        ((2**31, 2**31, 2**2), "bfloat16"),
    ],
    ids=str,
)
@pytest.mark.parametrize("init", [jinit.normal(), jinit.zeros, jinit.orthogonal()], ids=["normal", "zeros", "orth"])
def test_sizes_the_engine_cannot_index_fail_at_once(init, shape, dtype, no_arrays):
    if dtype == "complex128" and init is jinit.zeros:
        dtype = "complex64"  # x64 is off: JAX's dtype would be truncated, with a warning
    message = r"`shape` (is too large|must contain sizes below 2\*\*63).*Received: shape="
    with jax.enable_x64(dtype == "complex128"), pytest.raises(ValueError, match=message):
        init(KEY, shape, dtype)


# ---------------------------------------------------------------------------------------------- a short path


def _jinit_calls(fn) -> list[str]:
    """The Python functions of jinit that one call of `fn` runs, in order (dataclass-generated ones included)."""
    root = os.path.dirname(jinit.__file__)
    calls = []

    def profile(frame, event, arg):
        if event == "call":
            code, caller = frame.f_code, frame.f_back
            ours = code.co_filename.startswith(root)
            generated = code.co_filename == "<string>" and caller and caller.f_code.co_filename.startswith(root)
            if ours or generated:
                calls.append(f"{os.path.basename(code.co_filename)}:{code.co_qualname}")

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_one_call_runs_few_functions_of_jinit():
    """An eager call of a built-in initializer runs at most 12 of jinit's functions before its kernel (JAX: 3)."""
    init = jinit.glorot_uniform()
    init(KEY, (784, 256))  # compiled, checked
    calls = _jinit_calls(lambda: init(KEY, (784, 256)))
    before_kernel = calls[: calls.index("engine.py:adopt")]  # the last is the kernel's pytree flattening
    assert len(before_kernel) <= 12, before_kernel
    assert len(calls) <= 13, calls
    modules = {call.split(":")[0] for call in calls} - {"<string>"}
    assert len(modules) <= 7, calls
