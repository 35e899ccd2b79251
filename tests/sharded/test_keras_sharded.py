"""A Keras 3 model built under a `keras.distribution` layout map, on 8 simulated devices: its `KerasInitializer`
variables are drawn by jinit's engine with their layout (each device generating its own shard), with bitwise
the values of the model built without a distribution."""

import os

import pytest

if "keras" not in __import__("sys").modules:
    os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="keras is an optional extra: pip install -e '.[keras]'")
if keras.backend.backend() != "jax":
    pytest.skip("jinit.keras needs Keras's JAX backend", allow_module_level=True)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jinit  # noqa: E402
from jinit._src import engine  # noqa: E402
from jinit.keras import KerasInitializer  # noqa: E402


def model():
    inputs = keras.Input((8, 64))
    x = keras.layers.Dense(128, kernel_initializer=KerasInitializer(jinit.glorot_uniform(), seed=1), name="up")(inputs)
    x = keras.layers.EinsumDense(
        "btd,dnh->btnh", (8, 4, 16), kernel_initializer=KerasInitializer(jinit.he_normal(), seed=2), name="heads"
    )(x)
    x = keras.layers.Reshape((8, 64))(x)
    x = keras.layers.Dense(
        32,
        kernel_initializer=KerasInitializer(jinit.orthogonal(), seed=3),
        bias_initializer=KerasInitializer(jinit.normal(0.1), seed=4),
        name="down",
    )(x)
    return keras.Model(inputs, x)


LAYOUTS = {  # variable path -> its layout's axes on a ("batch", "model") mesh
    "up/kernel": (None, "model"),
    "up/bias": ("model",),
    "heads/kernel": ("model", "batch", None),
    "down/kernel": ("model", None),
    "down/bias": ("batch",),
}


@pytest.fixture
def drawn(monkeypatch):
    """The sharding of every sample jinit's engine draws."""
    shardings = []
    draw = engine.draw

    def spy(distribution, key, shape, dtype, sharding=None, **kwargs):
        shardings.append(sharding)
        return draw(distribution, key, shape, dtype, sharding, **kwargs)

    monkeypatch.setattr(engine, "draw", spy)
    return shardings


@pytest.mark.parametrize("mesh_shape", [(2, 4), (4, 2), (1, 8)])
def test_keras_layout_map_creates_each_variable_sharded_with_unsharded_values(mesh_shape, drawn):
    plain = {v.path: np.asarray(v.value) for v in model().weights}
    del drawn[:]
    mesh = keras.distribution.DeviceMesh(mesh_shape, ["batch", "model"])
    layout_map = keras.distribution.LayoutMap(mesh)
    for path, axes in LAYOUTS.items():
        layout_map[path] = axes
    keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
    try:
        sharded = model()
    finally:
        keras.distribution.set_distribution(None)
    weights = {v.path: v.value for v in sharded.weights}
    assert set(weights) == set(plain)
    for path, value in weights.items():
        np.testing.assert_array_equal(np.asarray(value), plain[path], err_msg=path)
        axes = LAYOUTS.get(path)
        if axes is not None:
            wanted = jax.sharding.NamedSharding(value.sharding.mesh, jax.sharding.PartitionSpec(*axes))
            assert value.sharding.is_equivalent_to(wanted, value.ndim), path
            sizes = dict(zip(("batch", "model"), mesh_shape, strict=True))
            shard = tuple(n // (sizes[a] if a else 1) for n, a in zip(value.shape, axes, strict=True))
            assert all(s.data.shape == shard for s in value.addressable_shards), path
    # the elementwise samples (glorot, he, normal) were drawn by the engine with their layout: no full copy first
    assert sum(s is not None for s in drawn) >= 3
