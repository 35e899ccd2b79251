"""The registry: serialize/deserialize round trips, Keras strings, custom factories, and safety on untrusted
configs (only ValueError or TypeError ever escapes, and a failed load changes nothing)."""

import concurrent.futures
import copy
import inspect
import json
import math
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jinit
from jinit._src import registry

from cases import CASES, ids

KEY = jax.random.key(5)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_round_trip(case):
    config = jinit.serialize(case.init)
    text = json.dumps(config)  # JSON-safe
    clone = jinit.deserialize(json.loads(text))
    assert clone == case.init and hash(clone) == hash(case.init) and repr(clone) == repr(case.init)
    assert config["module"] == "jinit" and config["class_name"] == case.init.name
    # every argument is written out, so a config never depends on defaults
    assert list(config["config"]) == list(case.init.config)
    key = KEY if case.random else None
    np.testing.assert_array_equal(clone(key, case.shapes[0]), case.init(key, case.shapes[0]))


def test_serialize_writes_dtypes_by_name_and_tuples_as_lists():
    config = jinit.serialize(jinit.variance_scaling(2.0, "fan_in", "normal", in_axis=(0, 1), dtype=jnp.bfloat16))
    assert config["config"] == {
        "scale": 2.0, "mode": "fan_in", "distribution": "normal", "in_axis": [0, 1], "out_axis": -1,
        "batch_axis": [], "dtype": "bfloat16",
    }  # fmt: skip
    with pytest.raises(TypeError, match=r"Only a jinit `Initializer`.*Received: init="):
        jinit.serialize(jax.nn.initializers.zeros)


# Keras's identifiers, with Keras's defaults, as the Keras documentation gives them.
KERAS_STRINGS = [
    (("Zeros", "zeros", "zero"), jinit.zeros),
    (("Ones", "ones", "one"), jinit.ones),
    (("Constant", "constant"), jinit.constant(0.0)),
    (("RandomNormal", "random_normal", "normal"), jinit.random_normal(mean=0.0, stddev=0.05)),
    (("RandomUniform", "random_uniform", "uniform"), jinit.random_uniform(minval=-0.05, maxval=0.05)),
    (("TruncatedNormal", "truncated_normal"), jinit.truncated_normal(0.05, lower=-2.0, upper=2.0, mean=0.0)),
    (("VarianceScaling", "variance_scaling"), jinit.variance_scaling(1.0, "fan_in", "truncated_normal")),
    (("GlorotUniform", "glorot_uniform"), jinit.glorot_uniform()),
    (("GlorotNormal", "glorot_normal"), jinit.glorot_normal()),
    (("HeUniform", "he_uniform"), jinit.he_uniform()),
    (("HeNormal", "he_normal"), jinit.he_normal()),
    (("LecunUniform", "lecun_uniform"), jinit.lecun_uniform()),
    (("LecunNormal", "lecun_normal"), jinit.lecun_normal()),
    (("Orthogonal", "OrthogonalInitializer", "orthogonal"), jinit.orthogonal(1.0)),
    (("Identity", "IdentityInitializer", "identity"), jinit.identity(1.0)),
]


@pytest.mark.parametrize("names, expected", KERAS_STRINGS, ids=[n[0] for n, _ in KERAS_STRINGS])
def test_get_keras_strings(names, expected):
    for name in names:
        assert jinit.get(name) == expected, name


def test_get_other_identifiers():
    assert jinit.get(None) is None
    init = jinit.he_normal()
    assert jinit.get(init) is init
    assert jinit.get(jinit.serialize(init)) == init
    assert jinit.get(jax.nn.initializers.zeros) is jax.nn.initializers.zeros
    assert jinit.get("delta_orthogonal") == jinit.delta_orthogonal()  # a jinit-only name, jinit's defaults
    assert jinit.get("xavier_uniform") == jinit.glorot_uniform()
    with pytest.raises(ValueError, match=r"Unknown initializer 'glorot'\. Known: .*GlorotUniform"):
        jinit.get("glorot")
    with pytest.raises(ValueError, match=r"`identifier`.*identifier=3"):
        jinit.get(3)
    with pytest.raises(ValueError, match=r"`identifier`.*identifier=\[1\]"):
        jinit.get([1])


