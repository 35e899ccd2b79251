"""A Keras 3 model built sharded over 8 simulated CPU devices under a `keras.distribution` layout map, its
variables drawn by jinit's engine with their layouts.

Keras 3 (JAX backend) calls an initializer with the variable's layout when the layout map gives it one;
`jinit.keras.KerasInitializer` takes it, so each variable is created with its sharding, each device generating
only its own shard (Keras's own initializers create the whole value, then reshard it, unless it is large). The
script builds the model without and with the distribution, checks that every variable has the same values
bitwise and the layout asked for, prints where the shards live, and exits with an error otherwise.

Run: ``.venv/bin/python examples/keras_sharded_model.py`` (a few seconds; needs ``pip install -e '.[keras]'``).
On a machine with 8 accelerators, drop the XLA_FLAGS line.
"""

import os

os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import keras
import numpy as np

import jinit
from jinit.keras import KerasInitializer

WIDTH, HEADS = 256, 8
LAYOUTS = {"up/kernel": (None, "model"), "up/bias": ("model",), "qkv/kernel": (None, "model", None)}


def model():
    inputs = keras.Input((16, 64))
    x = keras.layers.Dense(WIDTH, kernel_initializer=KerasInitializer(jinit.he_normal(), seed=1), name="up")(inputs)
    # EinsumDense gives a variance-scaling KerasInitializer its kernel's input and output axes, as Keras's own
    x = keras.layers.EinsumDense(
        "btd,dnh->btnh",
        (16, HEADS, WIDTH // HEADS),
        kernel_initializer=KerasInitializer(jinit.glorot_uniform(), seed=2),
        name="qkv",
    )(x)
    return keras.Model(inputs, x)


def main():
    plain = {v.path: np.asarray(v.value) for v in model().weights}
    mesh = keras.distribution.DeviceMesh((2, 4), ["data", "model"])
    layout_map = keras.distribution.LayoutMap(mesh)
    for path, axes in LAYOUTS.items():
        layout_map[path] = axes
    keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="data"))
    sharded = model()
    for variable in sharded.weights:
        value = variable.value
        if not np.array_equal(np.asarray(value), plain[variable.path]):
            raise SystemExit(f"{variable.path}: sharded values differ from unsharded ones")
        wanted = jax.sharding.NamedSharding(value.sharding.mesh, jax.P(*LAYOUTS[variable.path]))
        if not value.sharding.is_equivalent_to(wanted, value.ndim):
            raise SystemExit(f"{variable.path}: sharded as {value.sharding.spec}, not {LAYOUTS[variable.path]}")
        shard, devices = value.addressable_shards[0].data.shape, len(value.devices())
        print(f"{variable.path:12} {value.shape} as {value.sharding.spec}: shards of {shard} on {devices} devices")
    print("Keras model built sharded by jinit: every variable bitwise its unsharded value, with its layout.")


if __name__ == "__main__":
    main()
