"""Against real Keras 3 (JAX backend): Keras's own configs load into initializers with Keras's distributions."""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported

import pytest

keras = pytest.importorskip("keras", reason="keras is an optional extra: pip install -e '.[keras]'")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import jinit  # noqa: E402

FAMILY_ALPHA = 1e-3  # the probability that any two-sample KS test of this file rejects a correct implementation
N = 2**16  # samples per library

ki = keras.initializers
SPREAD = [
    (ki.RandomNormal(), (256, 256)),
    (ki.RandomNormal(mean=1.0, stddev=0.3), (256, 256)),
    (ki.RandomUniform(), (256, 256)),
    (ki.RandomUniform(minval=-2.0, maxval=3.0), (256, 256)),
    (ki.TruncatedNormal(), (256, 256)),
    (ki.TruncatedNormal(mean=-1.0, stddev=2.0), (256, 256)),
    (ki.VarianceScaling(), (256, 256)),
    (ki.VarianceScaling(2.0, "fan_out", "normal"), (4, 4, 64, 64)),
    (ki.VarianceScaling(0.5, "fan_avg", "untruncated_normal"), (8, 128, 64)),
    (ki.VarianceScaling(3.0, "fan_in", "uniform"), (4, 4, 64, 64)),
    (ki.GlorotUniform(), (256, 256)),
    (ki.GlorotNormal(), (4, 4, 64, 64)),
    (ki.HeUniform(), (4, 4, 64, 64)),
    (ki.HeNormal(), (256, 256)),
    (ki.LecunUniform(), (65536,)),
    (ki.LecunNormal(), (8, 128, 64)),
    # fans over the given axes only: 64 in, 32 out, the middle axis counts in neither
    (ki.VarianceScaling(2.0, "fan_in", "untruncated_normal", input_axes=[0], output_axes=[2]), (64, 32, 32)),
    (ki.GlorotUniform(input_axes=[0, 1], output_axes=[2]), (16, 8, 512)),
]


ALPHA = FAMILY_ALPHA / len(SPREAD)  # Bonferroni: each of the len(SPREAD) tests at this level


def _ids(rows):
    return [f"{type(obj).__name__}-{json.dumps(ki.serialize(obj)['config'])}-{shape}" for obj, shape in rows]


@pytest.mark.parametrize("obj, shape", SPREAD, ids=_ids(SPREAD))
def test_same_distribution_as_keras(obj, shape):
    ours = jinit.deserialize(ki.serialize(obj))
    theirs = np.asarray(type(obj).from_config({**obj.get_config(), "seed": 1})(shape, "float32")).ravel()
    x = np.asarray(ours(jax.random.key(1), shape, "float32")).ravel()
    assert x.size == theirs.size >= N
    result = stats.ks_2samp(x, theirs)
    assert result.pvalue > ALPHA, (ours, result)
    if not isinstance(obj, ki.RandomNormal) and obj.get_config().get("distribution") != "untruncated_normal":
        # bounded: the same support, up to 1% of its width (both samples come close to both ends)
        lo, hi = theirs.min(), theirs.max()
        assert abs(x.min() - lo) <= 0.01 * (hi - lo) and abs(x.max() - hi) <= 0.01 * (hi - lo)


@pytest.mark.parametrize(
    "obj, shape",
    [
        (ki.Zeros(), (3, 4)),
        (ki.Ones(), (3, 4)),
        (ki.Constant(2.5), (3, 4)),
        (ki.Identity(), (3, 5)),
        (ki.Identity(), (4, 4)),
    ],
    ids=["Zeros", "Ones", "Constant", "Identity-wide", "Identity-square"],
)
def test_deterministic_initializers_equal_keras(obj, shape):
    ours = jinit.deserialize(ki.serialize(obj))
    np.testing.assert_array_equal(ours(None, shape), np.asarray(obj(shape, "float32")))


def test_orthogonal_matches_keras_gain_and_orthogonality():
    obj = ki.Orthogonal(gain=1.7, seed=3)
    ours = jinit.deserialize(ki.serialize(obj))
    assert ours == jinit.orthogonal(1.7).with_seed(3)
    with jax.numpy_rank_promotion("allow"):  # Keras's own code broadcasts implicitly
        theirs = np.asarray(obj((64, 32), "float32"), np.float64)
    for q in (np.asarray(ours(None, (64, 32)), np.float64), theirs):
        np.testing.assert_allclose(q.T @ q, 1.7**2 * np.eye(32), atol=1e-4)


def test_seed_round_trips_through_keras_configs():
    ours = jinit.deserialize(ki.serialize(ki.HeNormal(seed=11)))
    assert ours.seed == 11
    np.testing.assert_array_equal(ours(None, (8, 8)), ours(None, (8, 8)))