def test_every_registered_name_resolves():
    for name in jinit.registered_names():
        try:
            init = jinit.get(name)
        except ValueError as err:  # a factory whose arguments have no defaults
            assert "needs arguments" in str(err), name
        else:
            assert isinstance(init, jinit.Initializer)


def test_seeded_initializers():
    init = jinit.he_uniform().with_seed(7)
    assert repr(init) == "he_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype=None).with_seed(7)"
    assert init != jinit.he_uniform() and init == jinit.he_uniform().with_seed(7)
    config = jinit.serialize(init)
    assert config["config"]["seed"] == 7 and jinit.deserialize(config) == init
    assert pickle.loads(pickle.dumps(init)) == init
    # with no key, a seeded initializer draws from jax.random.key(seed), the same values on every call
    np.testing.assert_array_equal(init(None, (3, 4)), jinit.he_uniform()(jax.random.key(7), (3, 4)))
    np.testing.assert_array_equal(init(KEY, (3, 4)), jinit.he_uniform()(KEY, (3, 4)))  # a key wins
    with pytest.raises(TypeError, match=r"`key` is needed.*with_seed"):
        jinit.he_uniform()(None, (3, 4))


# Configs as Keras 2 and Keras 3 write them (keras.initializers.serialize), and what each means in jinit.
KERAS_CONFIGS = [
    ({"class_name": "GlorotUniform", "config": {"seed": None}}, jinit.glorot_uniform()),
    (
        {
            "module": "keras.initializers",
            "class_name": "GlorotUniform",
            "config": {"seed": 1, "input_axes": None, "output_axes": None},
            "registered_name": None,
        },
        jinit.glorot_uniform().with_seed(1),
    ),
    ({"class_name": "HeNormal", "config": {"seed": None, "dtype": "float32"}}, jinit.he_normal(dtype="float32")),
    (
        {
            "module": "keras.initializers",
            "class_name": "RandomNormal",
            "config": {"seed": None, "mean": 0.0, "stddev": 0.05},
            "registered_name": None,
        },
        jinit.random_normal(0.0, 0.05),
    ),
    (
        {"class_name": "RandomUniform", "config": {"minval": -1, "maxval": 2, "seed": 4}},
        jinit.random_uniform(-1.0, 2.0).with_seed(4),
    ),
    (
        {"class_name": "TruncatedNormal", "config": {"mean": 1.0, "stddev": 0.5, "seed": None}},
        jinit.truncated_normal(0.5, lower=-2.0, upper=2.0, mean=1.0),
    ),
    (
        {"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out", "distribution": "normal"}},
        jinit.variance_scaling(2.0, "fan_out", "truncated_normal"),
    ),  # Keras's "normal" is truncated
    (
        {"class_name": "VarianceScaling", "config": {"distribution": "untruncated_normal"}},
        jinit.variance_scaling(1.0, "fan_in", "normal"),
    ),
    ({"class_name": "Orthogonal", "config": {"gain": 1.5, "seed": None}}, jinit.orthogonal(1.5)),
    ({"class_name": "OrthogonalInitializer", "config": {}}, jinit.orthogonal(1.0)),
    ({"class_name": "Identity", "config": {"gain": 2.0}}, jinit.identity(2.0)),
    (
        {"module": "keras.initializers", "class_name": "Identity", "config": {}, "registered_name": None},
        jinit.identity(1.0),
    ),
    ({"class_name": "Constant", "config": {"value": 3.0}}, jinit.constant(3.0)),
    ({"class_name": "Zeros", "config": {}}, jinit.zeros),
    (
        {"class_name": "HeNormal", "config": {"input_axes": [0], "output_axes": [1, 2], "seed": None}},
        jinit.keras_variance_scaling(2.0, "fan_in", "truncated_normal", (0,), (1, 2)),
    ),
    (
        {"class_name": "VarianceScaling", "config": {"input_axes": [0], "output_axes": None}},
        jinit.variance_scaling(1.0, "fan_in", "truncated_normal"),
    ),  # Keras ignores one axis list alone
    ({"class_name": "Ones", "config": {"dtype": "float32"}}, jinit.constant(1.0, "float32")),
]


