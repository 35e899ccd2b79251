"""Composed initializers: `scaled` is its initializer's samples times the factor (derived here from the initializer's
own samples, bitwise), `packed` has the fans of one projection, and both are values that serialize nested."""

import math
import pickle
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinit

KEY = jax.random.key(11)
INNER = [
    jinit.normal(0.02),
    jinit.glorot_uniform(),
    jinit.he_normal(),
    jinit.truncated_normal(0.5, mean=1.0),
    jinit.random_uniform(-0.3, 0.7),
    jinit.orthogonal(),  # not elementwise: drawn by its own sampler, then multiplied
    jinit.constant(3.0),  # keyless
]
IDS = [repr(init).split("(")[0] for init in INNER]


def call(init, shape, dtype="float32", jit=False):
    key = None if init.keyless else KEY
    if jit:
        return jax.jit(lambda k: init(k, shape, dtype))(key)
    return init(key, shape, dtype)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("init", INNER, ids=IDS)
def test_scaled_is_the_samples_times_the_factor(init, jit):
    factor = -1 / math.sqrt(2 * 12)
    got = call(jinit.scaled(init, factor), (64, 48), jit=jit)
    expected = call(init, (64, 48), jit=jit) * jnp.float32(factor)
    np.testing.assert_array_equal(got, expected)


def round_to_bits(v, bits, smallest):
    """`v` (float64) rounded to nearest, ties to even, on the grid of a float with `bits` significant bits and
    smallest subnormal `smallest`: `v` over its quantum (a power of two, so exact) rounded by NumPy's half-to-even
    `round`, times the quantum."""
    _, e = np.frexp(v)
    quantum = np.maximum(np.ldexp(1.0, e - bits), smallest)
    return np.round(v / quantum) * quantum


@pytest.mark.parametrize("dtype, bits, smallest", [("bfloat16", 8, 2.0**-133), ("float16", 11, 2.0**-24)])
@pytest.mark.parametrize("init", [*INNER[:5], jinit.orthogonal()], ids=[*IDS[:5], "orthogonal"])
def test_scaled_low_precision_rounds_the_exact_product_once(init, dtype, bits, smallest):
    # the float32 sample times float32(factor), exact in float64, rounded once to the narrow dtype
    factor = 0.3
    got = np.asarray(call(jinit.scaled(init, factor), (300, 20), dtype)).astype(np.float64)
    exact = np.asarray(call(init, (300, 20), "float32")).astype(np.float64) * np.float64(np.float32(factor))
    np.testing.assert_array_equal(got, round_to_bits(exact, bits, smallest))


def test_rounding_the_float32_product_again_would_differ():
    # what the test above guards against: the float32 product rounded again to bfloat16 is off where it is a
    # bfloat16 midpoint (about 2**-16 of the elements: some of 2**20)
    x = np.asarray(jinit.normal(1.0)(KEY, (2**20,)), np.float64)
    exact = x * np.float64(np.float32(0.3))
    twice = np.asarray(jnp.asarray(x, jnp.float32) * jnp.float32(0.3)).astype(jnp.bfloat16).astype(np.float64)
    once = np.asarray(jinit.scaled(jinit.normal(1.0), 0.3)(KEY, (2**20,), "bfloat16")).astype(np.float64)
    np.testing.assert_array_equal(once, round_to_bits(exact, 8, 2.0**-133))
    assert (twice != once).any()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "float8_e3m4"])
@pytest.mark.parametrize(
    "init",
    [
        jinit.random_uniform(-1.0, 1.0),
        jinit.uniform(1.0),
        jinit.truncated_normal(1.0, lower=-1.5, upper=0.5),
        jinit.he_uniform(),
        jinit.trunc_normal(0.1, 1.0, a=-0.2, b=0.3),
    ],
    ids=["random_uniform", "uniform", "truncated_normal", "he_uniform", "trunc_normal"],
)
@pytest.mark.parametrize("factor", [1 / math.sqrt(12), -0.7, 3.3])
def test_scaled_stays_in_the_scaled_bounds_in_every_dtype(init, dtype, factor):
    law = init.law((64, 64), np.dtype("float32"))
    lower, upper, upper_open = law.support(np.dtype("float32"))
    f = Fraction(factor)
    lo, hi = sorted((f * lower, f * upper))
    x = np.asarray(jinit.scaled(init, factor)(KEY, (2**14,), dtype)).astype(np.float64)
    assert Fraction(float(x.min())) >= lo and Fraction(float(x.max())) <= hi
    if upper_open and factor > 0:
        assert Fraction(float(x.max())) < hi


