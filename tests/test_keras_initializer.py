"""jinit.keras.KerasInitializer against real Keras 3 (JAX backend): layers, configs, saving and loading models."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported

import pickle

import pytest

keras = pytest.importorskip("keras", reason="keras is an optional extra: pip install -e '.[keras]'")

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


def _kernel_ks(layer_type, initializer, **kwargs):
    """The query kernel of a MultiHeadAttention, or the kernel of an EinsumDense, built with `initializer`."""
    if layer_type == "mha":
        layer = keras.layers.MultiHeadAttention(num_heads=8, key_dim=32, kernel_initializer=initializer)
        layer.build((2, 5, 64), (2, 5, 64))
        return np.asarray(layer._query_dense.kernel.value).ravel()
    layer = keras.layers.EinsumDense("btd,dnh->btnh", output_shape=(None, 4, 16), kernel_initializer=initializer)
    layer.build((None, 5, 96))
    return np.asarray(layer.kernel.value).ravel()


@pytest.mark.parametrize("layer_type", ["mha", "einsum"])
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (jinit.glorot_uniform(), keras.initializers.GlorotUniform(seed=3)),
        (jinit.he_normal(), keras.initializers.HeNormal(seed=3)),
        (jinit.variance_scaling(2.0, "fan_avg", "normal"),
         keras.initializers.VarianceScaling(2.0, "fan_avg", "untruncated_normal", seed=3)),
    ],
    ids=["glorot_uniform", "he_normal", "variance_scaling"],
)  # fmt: skip
def test_einsum_layers_give_jinit_variance_scaling_the_kernels_fans(layer_type, ours, theirs):
    """Keras's EinsumDense (and so MultiHeadAttention) re-target a VarianceScaling's fans to the kernel's input and
    output axes; a jinit variance-scaling initializer gets the same fans, so the same distribution."""
    from scipy import stats

    x = _kernel_ks(layer_type, KerasInitializer(ours, seed=3))
    y = _kernel_ks(layer_type, theirs)
    assert stats.ks_2samp(x, y).pvalue > 1e-3 / 6  # Bonferroni over the 6 cases
    assert abs(x.std() / y.std() - 1) < 0.05


def test_re_targeted_initializers_save_and_load():
    init = KerasInitializer(jinit.he_uniform(), seed=5)
    assert isinstance(init, keras.initializers.VarianceScaling) and init.input_axes is None
    retargeted = type(init).from_config({**init.get_config(), "seed": 5, "input_axes": [0], "output_axes": [1, 2]})
    assert retargeted.init == jinit.keras_variance_scaling(2.0, "fan_in", "uniform", (0,), (1, 2))
    assert retargeted.input_axes == [0] and retargeted.output_axes == [1, 2]
    again = keras.initializers.deserialize(keras.initializers.serialize(retargeted))
    assert again == retargeted and again.input_axes == [0]
    assert not isinstance(KerasInitializer(jinit.normal()), keras.initializers.VarianceScaling)
    assert not isinstance(KerasInitializer(jinit.he_uniform(in_axis=0)), keras.initializers.VarianceScaling)


def test_layout_creates_the_array_sharded():
    """Keras 3's `Initializer.__call__(shape, dtype, layout)`: the array is created with the layout's sharding."""
    mesh = jax.make_mesh((1,), ("model",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "model"))
    init = KerasInitializer(jinit.glorot_uniform(), seed=2)
    x = init((4, 6), "float32", layout=sharding)
    assert x.sharding == sharding
    np.testing.assert_array_equal(x, init((4, 6), "float32"))
    tensor_layout = keras.distribution.TensorLayout([None, "model"], keras.distribution.DeviceMesh((1,), ["model"]))
    assert init((4, 6), "float32", layout=tensor_layout).sharding.is_equivalent_to(sharding, 2)