@pytest.mark.parametrize("config, expected", KERAS_CONFIGS, ids=[c["class_name"] for c, _ in KERAS_CONFIGS])
def test_keras_configs(config, expected):
    assert jinit.deserialize(config) == expected
    assert jinit.get(config) == expected


# ------------------------------------------------------------------------------------------ custom factories


@pytest.fixture
def scaled_uniform():
    """A registered factory (the root conftest unregisters it after the test)."""

    @jinit.register("tests.scaled_uniform")
    def scaled_uniform(scale=1.0, offsets=(0.0,), dtype=None):
        return lambda key, shape, dtype: scale * jax.random.uniform(key, shape, dtype) + offsets[0]

    return scaled_uniform


def test_registered_factory_is_a_value_and_round_trips(scaled_uniform):
    init = scaled_uniform(2.0, [1.0], dtype="bfloat16")
    twin = scaled_uniform(2.0, (1.0,), "bfloat16")
    assert init == twin and hash(init) == hash(twin)
    assert repr(init) == "tests.scaled_uniform(scale=2.0, offsets=(1.0,), dtype='bfloat16')"
    assert jinit.serialize(init)["config"] == {"scale": 2.0, "offsets": [1.0], "dtype": "bfloat16"}
    clone = jinit.deserialize(json.loads(json.dumps(jinit.serialize(init))))
    assert clone == init and pickle.loads(pickle.dumps(init)) == init
    x = clone(KEY, (3, 4))
    assert x.dtype == jnp.bfloat16  # the dtype argument is the default dtype, as for jinit's factories
    np.testing.assert_array_equal(x, 2.0 * jax.random.uniform(KEY, (3, 4), jnp.bfloat16) + 1.0)
    assert "tests.scaled_uniform" in jinit.registered_names()


def test_register_rejects(scaled_uniform):
    with pytest.raises(ValueError, match=r"already registered.*name='glorot_uniform'"):
        jinit.register("glorot_uniform")(lambda: None)
    with pytest.raises(ValueError, match=r"already registered.*name='tests.scaled_uniform'"):
        jinit.register("tests.scaled_uniform")(scaled_uniform)
    with pytest.raises(ValueError, match=r"`name`.*name='1bad'"):
        jinit.register("1bad")
    with pytest.raises(TypeError, match=r"`name`.*name=3"):
        jinit.register(3)
    with pytest.raises(TypeError, match=r"`offsets`.*offsets=<object"):
        scaled_uniform(1.0, (object(),))
    with pytest.raises(ValueError, match=r"`scale`.*scale=nan"):
        scaled_uniform(float("nan"))
    with pytest.raises(TypeError, match=r"tests.scaled_uniform"):
        scaled_uniform(1.0, bogus=2)


def test_concurrent_registration_is_safe():
    def register(i):
        try:
            jinit.register("tests.race")(lambda scale=1.0: None)
            return "won"
        except ValueError:
            return "lost"

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(register, range(32)))
    assert outcomes.count("won") == 1 and outcomes.count("lost") == 31


def test_registrations_of_other_tests_are_gone():
    """Every test that registers a name unregisters it (the root conftest restores the table)."""
    assert not [name for name in jinit.registered_names() if name.startswith(("tests.", "docs.", "my_project."))]