def test_scaled_float64_and_complex():
    with jax.enable_x64(True):
        init = jinit.glorot_normal()
        got = jinit.scaled(init, 0.5)(KEY, (30, 40), "float64")
        np.testing.assert_array_equal(got, init(KEY, (30, 40), "float64") * 0.5)
    init = jinit.variance_scaling(1.0, "fan_in", "uniform")
    got = jinit.scaled(init, 0.5)(KEY, (30, 40), "complex64")
    np.testing.assert_array_equal(got, init(KEY, (30, 40), "complex64") * jnp.complex64(0.5))


def test_scaled_in_init_tree_matches_the_direct_call():
    init = jinit.scaled(jinit.normal(0.02), 0.2)
    specs = {f"layer{i}": jinit.ParamSpec((32, 32), init) for i in range(3)}
    params = jinit.init_tree(KEY, specs)
    for name, x in params.items():
        np.testing.assert_array_equal(x, init(jinit.path_key(KEY, name), (32, 32)), err_msg=name)


def test_packed_draws_the_law_of_one_projection():
    d = 1024
    qkv = jinit.packed(jinit.glorot_uniform(), 3)
    one = jinit.glorot_uniform()
    # the same distribution, exactly: the whole kernel from the law of one (d, d) projection
    assert qkv.law((d, 3 * d), np.dtype("float32")) == one.law((d, d), np.dtype("float32"))
    np.testing.assert_array_equal(qkv(KEY, (d, 3 * d)), _law_draw(one, d))
    packed = np.asarray(qkv(KEY, (d, 3 * d)), np.float64)
    separate = np.concatenate([np.asarray(one(k, (d, d)), np.float64) for k in jax.random.split(KEY, 3)], axis=1)
    # the issue's claim: the packed kernel's variance equals the unpacked projections' within 1%
    assert abs(packed.var() / separate.var() - 1) < 0.01
    # and both are Glorot's 1 / d for a (d, d) projection, within 6 standard errors of a uniform's variance
    n = packed.size
    se = (1 / d) * math.sqrt((9 / 5 - 1) / n)  # var of x**2 for U(-a, a): a**4 (1/5 - 1/9) = var**2 * 4/5
    assert abs(packed.var() - 1 / d) < 6 * se
    assert abs(separate.var() - 1 / d) < 6 * se


def _law_draw(init, d):
    """The (d, 3d) sample of the law `init` has for one (d, d) projection, drawn by the engine directly."""
    from jinit._src import engine

    return engine.draw(init.law((d, d), np.dtype("float32")), KEY, (d, 3 * d), np.dtype("float32"))


def test_packed_unpacked_variance_ratio_is_three_halves_for_glorot():
    d = 256
    raw = jinit.glorot_uniform().law((d, 3 * d), np.dtype("float32"))
    packed = jinit.packed(jinit.glorot_uniform(), 3).law((d, 3 * d), np.dtype("float32"))
    # Glorot's variance is 2 / (fan_in + fan_out): 2 / 4d packed raw, 2 / 2d per projection
    assert packed.variance / raw.variance == pytest.approx(2.0)


def test_packed_orthogonal_is_orthogonal_per_projection():
    d = 64
    qkv = jinit.packed(jinit.orthogonal(), 3)
    x = np.asarray(qkv(KEY, (d, 3 * d)), np.float64)
    keys = jax.random.split(KEY, 3)
    for i, part in enumerate(np.split(x, 3, axis=1)):
        np.testing.assert_allclose(part.T @ part, np.eye(d), atol=1e-5)
        np.testing.assert_array_equal(part, jinit.orthogonal()(keys[i], (d, d)))


def test_packed_axis_and_batch_layouts():
    # a (d, 3, h) layout needs no packing (the 3 is a batch axis); a (3h, d) layout packs axis 0
    init = jinit.packed(jinit.lecun_normal(in_axis=-1, out_axis=-2), 3, axis=0)
    law = init.law((3 * 32, 64), np.dtype("float32"))
    assert law == jinit.lecun_normal(in_axis=-1, out_axis=-2).law((32, 64), np.dtype("float32"))
    assert init(KEY, (96, 64)).shape == (96, 64)