def _initializer_configs(node):
    """Every initializer config in a model's JSON: the values of keys ending in `_initializer`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_initializer") and isinstance(value, dict):
                yield key, value
            else:
                yield from _initializer_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _initializer_configs(value)


def test_configs_from_a_real_keras_model_all_load():
    with jax.numpy_rank_promotion("allow"):  # Keras's own code broadcasts implicitly
        model = _model()
        text = model.to_json()
    found = list(_initializer_configs(json.loads(text)))
    assert len(found) >= 10
    for key, config in found:
        init = jinit.deserialize(config)
        assert isinstance(init, jinit.Initializer), key
    names = {jinit.deserialize(config).name for _, config in found}
    assert {"he_normal", "orthogonal", "variance_scaling", "zeros", "ones", "glorot_uniform"} <= names


def _model():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, kernel_initializer="he_normal"),
            keras.layers.BatchNormalization(),
            keras.layers.Reshape((14, 14 * 8)),
            keras.layers.LSTM(8, recurrent_initializer=ki.Orthogonal(gain=1.1, seed=2)),
            keras.layers.LayerNormalization(),
            keras.layers.Dense(4, kernel_initializer=ki.VarianceScaling(2.0, "fan_avg", "uniform", seed=5)),
        ]
    )


EXPRESSIBLE = [
    jinit.zeros, jinit.ones, jinit.constant(2.5), jinit.constant([1.0, 2.0]), jinit.identity(1.5),
    jinit.normal(0.3), jinit.normal(0.3, mean=1.0), jinit.random_normal(), jinit.uniform(2.0),
    jinit.random_uniform(-1.0, 3.0), jinit.truncated_normal(0.7, mean=0.5),
    jinit.variance_scaling(2.0, "fan_out", "normal"), jinit.variance_scaling(0.5, "fan_avg", "truncated_normal"),
    jinit.variance_scaling(3.0, "fan_in", "uniform").with_seed(9),
    jinit.glorot_uniform(), jinit.glorot_normal(), jinit.he_uniform(), jinit.he_normal().with_seed(2),
    jinit.lecun_uniform(), jinit.lecun_normal(), jinit.orthogonal(1.3),
    jinit.keras_variance_scaling(1.5, "fan_avg", "uniform", (0,), (1, 2)),
]  # fmt: skip


@pytest.mark.parametrize("init", EXPRESSIBLE, ids=repr)
def test_to_keras_is_what_keras_loads(init):
    config = jinit.to_keras(init)
    obj = ki.deserialize(json.loads(json.dumps(config)))
    assert type(obj).__name__ == config["class_name"]
    shape = {"constant": (2,), "keras_variance_scaling": (6, 5, 4)}.get(init.name, (6, 5))
    if init.name in ("zeros", "ones", "constant", "identity"):
        # Keras 3's Identity leaves `gain` out of its own config, so compare the Keras object's values
        np.testing.assert_array_equal(np.asarray(obj(shape, "float32")), init(None, shape))
        return
    back = jinit.deserialize(ki.serialize(obj))  # the Keras object, read back: the same samples
    assert back.seed == init.seed
    key = jax.random.key(4)
    np.testing.assert_array_equal(back(key, shape), init(key, shape))


REFUSED = [
    (jinit.delta_orthogonal(), r"Keras has no `delta_orthogonal`"),
    (jinit.variance_scaling(1.0, "fan_geo_avg", "normal"), r"fan_geo_avg"),
    (jinit.he_normal(batch_axis=0), r"default axes"),
    (jinit.glorot_uniform(in_axis=1, out_axis=0), r"default axes"),
    (jinit.normal(dtype="bfloat16"), r"dtype"),
    (jinit.truncated_normal(1.0, lower=-1.0), r"two standard deviations"),
    (jinit.orthogonal(column_axis=0), r"column_axis=-1"),
    (jinit.zeros.with_seed(1), r"no seed"),
]


@pytest.mark.parametrize("init, message", REFUSED, ids=[repr(i) for i, _ in REFUSED])
def test_to_keras_refuses_what_keras_cannot_express(init, message):
    with pytest.raises(ValueError, match=rf"Keras cannot express.*{message}"):
        jinit.to_keras(init)


STFT_CONFIGS = [
    {"side": side, "window": window, "scaling": scaling, "periodic": periodic}
    for side in ("real", "imag")
    for window, scaling, periodic in [
        ("hann", "density", False), ("hann", "spectrum", True), ("hamming", "density", True),
        ("blackman", None, False), ("bartlett", "spectrum", False), ("boxcar", "density", True),
        (None, None, False), ([0.5, 1.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.0], "density", False),
    ]
]  # fmt: skip


@pytest.mark.parametrize("config", STFT_CONFIGS, ids=[json.dumps(c) for c in STFT_CONFIGS])
def test_stft_equals_keras(config):
    obj = ki.STFT(**config)
    ours = jinit.deserialize(ki.serialize(obj))
    assert ours == jinit.stft(**config) and ki.deserialize(jinit.to_keras(ours)).get_config() == obj.get_config()
    for shape in [(8, 1, 5), (8, 1, 9)]:
        theirs = np.asarray(obj(shape, "float32"))
        # Keras computes the angle 2 pi t f / n in float32, jinit in float64: Keras's angle is off by up to a few
        # roundings of the largest angle, and so are its cos and sin (the window and scaling are at most 1)
        frame, _, bins = shape
        largest_angle = 2 * np.pi * (frame - 1) * (bins - 1) / (2 * (bins - 1))
        np.testing.assert_allclose(ours(None, shape), theirs, rtol=0, atol=4 * largest_angle * 2.0**-24 + 1e-7)
    assert ours(None, (8, 3, 5)).shape == (8, 3, 5)  # repeated over the channels (Keras gives (8, 1, 5))


def test_every_window_keras_takes_by_name():
    """Every name `scipy.signal.get_window` takes without parameters (Keras passes the name to it), periodic and
    symmetric, with SciPy's own values; the names SciPy needs parameters for are refused with what to do."""
    from scipy import signal

    from jinit._src import windows

    for name in sorted(windows.WINDOWS):
        for length in (1, 2, 3, 8, 31, 64):
            for periodic in (False, True):
                expected = signal.get_window(name, length, fftbins=periodic)
                np.testing.assert_allclose(windows.window(name, length, periodic), expected, rtol=1e-12, atol=1e-15)
        # and through jinit.stft: Keras's own kernels, whose angles Keras computes in float32 (as above)
        ours = jinit.stft(window=name, periodic=True)(None, (16, 1, 9))
        theirs = ki.STFT(window=name, periodic=True)((16, 1, 9), "float32")
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=4 * (2 * np.pi * 15 * 8 / 16) * 2.0**-24 + 1e-7)
    for name in ("hann_periodic", "tukey_symmetric"):
        np.testing.assert_allclose(windows.window(name, 9, False), signal.get_window(name, 9, fftbins=False))
    with pytest.raises(ValueError, match=r"`window` names a window that needs parameters \('kaiser'\)"):
        jinit.stft(window="kaiser")
    with pytest.raises(ValueError, match=r"`window` must be the name.*Known: bart, barthann.*window='hanning'"):
        jinit.stft(window="hanning")