# ------------------------------------------------------------------------------------------ untrusted configs


def _config(class_name, **config):
    return {"module": "jinit", "class_name": class_name, "config": config}


GOOD = jinit.serialize(jinit.variance_scaling(1.0, "fan_avg", "uniform"))

BAD_CONFIGS = [
    ("not_a_dict", "glorot_uniform", TypeError, r"must be a dict.*config='glorot_uniform'"),
    ("unknown_class", _config("GlorotUniformX"), ValueError, r"Unknown initializer 'GlorotUniformX'"),
    ("lambda", {"class_name": "__lambda__", "config": {"code": "print(1)"}}, ValueError, r"'__lambda__'"),
    ("function", {"class_name": "function", "config": "os.system"}, ValueError, r"'function'"),
    ("other_module", {**GOOD, "module": "os"}, ValueError, r"`module`.*module='os'"),
    ("unknown_top_key", {**GOOD, "registered_name": "x", "extra": 1}, ValueError, r"config key 'registered_name'"),
    ("keras_unknown_top_key", {"class_name": "Zeros", "config": {}, "extra": 1}, ValueError, r"config key 'extra'"),
    (
        "unknown_argument",
        {**GOOD, "config": {**GOOD["config"], "seeds": 3}},
        ValueError,
        r"Unknown argument 'seeds' for `variance_scaling`.*seeds=3",
    ),
    ("negative_seed", {**GOOD, "config": {**GOOD["config"], "seed": -1}}, ValueError, r"`seed`.*seed=-1"),
    ("float_seed", {**GOOD, "config": {**GOOD["config"], "seed": 1.5}}, TypeError, r"`seed`.*seed=1\.5"),
    (
        "keras_unknown_key",
        {"class_name": "GlorotUniform", "config": {"seed": None, "gain": 2}},
        ValueError,
        r"Unknown argument 'gain' for `GlorotUniform`.*gain=2",
    ),
    (
        "keras_input_axes",
        {"class_name": "HeNormal", "config": {"input_axes": "0", "output_axes": [1]}},
        TypeError,
        r"`input_axes`.*input_axes='0'",
    ),
    (
        "keras_bad_distribution",
        {"class_name": "VarianceScaling", "config": {"distribution": "gauss"}},
        ValueError,
        r"`distribution`.*distribution='gauss'",
    ),
    (
        "keras_module_elsewhere",
        {"module": "builtins", "class_name": "GlorotUniform", "config": {}},
        ValueError,
        r"`module`.*module='builtins'",
    ),
    (
        "missing_argument",
        {**GOOD, "config": {k: v for k, v in GOOD["config"].items() if k != "mode"}},
        ValueError,
        r"lacks 'mode'",
    ),
    ("string_scale", {**GOOD, "config": {**GOOD["config"], "scale": "1"}}, TypeError, r"`scale`.*scale='1'"),
    ("nan_scale", {**GOOD, "config": {**GOOD["config"], "scale": math.nan}}, ValueError, r"`config.config.scale`.*nan"),
    ("inf_scale", {**GOOD, "config": {**GOOD["config"], "scale": math.inf}}, ValueError, r"scale=inf"),
    ("bad_mode", {**GOOD, "config": {**GOOD["config"], "mode": "fan_max"}}, ValueError, r"`mode`.*mode='fan_max'"),
    ("dict_axis", {**GOOD, "config": {**GOOD["config"], "in_axis": {"a": 1}}}, TypeError, r"`in_axis`"),
    ("config_not_dict", {**GOOD, "config": [1, 2]}, TypeError, r"`config` must be a dict"),
    ("object_value", {**GOOD, "config": {**GOOD["config"], "scale": object()}}, TypeError, r"JSON values"),
    ("int_key", {**GOOD, 3: 4}, TypeError, r"Config keys must be strings"),
    ("deep", _config("constant", value=[[[[[[[[[[1.0]]]]]]]]]], dtype=None), ValueError, r"nest at most"),
    ("large", _config("constant", value=[0.0] * (registry.MAX_ITEMS + 1), dtype=None), ValueError, r"at most"),
    ("long_string", {**GOOD, "config": {**GOOD["config"], "mode": "f" * 10_000}}, ValueError, r"longer than"),
    ("huge_int", {**GOOD, "config": {**GOOD["config"], "in_axis": 10**400}}, ValueError, r"`config.config.in_axis`"),
    ("bad_dtype", {**GOOD, "config": {**GOOD["config"], "dtype": "object"}}, TypeError, r"`dtype`"),
]