def test_statistics_of_a_scaled_normal():
    # N(0, (0.02 f)^2): KS test against the exact normal
    f = 1 / math.sqrt(48)
    x = np.asarray(jinit.scaled(jinit.normal(0.02), f)(KEY, (200_000,)), np.float64)
    assert stats.kstest(x, stats.norm(scale=0.02 * f).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    "init",
    [
        jinit.scaled(jinit.normal(0.02), 0.5),
        jinit.scaled(jinit.orthogonal(2.0), 3),
        jinit.packed(jinit.glorot_uniform(in_axis=0), 3, axis=1),
        jinit.scaled(jinit.packed(jinit.he_normal(), 2), 0.1),
        jinit.scaled(jinit.normal(), 2.0).with_seed(4),
    ],
    ids=repr,
)
def test_values(init):
    copy = jinit.deserialize(jinit.serialize(init))
    assert copy == init and hash(copy) == hash(init) and repr(copy) == repr(init)
    assert pickle.loads(pickle.dumps(init)) == init
    config = jinit.serialize(init)
    import json

    assert jinit.deserialize(json.loads(json.dumps(config))) == init
    assert isinstance(config["config"]["init"], dict)
    assert eval(repr(init), {**vars(jinit)}) == init  # the repr is the call that rebuilds it


def test_composed_inherits_dtype_key_and_kinds():
    assert jinit.scaled(jinit.normal(dtype="bfloat16"), 2.0)(KEY, (3,)).dtype == jnp.bfloat16
    assert jinit.scaled(jinit.constant(2.0), 3.0)(None, (2,)).tolist() == [6.0, 6.0]
    with pytest.raises(TypeError, match="dtype=int32"):
        jinit.scaled(jinit.normal(), 2.0)(KEY, (3,), "int32")
    assert jinit.scaled(jinit.normal(), 2.0).with_seed(3)(None, (3,)).shape == (3,)


def test_keras_cannot_express_a_composed_initializer():
    with pytest.raises(ValueError, match="Keras cannot express"):
        jinit.to_keras(jinit.scaled(jinit.normal(), 2.0))


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: jinit.scaled(lambda k, s, d: None, 2.0), TypeError, "Argument `init` must be a jinit"),
        (lambda: jinit.scaled(jinit.normal().with_seed(1), 2.0), ValueError, "must not be seeded"),
        (lambda: jinit.scaled(jinit.normal(), float("nan")), ValueError, "`factor` must be a finite"),
        (lambda: jinit.scaled(jinit.normal(), "2"), TypeError, "`factor` must be a real number"),
        (lambda: jinit.packed(jinit.normal(), 0), ValueError, r"`count` must be a positive integer. Received: count=0"),
        (lambda: jinit.packed(jinit.normal(), 1.5), TypeError, "`count` must be an integer"),
        (lambda: jinit.packed(jinit.normal(), 3, axis="x"), TypeError, "`axis` must be an integer"),
    ],
)
def test_factory_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize(
    "init, shape, message",
    [
        (jinit.packed(jinit.glorot_uniform(), 3), (8, 10), r"count=3, axis=-1, shape=\(8, 10\)"),
        (jinit.packed(jinit.orthogonal(), 3), (8, 10), r"count=3, axis=-1, shape=\(8, 10\)"),
        (jinit.packed(jinit.glorot_uniform(), 2, axis=2), (8, 10), r"axis=2, shape=\(8, 10\)"),
        (jinit.scaled(jinit.orthogonal(), 2.0), (8,), "rank >= 2"),
    ],
)
def test_call_errors_come_before_any_array(init, shape, message, no_arrays):
    with pytest.raises(ValueError, match=message):
        init(KEY, shape)


def test_deserialize_refuses_a_bad_nested_config():
    config = jinit.serialize(jinit.scaled(jinit.normal(), 2.0))
    config["config"]["init"]["class_name"] = "no_such_initializer"
    with pytest.raises(ValueError, match="Unknown initializer 'no_such_initializer'"):
        jinit.deserialize(config)
    config["config"]["init"] = "normal"
    with pytest.raises(TypeError, match="Argument `init` must be a jinit"):
        jinit.deserialize(config)