def test_every_keras_identifier_as_a_config_means_what_keras_means():
    """Keras's deserialize takes each class name, its snake_case name and the aliases, with an empty config: so
    does jinit, with Keras's meaning (not jinit's factory of the same name)."""
    from keras.src.initializers import ALL_OBJECTS_DICT

    names = sorted(set(ALL_OBJECTS_DICT) - {"Initializer", "initializer"})
    for name in names:
        config = {"class_name": name, "config": {}}
        ours = jinit.deserialize(config)
        try:
            theirs = ki.deserialize(config)
        except KeyError:  # Keras 3.15's Constant.from_config needs its value; its default is 0.0
            assert name in ("Constant", "constant") and ours == jinit.constant(0.0)
            continue
        assert ours == jinit.deserialize(ki.serialize(theirs)), name  # Keras's own config of the same initializer
    assert jinit.deserialize({"class_name": "normal", "config": {}}) == jinit.random_normal(0.0, 0.05)
    assert jinit.deserialize({"class_name": "glorot_normal", "config": {"seed": 3}}) == jinit.glorot_normal().with_seed(
        3
    )
    jinit_config = jinit.serialize(jinit.glorot_normal(in_axis=0, out_axis=1))  # "module": "jinit": jinit's meaning
    assert jinit.deserialize(jinit_config) == jinit.glorot_normal(in_axis=0, out_axis=1)


def test_array_constants_as_keras_writes_them():
    value = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    config = ki.serialize(ki.Constant(value))
    assert config["config"]["value"]["class_name"] == "__numpy__"
    init = jinit.deserialize(config)
    np.testing.assert_array_equal(init(None, (2, 3)), ki.Constant(value)((2, 3)))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer=ki.Constant(value.T))])
    layer_config = json.loads(model.to_json())["config"]["layers"][-1]["config"]
    np.testing.assert_array_equal(jinit.get(layer_config["kernel_initializer"])(None, (3, 2)), value.T)
    with pytest.raises(ValueError, match=r"array in a Keras config.*`value` and `dtype`"):
        jinit.deserialize({"class_name": "Constant", "config": {"value": {"class_name": "__numpy__", "config": {}}}})


def test_get_an_array_as_keras_does():
    value = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    for identifier in (value, jax.numpy.asarray(value)):
        np.testing.assert_array_equal(jinit.get(identifier)(None, (2, 2)), ki.get(identifier)((2, 2)))
    assert jinit.get(np.float32(0.5)) == jinit.constant(0.5)
