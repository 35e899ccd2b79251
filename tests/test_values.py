"""An initializer is a value (equal, hashable, printable, picklable, not a pytree), and calling it is pure."""

import copy
import dataclasses
import pickle

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit

from cases import CASES, LOW_PRECISION, ids

KEY = jax.random.key(1)


def _shape(case):
    return case.shapes[0]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_equal_and_hash_by_value(case):
    rebuilt = type(case.init)(**case.init.config)  # built anew from its arguments
    twin = copy.deepcopy(case.init)
    assert rebuilt is not case.init and twin is not case.init
    for other in (rebuilt, twin):
        assert other == case.init and hash(other) == hash(case.init)
    changed = {"seed": 1} if case.init.seed is None else {"seed": None}
    assert dataclasses.replace(case.init, **changed) != case.init  # the seed is part of the value


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_repr_rebuilds(case):
    namespace = {name: getattr(jinit, name) for name in jinit.__all__}
    text = repr(case.init)
    rebuilt = eval(text, namespace)  # the repr is the call that rebuilds the value
    assert rebuilt == case.init and repr(rebuilt) == text


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_pickle_round_trip_gives_same_values(case):
    clone = pickle.loads(pickle.dumps(case.init))
    assert clone == case.init
    key = KEY if case.random else None
    np.testing.assert_array_equal(clone(key, _shape(case)), case.init(key, _shape(case)))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_not_a_pytree(case):
    leaves = jax.tree.leaves({"init": case.init})
    assert leaves == [case.init]
    assert jax.tree.structure(case.init).num_leaves == 1


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_deterministic_pure_and_dtype(case):
    key = KEY if case.random else None
    shape = _shape(case)
    a, b = case.init(key, shape), case.init(key, shape)
    np.testing.assert_array_equal(a, b)
    assert a.shape == shape and a.dtype == jnp.float32
    if case.random and np.prod(shape) > 1:
        c = case.init(jax.random.key(2), shape)
        assert not np.array_equal(a, c), "a different key must give different values"


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_zero_size_shapes(case):
    key = KEY if case.random else None
    # each of the case's shapes with its first, or last, size set to 0 (delta_orthogonal needs out >= in,
    # so its input size is the one set to 0 instead of the last)
    last = -2 if case.id.startswith("delta") else -1
    zero_shapes = {(*s[:i], 0, *s[i:][1:]) for s in case.shapes if s for i in (0, len(s) + last if len(s) > 1 else 0)}
    for dtype in (jnp.float32, jnp.bfloat16):
        for shape in zero_shapes:
            x = case.init(key, shape, dtype)
            assert x.shape == shape and x.dtype == dtype, (shape, x.shape, x.dtype)
    assert jinit.compute_fans((0, 5)) == (0, 5)


@pytest.mark.parametrize("case", [c for c in CASES if c.complex_ok], ids=ids([c for c in CASES if c.complex_ok]))
def test_complex_dtypes(case):
    key = KEY if case.random else None
    x = case.init(key, _shape(case), jnp.complex64)
    assert x.dtype == jnp.complex64 and x.shape == _shape(case)
    assert bool(jnp.isfinite(x).all())
    if case.random and x.size > 1:
        assert float(jnp.abs(x.imag).max()) > 0, "complex samples must have an imaginary part"


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("dtype", LOW_PRECISION[:3], ids=str)
def test_low_precision_dtypes(case, dtype):
    key = KEY if case.random else None
    x = case.init(key, _shape(case), dtype)
    assert x.dtype == dtype and x.shape == _shape(case)
    assert bool(jnp.isfinite(x.astype(jnp.float32)).all())


def test_factory_dtype_is_default_and_call_dtype_overrides():
    init = jinit.normal(1.0, dtype=jnp.bfloat16)
    assert init(KEY, (3,)).dtype == jnp.bfloat16
    assert init(KEY, (3,), jnp.float16).dtype == jnp.float16
    assert jinit.normal(dtype="bfloat16") == jinit.normal(dtype=jnp.bfloat16)  # dtypes are stored by name
    assert repr(jinit.zeros) == "zeros" and jinit.zeros(None, (2,), jnp.int32).dtype == jnp.int32


def test_default_dtype_follows_x64():
    with jax.enable_x64(True):
        assert jinit.glorot_uniform()(KEY, (2, 3)).dtype == jnp.float64
        assert jinit.ones(None, (2,)).dtype == jnp.float64
    assert jinit.glorot_uniform()(KEY, (2, 3)).dtype == jnp.float32


def test_float64_without_x64_warns_like_jax():
    with pytest.warns(UserWarning, match="float64.*truncated to dtype float32"):
        x = jinit.normal()(KEY, (2,), jnp.float64)
    assert x.dtype == jnp.float32


def test_repr_is_explicit():
    assert repr(jinit.glorot_uniform()) == "glorot_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype=None)"
    assert repr(jinit.normal(0.1, "bfloat16")) == "normal(stddev=0.1, dtype='bfloat16', mean=0.0)"
    assert repr(jinit.constant([[1, 2]])) == "constant(value=((1, 2),), dtype=None)"


def test_equality_distinguishes_arguments_and_factories():
    assert jinit.glorot_uniform() == jinit.glorot_uniform()
    assert jinit.xavier_uniform() == jinit.glorot_uniform()  # an alias is the same factory
    assert jinit.normal(0.1) != jinit.normal(0.2)
    assert jinit.normal(1) == jinit.normal(1.0)
    assert jinit.random_normal(0.0, 0.05) != jinit.normal(0.05)  # same samples, different factories
    assert len({jinit.he_normal(), jinit.he_normal(), jinit.lecun_normal()}) == 2


