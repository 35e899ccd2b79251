"""`jinit.resize_rows` on 8 simulated CPU devices: a table sharded by a `NamedSharding` comes back with the same
sharding, its old rows bitwise and its new rows as unsharded (bitwise for initializers, up to the rounding of the
mean's and covariance's sums for the mean methods); a sharding that does not divide the new shape is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jinit

KEY = jax.random.key(0)
MESH = jax.make_mesh((2, 4), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
EXPLICIT = jax.make_mesh((2, 4), ("a", "b"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
OLD = jax.random.normal(jax.random.key(1), (64, 16))


CASES = [  # (method, spec, axis, new rows): every method, spec and direction once, not their product
    ("mean_resizing", P("a", "b"), 0, 72),
    ("mean_resizing", P("b", None), -1, 72),
    ("mean_resizing", P(), 0, 48),
    ("mean", P(None, "b"), 0, 72),
    ("mean", P("a", "b"), 0, 48),
    (jinit.normal(0.02), P("b", None), -1, 72),
    (jinit.normal(0.02), P(), 0, 72),
    (jinit.he_normal(), P("a", "b"), 0, 72),
    (jinit.he_normal(), P(None, "b"), 0, 48),
]


@pytest.mark.parametrize("method, spec, axis, new_rows", CASES)
@pytest.mark.parametrize("mesh", [MESH, EXPLICIT], ids=["auto", "explicit"])
def test_a_sharded_table_keeps_its_sharding_and_values(method, spec, axis, new_rows, mesh):
    old = OLD if axis == 0 else OLD.T
    sharding = NamedSharding(mesh, spec)
    sharded = jax.device_put(old, sharding)
    new = jinit.resize_rows(KEY, sharded, new_rows, method, axis=axis)
    assert new.sharding == sharding
    unsharded = jinit.resize_rows(KEY, old, new_rows, method, axis=axis)
    kept = min(new_rows, 64)
    got, old = np.asarray(new), np.asarray(old)
    np.testing.assert_array_equal(np.take(got, np.arange(kept), axis), np.take(old, np.arange(kept), axis))
    if isinstance(method, str):  # the sums of the mean and covariance, added in another order: ~1 ulp
        np.testing.assert_allclose(got, np.asarray(unsharded), rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(new, unsharded)


def test_a_sharding_that_does_not_divide_the_new_shape_is_refused():
    sharded = jax.device_put(OLD, NamedSharding(MESH, P("a", "b")))
    with pytest.raises(ValueError, match="`new_rows`: the table keeps its sharding"):
        jinit.resize_rows(KEY, sharded, 65)
    assert jinit.resize_rows(KEY, sharded, 66).shape == (66, 16)  # 66 rows split 2 ways


def test_under_jit_with_a_sharded_table():
    sharded = jax.device_put(OLD, NamedSharding(MESH, P("a", None)))
    new = jax.jit(jinit.resize_rows, static_argnums=(2, 3))(KEY, sharded, 72, "mean_resizing")
    np.testing.assert_allclose(np.asarray(new), np.asarray(jinit.resize_rows(KEY, OLD, 72)), rtol=1e-6, atol=1e-7)
    assert jnp.shape(new) == (72, 16)
