"""Every bad input is a ValueError or TypeError that names the argument and the value received, raised
before any array is allocated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit

KEY = jax.random.key(0)
NAN, INF = float("nan"), float("inf")

# (id, callable raising, exception type, regex the message must match: argument name and received value)
FACTORY_ERRORS = [
    ("normal_negative_stddev", lambda: jinit.normal(-1.0), ValueError, r"`stddev`.*Received: stddev=-1\.0"),
    ("normal_nan_stddev", lambda: jinit.normal(NAN), ValueError, r"`stddev`.*finite.*stddev=nan"),
    ("normal_huge_int_stddev", lambda: jinit.normal(10**400), ValueError, r"`stddev`.*finite"),
    ("normal_inf_mean", lambda: jinit.normal(1.0, mean=INF), ValueError, r"`mean`.*mean=inf"),
    ("normal_str_stddev", lambda: jinit.normal("1"), TypeError, r"`stddev`.*real number.*stddev='1'"),
    ("normal_bool_stddev", lambda: jinit.normal(True), TypeError, r"`stddev`.*stddev=True"),
    ("normal_complex_stddev", lambda: jinit.normal(1j), TypeError, r"`stddev`.*stddev=1j"),
    ("normal_array_stddev", lambda: jinit.normal(np.ones(2)), TypeError, r"`stddev`.*real number"),
    ("normal_bad_dtype", lambda: jinit.normal(dtype="float33"), TypeError, r"`dtype`.*dtype='float33'"),
    ("random_normal_negative", lambda: jinit.random_normal(stddev=-0.1), ValueError, r"`stddev`.*stddev=-0\.1"),
    ("uniform_negative_scale", lambda: jinit.uniform(-2), ValueError, r"`scale`.*scale=-2"),
    ("uniform_inf_scale", lambda: jinit.uniform(INF), ValueError, r"`scale`.*scale=inf"),
    (
        "random_uniform_equal",
        lambda: jinit.random_uniform(1.0, 1.0),
        ValueError,
        r"`minval`.*`maxval`.*minval=1\.0, maxval=1\.0",
    ),
    ("random_uniform_reversed", lambda: jinit.random_uniform(1, -1), ValueError, r"minval=1\.0, maxval=-1\.0"),
    ("random_uniform_nan", lambda: jinit.random_uniform(NAN, 1), ValueError, r"`minval`.*minval=nan"),
    (
        "truncated_equal_bounds",
        lambda: jinit.truncated_normal(1.0, lower=1.0, upper=1.0),
        ValueError,
        r"`lower`.*`upper`.*lower=1\.0, upper=1\.0",
    ),
    (
        "truncated_reversed_bounds",
        lambda: jinit.truncated_normal(1.0, lower=2, upper=-2),
        ValueError,
        r"lower=2\.0, upper=-2\.0",
    ),
    ("truncated_negative_stddev", lambda: jinit.truncated_normal(-1.0), ValueError, r"`stddev`.*stddev=-1\.0"),
    ("truncated_inf_upper", lambda: jinit.truncated_normal(upper=INF), ValueError, r"`upper`.*upper=inf"),
    ("vs_zero_scale", lambda: jinit.variance_scaling(0.0, "fan_in", "normal"), ValueError, r"`scale`.*scale=0\.0"),
    ("vs_negative_scale", lambda: jinit.variance_scaling(-1, "fan_in", "normal"), ValueError, r"`scale`.*scale=-1"),
    ("vs_nan_scale", lambda: jinit.variance_scaling(NAN, "fan_in", "normal"), ValueError, r"`scale`.*scale=nan"),
    (
        "vs_unknown_mode",
        lambda: jinit.variance_scaling(1.0, "fan_max", "normal"),
        ValueError,
        r"`mode`.*'fan_in', 'fan_out', 'fan_avg', 'fan_geo_avg'.*mode='fan_max'",
    ),
    (
        "vs_unknown_distribution",
        lambda: jinit.variance_scaling(1.0, "fan_in", "gauss"),
        ValueError,
        r"`distribution`.*'truncated_normal', 'normal', 'uniform'.*distribution='gauss'",
    ),
    ("vs_mode_not_str", lambda: jinit.variance_scaling(1.0, 3, "normal"), ValueError, r"`mode`.*mode=3"),
    (
        "vs_float_axis",
        lambda: jinit.variance_scaling(1.0, "fan_in", "normal", in_axis=1.5),
        TypeError,
        r"`in_axis`.*in_axis=1\.5",
    ),
    (
        "vs_str_batch_axis",
        lambda: jinit.variance_scaling(1.0, "fan_in", "normal", batch_axis="0"),
        TypeError,
        r"`batch_axis`.*batch_axis='0'",
    ),
    ("glorot_bool_axis", lambda: jinit.glorot_uniform(out_axis=True), TypeError, r"`out_axis`.*out_axis=True"),
    ("orthogonal_negative_scale", lambda: jinit.orthogonal(-1.0), ValueError, r"`scale`.*scale=-1\.0"),
    (
        "orthogonal_float_column_axis",
        lambda: jinit.orthogonal(column_axis=0.5),
        TypeError,
        r"`column_axis`.*column_axis=0\.5",
    ),
    (
        "delta_orthogonal_column_axis",
        lambda: jinit.delta_orthogonal(column_axis=2),
        ValueError,
        r"`column_axis`.*column_axis=2",
    ),
    ("identity_negative_gain", lambda: jinit.identity(-1.0), ValueError, r"`gain`.*gain=-1\.0"),
    ("identity_nan_gain", lambda: jinit.identity(NAN), ValueError, r"`gain`.*gain=nan"),
    ("constant_nan", lambda: jinit.constant([1.0, NAN]), ValueError, r"`value`.*NaN.*value=\[1\.0, nan\]"),
    ("constant_string", lambda: jinit.constant("a"), TypeError, r"`value`.*value='a'"),
    ("constant_ragged", lambda: jinit.constant([[1], [1, 2]]), TypeError, r"`value`.*value=\[\[1\], \[1, 2\]\]"),
    ("traced_stddev", lambda: jax.jit(lambda s: jinit.normal(s))(1.0), TypeError, r"`stddev`.*concrete"),
]

# (id, initializer, call arguments (key, shape, dtype), exception type, message regex)
CALL_ERRORS = [
    ("negative_dim", jinit.normal(), (KEY, (3, -1)), ValueError, r"`shape`.*negative.*shape=\(3, -1\)"),
    ("float_dim", jinit.normal(), (KEY, (3, 2.0)), TypeError, r"`shape`.*ints.*shape=\(3, 2\.0\)"),
    ("bool_dim", jinit.uniform(), (KEY, (True, 2)), TypeError, r"`shape`.*shape=\(True, 2\)"),
    ("str_shape", jinit.normal(), (KEY, "ab"), TypeError, r"`shape`.*shape='ab'"),
    ("int_dtype_normal", jinit.normal(), (KEY, (2,), jnp.int32), TypeError, r"`normal`.*dtype=int32"),
    ("bool_dtype_uniform", jinit.uniform(), (KEY, (2,), jnp.bool_), TypeError, r"`uniform`.*dtype=bool"),
    (
        "int_dtype_truncated",
        jinit.truncated_normal(),
        (KEY, (2,), "int8"),
        TypeError,
        r"`truncated_normal`.*dtype=int8",
    ),
    (
        "complex_truncated",
        jinit.truncated_normal(),
        (KEY, (2,), jnp.complex64),
        TypeError,
        r"`truncated_normal`.*floating-point dtype.*dtype=complex64",
    ),
    ("complex_uniform", jinit.uniform(), (KEY, (2,), jnp.complex64), TypeError, r"dtype=complex64"),
    ("int_dtype_glorot", jinit.glorot_uniform(), (KEY, (2, 2), jnp.uint8), TypeError, r"`glorot_uniform`.*dtype=uint8"),
    ("int_dtype_orthogonal", jinit.orthogonal(), (KEY, (2, 2), jnp.int32), TypeError, r"`orthogonal`.*dtype=int32"),
    ("bad_call_dtype", jinit.normal(), (KEY, (2,), "float33"), TypeError, r"`dtype`.*dtype='float33'"),
    (
        "in_axis_out_of_range",
        jinit.glorot_uniform(in_axis=3),
        (KEY, (2, 3)),
        ValueError,
        r"`in_axis`.*out of range.*in_axis=3, shape=\(2, 3\)",
    ),
    (
        "negative_axis_out_of_range",
        jinit.he_normal(out_axis=-4),
        (KEY, (2, 3, 4)),
        ValueError,
        r"`out_axis`.*out_axis=-4",
    ),
    ("orthogonal_rank1", jinit.orthogonal(), (KEY, (4,)), ValueError, r"`orthogonal`.*rank >= 2.*shape=\(4,\)"),
    ("orthogonal_rank0", jinit.orthogonal(), (KEY, ()), ValueError, r"shape=\(\)"),
    (
        "orthogonal_column_axis",
        jinit.orthogonal(column_axis=2),
        (KEY, (3, 4)),
        ValueError,
        r"`column_axis`.*column_axis=2",
    ),
    ("identity_rank0", jinit.identity(), (KEY, ()), ValueError, r"`identity`.*rank >= 2.*shape=\(\)"),
    ("identity_rank1", jinit.identity(), (None, (2,)), ValueError, r"shape=\(2,\)"),
    ("delta_rank2", jinit.delta_orthogonal(), (KEY, (3, 3)), ValueError, r"`delta_orthogonal`.*3, 4 or 5.*\(3, 3\)"),
    ("delta_rank6", jinit.delta_orthogonal(), (KEY, (1, 1, 1, 1, 2, 2)), ValueError, r"shape=\(1, 1, 1, 1, 2, 2\)"),
    (
        "delta_fewer_outputs",
        jinit.delta_orthogonal(),
        (KEY, (3, 3, 8, 4)),
        ValueError,
        r"`delta_orthogonal`.*output.*input.*shape=\(3, 3, 8, 4\)",
    ),
    (
        "constant_not_broadcast",
        jinit.constant([1.0, 2.0, 3.0]),
        (None, (3, 2)),
        ValueError,
        r"`constant`.*\(3,\).*shape=\(3, 2\)",
    ),
    ("constant_complex_real_dtype", jinit.constant(1j), (None, (2,)), TypeError, r"complex.*dtype=float32"),
    ("int_seed_key", jinit.normal(), (0, (2,)), TypeError, r"`key`.*jax\.random\.key\(0\).*key=0"),
    ("float_key", jinit.normal(), (np.zeros(2, np.float32), (2,)), TypeError, r"`key`.*PRNG key.*Received: key="),
    (
        "batched_typed_key",
        jinit.normal(),
        (jax.random.split(KEY, 3), (2,)),
        TypeError,
        r"`key`.*batch of keys of shape \(3,\).*vmap",
    ),
    (
        "batched_legacy_key",
        jinit.normal(),
        (np.zeros((3, 2), np.uint32), (2,)),
        TypeError,
        r"`key`.*batch of keys of shape \(3, 2\)",
    ),
    ("none_key_random", jinit.normal(), (None, (2,)), TypeError, r"`key`.*key=None"),
    ("string_key", jinit.glorot_uniform(), ("seed", (2, 2)), TypeError, r"`key`.*key='seed'"),
]


@pytest.mark.parametrize("build, error, message", [c[1:] for c in FACTORY_ERRORS], ids=[c[0] for c in FACTORY_ERRORS])
def test_factory_rejects(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize("init, args, error, message", [c[1:] for c in CALL_ERRORS], ids=[c[0] for c in CALL_ERRORS])
def test_call_rejects_before_allocating(init, args, error, message, no_arrays):
    with pytest.raises(error, match=message):
        init(*args)


def test_compute_fans_rejects():
    with pytest.raises(ValueError, match=r"`in_axis`.*out of range.*in_axis=2, shape=\(3, 4\)"):
        jinit.compute_fans((3, 4), in_axis=2)
    with pytest.raises(TypeError, match=r"`shape`.*shape=\(3, 'a'\)"):
        jinit.compute_fans((3, "a"))
    with pytest.raises(TypeError, match=r"`batch_axis`.*batch_axis=None"):
        jinit.compute_fans((3, 4), batch_axis=None)


def test_errors_are_not_wrapped_under_jit():
    """Bad shapes fail at trace time under a user's jit with the same message, not from traced code."""
    with pytest.raises(ValueError, match=r"`orthogonal`.*rank >= 2"):
        jax.jit(lambda k: jinit.orthogonal()(k, (5,)))(KEY)


