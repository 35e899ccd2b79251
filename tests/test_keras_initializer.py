"""jinit.keras.KerasInitializer against real Keras 3 (JAX backend): layers, configs, saving and loading models."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported

import pickle

import pytest

keras = pytest.importorskip("keras", reason="keras is an optional extra: pip install jinit[keras]")

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jinit  # noqa: E402
from jinit.keras import KerasInitializer  # noqa: E402


def test_is_a_keras_initializer_with_the_seeded_values():
    init = KerasInitializer(jinit.glorot_uniform(), seed=7)
    assert isinstance(init, keras.initializers.Initializer)
    np.testing.assert_array_equal(init((5, 3)), jinit.glorot_uniform().with_seed(7)(None, (5, 3)))
    np.testing.assert_array_equal(init((5, 3)), init((5, 3)))  # seeded: the same values on every call
    assert init((2, 2), "float16").dtype == np.float16
    layer = keras.layers.Dense(3, kernel_initializer=init)
    layer.build((None, 5))
    np.testing.assert_array_equal(layer.kernel.value, init((5, 3)))


def test_identifiers_and_configs_resolve():
    assert KerasInitializer("he_normal", seed=1).init == jinit.he_normal()
    assert KerasInitializer({"class_name": "TruncatedNormal", "config": {"stddev": 0.5}}).init == jinit.get(
        {"class_name": "TruncatedNormal", "config": {"stddev": 0.5}}
    )
    config = keras.initializers.serialize(KerasInitializer(jinit.orthogonal(2.0), seed=3))
    assert config["registered_name"] == "jinit>KerasInitializer"
    loaded = keras.initializers.deserialize(config)
    assert loaded == KerasInitializer(jinit.orthogonal(2.0), seed=3) and hash(loaded) == hash(KerasInitializer(
        jinit.orthogonal(2.0), seed=3))  # fmt: skip
    assert pickle.loads(pickle.dumps(loaded)) == loaded


def test_unseeded_draws_a_seed_and_saves_none():
    a, b = KerasInitializer(jinit.normal()), KerasInitializer(jinit.normal())
    assert a.get_config()["seed"] is None and a == b
    keras.utils.set_random_seed(5)
    first = KerasInitializer(jinit.normal())((4,))
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(KerasInitializer(jinit.normal())((4,)), first)
    seeded = KerasInitializer(jinit.normal().with_seed(4))  # the jinit seed is kept, and saved in its config
    np.testing.assert_array_equal(seeded((4,)), jinit.normal()(jax.random.key(4), (4,)))
    np.testing.assert_array_equal(KerasInitializer.from_config(seeded.get_config())((4,)), seeded((4,)))


@pytest.mark.filterwarnings(
    # Keras 3.15 saving converts variables with a NumPy call that warns (built-in initializers too)
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_model_saves_and_loads(tmp_path):
    def build():
        return keras.Sequential([
            keras.Input((6,)),
            keras.layers.Dense(4, kernel_initializer=KerasInitializer(jinit.he_normal(), seed=1),
                               bias_initializer=KerasInitializer(jinit.constant(0.5))),
            keras.layers.Dense(2, kernel_initializer=KerasInitializer(jinit.truncated_normal(0.3, mean=0.1), seed=2)),
        ])  # fmt: skip

    model = build()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for ours, theirs in zip(model.layers, loaded.layers, strict=True):
        assert theirs.kernel_initializer == ours.kernel_initializer
        np.testing.assert_array_equal(theirs.kernel.value, ours.kernel.value)
    rebuilt = keras.models.model_from_json(model.to_json())  # a fresh model from the config: the seeded values
    np.testing.assert_array_equal(rebuilt.layers[1].kernel.value, model.layers[1].kernel.value)
    np.testing.assert_array_equal(rebuilt.layers[0].bias.value, np.full(4, 0.5, np.float32))


def test_rejects():
    with pytest.raises(TypeError, match=r"`init` must be a jinit initializer.*Received: init=<function"):
        KerasInitializer(jax.nn.initializers.he_normal())
    with pytest.raises(ValueError, match=r"Unknown initializer 'nope'"):
        KerasInitializer("nope")
    with pytest.raises(TypeError, match=r"`seed`.*Received: seed='1'"):
        KerasInitializer(jinit.zeros, seed="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"keys 'init' and 'seed'.*Received: config=\{'init'"):
        KerasInitializer.from_config({"init": jinit.serialize(jinit.zeros), "extra": 1})
    with pytest.raises(ValueError, match=r"Unknown initializer"):
        KerasInitializer.from_config({"init": {"class_name": "__lambda__", "config": {}}})