@pytest.mark.parametrize("config, error, message", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configs(config, error, message):
    with pytest.raises(error, match=message):
        jinit.deserialize(config)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
VALID = [jinit.serialize(case.init) for case in CASES] + [config for config, _ in KERAS_CONFIGS]


@st.composite
def mutated_configs(draw):
    """A valid config with one value replaced, one key dropped or added, or a name changed."""
    config = copy.deepcopy(draw(st.sampled_from(VALID)))
    arguments = config["config"]
    how = draw(st.sampled_from(["replace", "drop", "add", "rename", "top"]))
    if not arguments and how in ("replace", "drop"):
        how = "add"
    if how == "replace" and arguments:
        arguments[draw(st.sampled_from(sorted(arguments)))] = draw(JSON)
    elif how == "drop" and arguments:
        del arguments[draw(st.sampled_from(sorted(arguments)))]
    elif how == "add":
        arguments[draw(st.text(max_size=12))] = draw(JSON)
    elif how == "rename":
        config["class_name"] = draw(st.sampled_from(jinit.registered_names()) | st.text(max_size=20))
    else:
        config[draw(st.sampled_from(["module", "class_name", "config", "other"]))] = draw(JSON)
    return config


@given(st.one_of(JSON, mutated_configs(), st.sampled_from(VALID)))
@settings(max_examples=int(os.environ.get("JINIT_FUZZ_EXAMPLES", 2000)), deadline=None)
def test_fuzzed_configs_raise_only_value_or_type_errors(config):
    try:
        init = jinit.deserialize(config)
    except (ValueError, TypeError):
        pass
    else:
        assert isinstance(init, jinit.Initializer)
        assert jinit.deserialize(jinit.serialize(init)) == init


@pytest.mark.parametrize(
    "name, factory, message",
    [
        ("tests.seeded", lambda seed=0: None, r"argument named `seed`"),
        ("tests.keyed", lambda key=None, scale=1.0: None, r"argument named `key`"),
        ("tests.shaped", lambda shape=(): None, r"argument named `shape`"),
        ("tests.sharded", lambda out_sharding=None: None, r"argument named `out_sharding`"),
        ("tests.dtype", lambda dtype: None, r"`dtype` without a default"),
        ("tests.kwargs", lambda **kwargs: None, r"\*args or \*\*kwargs"),
        ("tests.args", lambda *args: None, r"\*args or \*\*kwargs"),
        ("tests.positional", eval("lambda scale, /: None"), r"positional-only"),
    ],
    ids=["seed", "key", "shape", "out_sharding", "dtype", "kwargs", "args", "positional"],
)
def test_register_refuses_factories_that_cannot_work(name, factory, message):
    def function(*args, **kwargs):  # a real function with the lambda's signature
        return factory(*args, **kwargs)

    function.__signature__ = inspect.signature(factory)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=message):
        jinit.register(name)(function)
    assert name not in jinit.registered_names()


@pytest.mark.parametrize("name", ["RandomNormal", "GlorotUniform", "VarianceScaling", "zero", "one", "Zeros"])
def test_register_refuses_keras_names(name):
    """A Keras name registered by a user would capture the configs Keras writes for its own initializers."""
    with pytest.raises(ValueError, match=r"Keras's initializer names.*name="):
        jinit.register(name)