@pytest.mark.parametrize(
    "init, key, shape",
    [
        (jinit.normal(), KEY, (2,)),
        (jinit.orthogonal(), KEY, (2, 2)),
        (jinit.delta_orthogonal(), KEY, (3, 2, 2)),
        (jinit.constant(1.0), None, (2,)),
        (jinit.identity(), None, (2, 2)),
        (jinit.zeros, None, (2,)),
    ],
)
def test_no_arrays_fixture_sees_allocation(init, key, shape, no_arrays):
    """The fixture above would notice an allocation, so the test that uses it can fail."""
    with pytest.raises(AssertionError, match="allocated"):
        init(key, shape)


def test_huge_received_values_are_shortened():
    """A 10 MB key or value in a config gives a message of a few hundred characters, not 20 MB."""
    huge = "k" * 10_000_000
    config = {"module": "jinit", "class_name": "normal", "config": {"stddev": 0.1, "dtype": None, "mean": 0.0}}
    for bad in (
        {**config, "config": {**config["config"], huge: 1}},
        {**config, huge: 1},
        {**config, "class_name": huge},
    ):
        with pytest.raises(ValueError) as info:
            jinit.deserialize(bad)
        assert len(str(info.value)) < 2000
    with pytest.raises(TypeError) as info:
        jinit.normal("x" * 10_000_000)
    assert len(str(info.value)) < 1000 and "Received: stddev='xxxx" in str(info.value)