@pytest.mark.parametrize("case", [c for c in CASES if c.random], ids=ids([c for c in CASES if c.random]))
def test_typed_and_legacy_keys_give_same_values(case):
    legacy = jax.random.PRNGKey(3)
    typed = jax.random.wrap_key_data(legacy)
    np.testing.assert_array_equal(case.init(legacy, _shape(case)), case.init(typed, _shape(case)))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_jit_gives_same_values_as_eager(case):
    key = KEY if case.random else None
    shape = case.shapes[0]
    jitted = jax.jit(case.init, static_argnums=(1, 2))
    np.testing.assert_array_equal(jitted(key, shape, jnp.float32), case.init(key, shape, jnp.float32))


def test_initializer_as_static_argument_does_not_retrace():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def build(key):
        return jinit.glorot_uniform()(key, (4, 5))

    build_with = jax.jit(chex.assert_max_traces(lambda init, key: init(key, (4, 5)), n=1), static_argnums=0)
    first = build_with(jinit.he_normal(), KEY)
    again = build_with(jinit.he_normal(), jax.random.key(9))  # an equal, newly built value: no retrace
    assert first.shape == again.shape == (4, 5)
    assert build(KEY).shape == (4, 5)


def test_vmap_over_keys():
    keys = jax.random.split(KEY, 4)
    init = jinit.truncated_normal(1.0)
    batched = jax.vmap(lambda k: init(k, (3, 5)))(keys)
    for i in range(4):
        np.testing.assert_array_equal(batched[i], init(keys[i], (3, 5)))
    ortho = jax.vmap(lambda k: jinit.orthogonal()(k, (4, 4)))(keys)
    np.testing.assert_array_equal(ortho[2], jinit.orthogonal()(keys[2], (4, 4)))


SHARDED = [
    (jinit.normal(), (4, 6)),
    (jinit.glorot_uniform(), (4, 6)),
    (jinit.variance_scaling(1.0, "fan_in", "truncated_normal"), (4, 6)),
    (jinit.orthogonal(), (4, 6)),
    (jinit.delta_orthogonal(), (3, 4, 6)),
    (jinit.zeros, (4, 6)),
    (jinit.constant(2.0), (4, 6)),
    (jinit.identity(), (4, 6)),
]


@pytest.mark.parametrize("axis_type", ["Explicit", "Auto"])
@pytest.mark.parametrize("init, shape", SHARDED, ids=[init.name for init, _ in SHARDED])
def test_out_sharding(init, shape, axis_type):
    mesh = jax.make_mesh((1,), ("x",), axis_types=(getattr(jax.sharding.AxisType, axis_type),))
    expected = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    unsharded = init(KEY, shape)
    x = init(KEY, shape, out_sharding=expected)
    assert x.sharding.is_equivalent_to(expected, x.ndim)
    np.testing.assert_array_equal(x, unsharded)
    with jax.set_mesh(mesh):
        y = init(KEY, shape, out_sharding=jax.sharding.PartitionSpec("x"))
    assert y.sharding.is_equivalent_to(expected, y.ndim)
    np.testing.assert_array_equal(y, unsharded)
    z = init(KEY, shape, out_sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    np.testing.assert_array_equal(z, unsharded)


def test_out_sharding_rejects():
    with pytest.raises(ValueError, match=r"`out_sharding`.*no mesh is set.*out_sharding=(P|PartitionSpec)\('x',\)"):
        jinit.normal()(KEY, (2, 2), out_sharding=jax.sharding.PartitionSpec("x"))
    with pytest.raises(TypeError, match=r"`out_sharding`.*out_sharding='x'"):
        jinit.zeros(KEY, (2, 2), out_sharding="x")


def test_keyless_initializers_accept_a_key_or_none():
    for init in (jinit.zeros, jinit.ones, jinit.constant(2.0), jinit.identity()):
        np.testing.assert_array_equal(init(None, (2, 2)), init(KEY, (2, 2)))


def test_constant_values():
    np.testing.assert_array_equal(jinit.constant([[1.0], [2.0]])(None, (2, 3)), np.array([[1.0] * 3, [2.0] * 3]))
    x = jinit.constant(1 + 2j)(None, (2,), jnp.complex64)
    assert x.dtype == jnp.complex64 and complex(x[0]) == 1 + 2j
    assert jinit.constant(np.float32(0.5)) == jinit.constant(0.5)
    assert jinit.constant(jnp.array([1, 2])) == jinit.constant((1, 2))


def test_numpy_and_jax_integers_as_jax_takes_them():
    """Dims as NumPy or concrete JAX integers, a shape as a 1-D integer array, axes as integer arrays: as JAX."""
    jnn = jax.nn.initializers
    for shape in (np.array([3, 4]), (np.int64(3), jnp.int32(4)), [np.int8(3), 4], jnp.array([3, 4])):
        np.testing.assert_array_equal(jinit.normal()(KEY, shape), jnn.normal()(KEY, (3, 4)))
    ours = jinit.variance_scaling(1.0, "fan_in", "normal", in_axis=np.array([0, 1]), out_axis=jnp.int32(-1))
    assert ours == jinit.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 1), out_axis=-1)
    theirs = jnn.variance_scaling(1.0, "fan_in", "normal", in_axis=np.array([0, 1]), out_axis=-1)
    np.testing.assert_array_equal(ours(KEY, (2, 3, 4)), theirs(KEY, (2, 3, 4)))
    assert jinit.orthogonal(column_axis=np.int64(0)) == jinit.orthogonal(column_axis=0)