class Unhashable:
    """A callable initializer that cannot be hashed, so it cannot be a value."""

    __hash__ = None  # type: ignore[assignment]

    def __call__(self, key, shape, dtype=None):
        return jnp.zeros(shape, dtype)


def _deep(depth):
    tree = jinit.ParamSpec((2,), jinit.zeros)
    for _ in range(depth):
        tree = [tree]
    return tree


def _cycle():
    tree = {"a": jinit.ParamSpec((2,), jinit.zeros)}
    tree["self"] = tree
    return tree


# Inputs that used to escape the contract with a raw error (OverflowError, RecursionError, numpy's, re's, ...).
ESCAPES = [
    ("gain_overflow", lambda: jinit.calculate_gain("leaky_relu", 1e308), None, None),  # a tiny gain, no error
    ("kaiming_huge_slope", lambda: jinit.torch_kaiming_normal(a=1e308), ValueError, r"`a`.*a=1e\+308"),
    ("kaiming_uniform_huge_slope", lambda: jinit.torch_kaiming_uniform(a=-1e308), ValueError, r"`a`.*a=-1e\+308"),
    ("xavier_huge_gain", lambda: jinit.torch_xavier_uniform(gain=1e308), ValueError, r"`gain`.*gain=1e\+308"),
    ("xavier_tiny_gain", lambda: jinit.torch_xavier_normal(gain=1e-320), ValueError, r"`gain`.*gain=1e-320"),
    (
        "dict_class_name",
        lambda: jinit.deserialize({"class_name": {"a": 1}}),
        TypeError,
        r"`class_name`.*string.*class_name=\{'a': 1\}",
    ),
    ("list_class_name", lambda: jinit.deserialize({"class_name": [1], "config": {}}), TypeError, r"`class_name`"),
    ("ragged_window", lambda: jinit.stft(window=[[1.0], [1.0, 2.0]]), TypeError, r"`window`.*window=\[\[1\.0\]"),
    ("nested_window", lambda: jinit.stft(window=[[1.0, 2.0]]), TypeError, r"`window`.*sequence of numbers"),
    (
        "bytes_regex",
        lambda: jinit.init_like(KEY, {"w": jax.ShapeDtypeStruct((2,), "float32")}, [(b".*", jinit.zeros)]),
        TypeError,
        r"rule 0.*Received: rules=",
    ),
    (
        "huge_repeat_regex",
        lambda: jinit.init_like(KEY, {"w": jax.ShapeDtypeStruct((2,), "float32")}, [("a{99999999999}", jinit.zeros)]),
        ValueError,
        r"Rule 0 of `rules` is not a valid regex.*regex='a\{99999999999\}'",
    ),
    ("surrogate_path", lambda: jinit.path_key(KEY, "a\ud800b"), ValueError, r"`path`.*UTF-8.*path='a\\ud800b'"),
    (
        "surrogate_leaf",
        lambda: jinit.init_tree(KEY, {"a\ud800": jinit.ParamSpec((2,), jinit.zeros)}),
        ValueError,
        r"`path`.*UTF-8",
    ),
    ("unhashable_init", lambda: jinit.ParamSpec((2,), Unhashable()), TypeError, r"`init`.*hashable.*init=<"),
    ("zero_size_huge_dim", lambda: jinit.normal()(KEY, (0, 2**63)), ValueError, r"`shape`.*2\*\*63.*shape=\(0, "),
    ("zero_size_huge_dim_zeros", lambda: jinit.zeros(KEY, (2**64, 0)), ValueError, r"`shape`"),
    ("deep_tree", lambda: jinit.init_tree(KEY, _deep(5000)), ValueError, r"`specs` nests.*deeper than"),
    ("cyclic_tree", lambda: jinit.init_tree(KEY, _cycle()), ValueError, r"`specs` contains itself.*'self'"),
    (
        "cyclic_abstract",
        lambda: jinit.init_like(KEY, _cycle(), [(".*", jinit.zeros)]),
        ValueError,
        r"`abstract_tree` contains itself",
    ),
]


@pytest.mark.parametrize("call, error, message", [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_inputs_that_escaped_the_contract(call, error, message, no_arrays):
    if error is None:
        assert call() == pytest.approx(2**0.5 / 1e308, rel=1e-12)  # sqrt(2 / (1 + slope**2)), never overflowing
        return
    with pytest.raises(error, match=message):
        call()
    jinit.ParamSpec((2,), jinit.zeros)  # and the interpreter still works (a RecursionError left it unusable)


def test_a_leafs_dtype_error_names_its_path():
    specs = {
        "ok": jinit.ParamSpec((2, 2), jinit.he_normal()),
        "enc": {"w": jinit.ParamSpec((2, 2), jinit.normal(), "int32")},
    }
    with pytest.raises(TypeError, match=r"Parameter 'enc/w': `normal` needs a floating-point.*dtype=int32"):
        jinit.init_tree(KEY, specs)
    abstract = {"w": jax.ShapeDtypeStruct((3, 3), jnp.int8)}
    with pytest.raises(TypeError, match=r"Parameter 'w': `glorot_uniform` needs.*dtype=int8"):
        jinit.init_like(KEY, abstract, [(".*", jinit.glorot_uniform())])
