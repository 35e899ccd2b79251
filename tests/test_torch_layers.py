"""PyTorch's default layers: `torch_linear`, `torch_conv` and `torch_bias` against REAL PyTorch (CPU) layers.

For each layer of `LAYERS`, PyTorch's `reset_parameters` is run on a seeded layer until its biases hold at least
`N_BIAS` values, and jinit's kernel (in both layouts) and bias are compared with PyTorch's by two-sample
Kolmogorov-Smirnov tests; the samples' largest magnitudes, PyTorch's and jinit's, are compared with the bound
``1 / sqrt(fan_in)`` of the fan-in written by hand in the table (not computed by the code under test).

Every tolerance is derived: the checks that a correct implementation could fail by chance (the KS tests and the
"max |x| close to its bound" checks, `RANDOM_CHECKS` of them, counted from the tables) each run at level
``ALPHA = FAMILY_ALPHA / RANDOM_CHECKS`` (Bonferroni), so that any of them rejects a correct implementation with
probability at most `FAMILY_ALPHA`. Seeds and keys are fixed, so the outcome is deterministic.

The tests that need PyTorch (or Flax) skip without it; the others (serialization, errors, `init_tree`) always run.
"""

import dataclasses
import functools
import json
import math
import pickle
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinit

FAMILY_ALPHA = 1e-3  # the probability that any random check of this file rejects a correct implementation
N_BIAS = 8192  # bias values per layer, from each side (PyTorch's `reset_parameters` repeated)
N_WEIGHT = 2**16  # at most this many of PyTorch's weight values per layer
FLOAT32_ROUNDING = 2.0**-21  # relative slack of a bound computed in float32 by a few roundings of 2**-24 each


@dataclasses.dataclass(frozen=True)
class Layer:
    id: str
    torch: Callable[[Any], Any]  # torch module -> the PyTorch layer
    jinit: Callable[..., dict]  # layout -> jinit's specs
    fan_in: int  # PyTorch's fan-in of the weight, by hand: the bound of weight and bias is 1 / sqrt(fan_in)
    transpose: bool = False  # a ConvTranspose: its JAX kernel is torch's weight with axes (0, 1) moved to (-2, -1)
    wrong_fan_in: int | None = None  # a plausible mistake (Flax's rule, or the input channels of a transpose)


# Each weight has about 10,000 values, so that one jinit kernel is a large sample.
LAYERS = [
    Layer("linear", lambda nn: nn.Linear(64, 256), lambda **kw: jinit.torch_linear(64, 256, **kw), 64),
    Layer(
        "linear_no_bias",
        lambda nn: nn.Linear(100, 90, bias=False),
        lambda **kw: jinit.torch_linear(100, 90, bias=False, **kw),
        100,
    ),
    Layer("conv1d", lambda nn: nn.Conv1d(32, 64, 5), lambda **kw: jinit.torch_conv(32, 64, (5,), **kw), 160, False, 32),
    Layer(
        "conv2d",
        lambda nn: nn.Conv2d(24, 32, (3, 5)),
        lambda **kw: jinit.torch_conv(24, 32, (3, 5), **kw),
        360,
        False,
        24,
    ),
    Layer(
        "conv2d_groups",
        lambda nn: nn.Conv2d(64, 64, 3, groups=4),
        lambda **kw: jinit.torch_conv(64, 64, (3, 3), groups=4, **kw),
        144,
        False,
        576,  # groups forgotten
    ),
    Layer(
        "conv3d", lambda nn: nn.Conv3d(16, 32, (2, 3, 4)), lambda **kw: jinit.torch_conv(16, 32, (2, 3, 4), **kw), 384
    ),
    Layer(
        "conv_transpose1d",
        lambda nn: nn.ConvTranspose1d(128, 32, 3),
        lambda **kw: jinit.torch_conv(128, 32, (3,), transpose=True, **kw),
        96,
        True,
        384,  # the input channels' fan
    ),
    Layer(
        "conv_transpose2d",
        lambda nn: nn.ConvTranspose2d(32, 16, (4, 4)),
        lambda **kw: jinit.torch_conv(32, 16, (4, 4), transpose=True, **kw),
        256,
        True,
        512,
    ),
    Layer(
        "conv_transpose2d_groups",
        lambda nn: nn.ConvTranspose2d(96, 48, (3, 3), groups=4),
        lambda **kw: jinit.torch_conv(96, 48, (3, 3), groups=4, transpose=True, **kw),
        108,
        True,
    ),
    Layer(
        "conv_transpose3d_groups_no_bias",
        lambda nn: nn.ConvTranspose3d(16, 32, (3, 3, 2), groups=2, bias=False),
        lambda **kw: jinit.torch_conv(16, 32, (3, 3, 2), groups=2, transpose=True, bias=False, **kw),
        288,
        True,
    ),
]
LAYOUTS = ("jax", "torch")
WITH_BIAS = [layer for layer in LAYERS if "no_bias" not in layer.id]
WRONG = [layer for layer in LAYERS if layer.wrong_fan_in is not None]

# The random checks: a KS test per layer and layout (kernels) and per layer with a bias, and a "max |x| is close
# to its bound" check per layer and layout for jinit's kernel, per layer with a bias for jinit's bias, and per
# layer (and bias) for PyTorch's own values.
KS_TESTS = len(LAYERS) * len(LAYOUTS) + len(WITH_BIAS)
CLOSE_CHECKS = len(LAYERS) * len(LAYOUTS) + len(WITH_BIAS) + len(LAYERS) + len(WITH_BIAS)
RANDOM_CHECKS = KS_TESTS + CLOSE_CHECKS
ALPHA = FAMILY_ALPHA / RANDOM_CHECKS


def _key(*parts) -> jax.Array:
    """A fixed key per sample, so that different tests draw independent samples."""
    return jax.random.key(zlib.crc32(repr(parts).encode()) % 2**31)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@functools.cache
def _torch_samples(layer_id: str) -> tuple[np.ndarray, np.ndarray | None]:
    """PyTorch's weight values (flattened, at most N_WEIGHT) and bias values (at least N_BIAS, or None) of fresh
    initializations of the seeded layer: the module's own `reset_parameters`, repeated."""
    import torch

    layer = next(layer for layer in LAYERS if layer.id == layer_id)
    torch.manual_seed(zlib.crc32(layer_id.encode()))
    module = layer.torch(torch.nn)
    weights, biases = [], []
    with torch.no_grad():
        while not weights or (module.bias is not None and sum(b.size for b in biases) < N_BIAS):
            module.reset_parameters()
            weights.append(module.weight.numpy().ravel().copy())
            if module.bias is not None:
                biases.append(module.bias.numpy().copy())
    weight = np.concatenate(weights)[:N_WEIGHT].astype(np.float64)
    return weight, (np.concatenate(biases).astype(np.float64) if biases else None)


@functools.cache
def _jinit_samples(layer_id: str, layout: str) -> tuple[np.ndarray, np.ndarray | None]:
    """jinit's kernel (one draw of the spec: its initializer at its shape) and N_BIAS values of its bias
    initializer (whose law does not depend on the shape it is called with)."""
    layer = next(layer for layer in LAYERS if layer.id == layer_id)
    specs = layer.jinit(layout=layout)
    kernel = specs["kernel"]
    weight = np.asarray(kernel.init(_key(layer_id, layout, "kernel"), kernel.shape), np.float64).ravel()
    if "bias" not in specs:
        return weight, None
    bias = specs["bias"]
    values = np.asarray(bias.init(_key(layer_id, "bias"), (N_BIAS,)), np.float64)
    return weight, values


def _bound(fan_in: int) -> float:
    return 1 / math.sqrt(fan_in)


def _assert_near_bound(x: np.ndarray, bound: float) -> None:
    """``max |x| <= bound`` (up to float32 rounding of the bound), and close to it: for n values uniform in
    ``[-bound, bound)``, ``P(max |x| < bound * (1 - t)) = (1 - t)**n``, which is ALPHA for ``t = 1 - ALPHA**(1/n)``."""
    top = float(np.abs(x).max())
    assert top <= bound * (1 + FLOAT32_ROUNDING), (top, bound)
    t = 1 - ALPHA ** (1 / x.size)
    assert top >= bound * (1 - t), (top, bound, t)


# ----------------------------------------------------------------------------------- against PyTorch


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("layer", LAYERS, ids=[layer.id for layer in LAYERS])
def test_kernel_is_distributed_as_pytorchs(torch, layer, layout):
    torch_weight, _ = _torch_samples(layer.id)
    weight, _ = _jinit_samples(layer.id, layout)
    result = stats.ks_2samp(weight, torch_weight)
    assert result.pvalue > ALPHA, result


@pytest.mark.parametrize("layer", WITH_BIAS, ids=[layer.id for layer in WITH_BIAS])
def test_bias_is_distributed_as_pytorchs(torch, layer):
    _, torch_bias = _torch_samples(layer.id)
    _, bias = _jinit_samples(layer.id, "jax")
    assert torch_bias is not None and bias is not None
    result = stats.ks_2samp(bias, torch_bias)
    assert result.pvalue > ALPHA, result


@pytest.mark.parametrize("layer", WRONG, ids=[layer.id for layer in WRONG])
def test_ks_rejects_a_wrong_fan_in(torch, layer):
    """The tests above can fail: a bias drawn with a plausible wrong fan-in is rejected (these are expected
    rejections, not in the family-wise count: a false acceptance is what would go wrong here)."""
    _, torch_bias = _torch_samples(layer.id)
    assert layer.wrong_fan_in is not None and torch_bias is not None
    wrong = np.asarray(jinit.torch_bias(layer.wrong_fan_in)(_key(layer.id, "wrong"), (N_BIAS,)), np.float64)
    assert stats.ks_2samp(wrong, torch_bias).pvalue < ALPHA


@pytest.mark.parametrize("layer", LAYERS, ids=[layer.id for layer in LAYERS])
def test_pytorch_has_the_tables_bound(torch, layer):
    """PyTorch's own values reach, and never pass, ``1 / sqrt(fan_in)`` of the table's hand-computed fan-in."""
    weight, bias = _torch_samples(layer.id)
    _assert_near_bound(weight, _bound(layer.fan_in))
    if bias is not None:
        _assert_near_bound(bias, _bound(layer.fan_in))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("layer", LAYERS, ids=[layer.id for layer in LAYERS])
def test_jinit_has_the_tables_bound(layer, layout):
    weight, bias = _jinit_samples(layer.id, layout)
    _assert_near_bound(weight, _bound(layer.fan_in))
    if bias is not None and layout == "jax":  # the same bias initializer in both layouts (test_layouts)
        _assert_near_bound(bias, _bound(layer.fan_in))


@pytest.mark.parametrize("layer", LAYERS, ids=[layer.id for layer in LAYERS])
def test_layouts(torch, layer):
    """The torch layout is PyTorch's weight shape; the JAX layout is it with axes (0, 1) moved last (swapped
    for a convolution, kept in order for a transposed one); the bias is PyTorch's in both."""
    module = layer.torch(torch.nn)
    in_jax, in_torch = layer.jinit(layout="jax"), layer.jinit(layout="torch")
    weight = module.weight.detach().numpy()
    moved = np.moveaxis(weight, (0, 1), (-2, -1) if layer.transpose else (-1, -2))
    assert in_torch["kernel"].shape == tuple(weight.shape)
    assert in_jax["kernel"].shape == moved.shape
    if module.bias is None:
        assert set(in_jax) == set(in_torch) == {"kernel"}
    else:
        assert in_jax["bias"] == in_torch["bias"]
        assert in_jax["bias"].shape == tuple(module.bias.shape)
        assert in_jax["bias"].init == jinit.torch_bias(layer.fan_in)
    # torch's layout is `torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))`, the call of `reset_parameters`
    assert in_torch["kernel"].init == jinit.torch_kaiming_uniform(a=math.sqrt(5))


FLAX_CASES = {  # case: (jinit's specs, PyTorch's layer, Flax's layer, input shape NHWC, PyTorch's fan-in)
    "dense": (lambda: jinit.torch_linear(6, 5), lambda t: t.Linear(6, 5), lambda nn: nn.Dense(5), (3, 6), 6),
    "conv_groups": (
        lambda: jinit.torch_conv(4, 6, (3, 2), groups=2),
        lambda t: t.Conv2d(4, 6, (3, 2), groups=2),
        lambda nn: nn.Conv(6, (3, 2), feature_group_count=2, padding="VALID"),
        (2, 7, 5, 4),
        2 * 6,
    ),
    "conv_transpose": (
        lambda: jinit.torch_conv(4, 3, (3, 2), transpose=True),
        lambda t: t.ConvTranspose2d(4, 3, (3, 2)),
        lambda nn: nn.ConvTranspose(3, (3, 2), padding="VALID"),
        (2, 5, 4, 4),
        3 * 6,
    ),
}


def _to_jax_layout(case: str, weight: np.ndarray) -> np.ndarray:
    """PyTorch's weight in the JAX layout, as `torch_conv`'s docstring says; a transposed convolution's kernel is
    also flipped spatially, as Flax's `ConvTranspose` (``transpose_kernel=False``) computes what PyTorch does."""
    if case == "dense":
        return weight.T
    if case == "conv_groups":
        return np.moveaxis(weight, (0, 1), (-1, -2))
    return np.moveaxis(weight, (0, 1), (-2, -1))[::-1, ::-1]


@pytest.mark.parametrize("case", list(FLAX_CASES))
def test_jax_layout_is_flaxs(torch, case):
    """jinit's specs, as Flax's `kernel_init` and `bias_init`, give Flax's parameters their shapes and PyTorch's
    bounds (the fan-in comes from Flax's kernel shape); and a PyTorch layer's weights moved into the JAX layout as
    documented compute in Flax what they compute in PyTorch."""
    nn = pytest.importorskip("flax.linen")
    make_specs, make_torch, make_flax, input_shape, fan_in = FLAX_CASES[case]
    specs = make_specs()
    layer = make_flax(nn).clone(kernel_init=specs["kernel"].init, bias_init=specs["bias"].init)
    x = np.random.default_rng(0).normal(size=input_shape).astype(np.float32)
    params = layer.init(jax.random.key(0), jnp.asarray(x))["params"]
    assert {name: value.shape for name, value in params.items()} == {name: s.shape for name, s in specs.items()}
    for value in params.values():
        assert float(np.abs(np.asarray(value)).max()) <= _bound(fan_in) * (1 + FLOAT32_ROUNDING)

    torch.manual_seed(0)
    module = make_torch(torch.nn)
    with torch.no_grad():
        channels_first = torch.from_numpy(x if x.ndim == 2 else np.moveaxis(x, -1, 1))
        expected = module(channels_first).numpy()
    expected = expected if expected.ndim == 2 else np.moveaxis(expected, 1, -1)
    kernel = _to_jax_layout(case, module.weight.detach().numpy())
    moved = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(module.bias.detach().numpy())}
    np.testing.assert_allclose(layer.apply({"params": moved}, jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- without torch


def test_zero_fan_in_gives_zeros_as_pytorch():
    """``bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0``: an empty weight's bias is zeros."""
    np.testing.assert_array_equal(jinit.torch_bias(0)(_key("zero"), (4,)), np.zeros(4, np.float32))
    specs = jinit.torch_linear(0, 4)
    params = jinit.init_tree(_key("zero tree"), specs)
    assert params["kernel"].shape == (0, 4) and not bool(params["bias"].any())
    assert jinit.torch_conv(3, 0, (2,))["bias"].shape == (0,)


def test_zero_fan_in_matches_pytorch(torch):
    with pytest.warns(UserWarning, match="zero-element"):  # PyTorch's kaiming_uniform_ on the empty weight
        module = torch.nn.Linear(0, 4)
    np.testing.assert_array_equal(module.bias.detach().numpy(), np.zeros(4, np.float32))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float8_e4m3fn"])
def test_bias_stays_in_bounds_in_every_dtype(dtype):
    for fan_in in (1, 3, 784, 10**6):
        x = jinit.torch_bias(fan_in, dtype)(_key("dtype", dtype, fan_in), (4096,))
        assert x.dtype == jnp.dtype(dtype)
        assert float(np.abs(np.asarray(x).astype(np.float32)).max()) <= _bound(fan_in)


def _is_spec(x) -> bool:
    return isinstance(x, jinit.ParamSpec)


def _hand_bounds(path: str) -> float:
    fan_in = {"conv1": 3 * 9, "conv2": 4 * 9, "up": 4 * 4, "fc1": 8 * 4 * 4, "head": 32}[path.split("/")[0]]
    return _bound(fan_in)


MODEL = {
    "conv1": jinit.torch_conv(3, 8, (3, 3)),
    "conv2": jinit.torch_conv(8, 16, (3, 3), groups=2),
    "up": jinit.torch_conv(16, 4, (2, 2), transpose=True),
    "fc1": jinit.torch_linear(8 * 4 * 4, 32),
    "head": jinit.torch_linear(32, 10, bias=False),
}


def test_init_tree_of_a_small_cnn():
    key = jax.random.key(0)
    params = jinit.init_tree(key, MODEL)
    assert jax.tree.map(jnp.shape, params) == {
        "conv1": {"kernel": (3, 3, 3, 8), "bias": (8,)},
        "conv2": {"kernel": (3, 3, 4, 16), "bias": (16,)},
        "up": {"kernel": (2, 2, 16, 4), "bias": (4,)},
        "fc1": {"kernel": (128, 32), "bias": (32,)},
        "head": {"kernel": (32, 10)},
    }
    for path, value in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        assert value.dtype == jnp.float32
        assert float(np.abs(np.asarray(value)).max()) <= _hand_bounds(name) * (1 + FLOAT32_ROUNDING), name
        layer, param = name.split("/")
        spec = MODEL[layer][param]
        alone = spec.init(jinit.path_key(key, name), spec.shape, spec.dtype)
        np.testing.assert_array_equal(value, alone)  # each parameter is its spec's initializer at its path's key


def test_torch_bias_serializes():
    init = jinit.torch_bias(784, "bfloat16").with_seed(3)
    config = jinit.serialize(init)
    assert config["class_name"] == "torch_bias" and config["config"] == {"fan_in": 784, "dtype": "bfloat16", "seed": 3}
    clone = jinit.deserialize(json.loads(json.dumps(config)))
    assert clone == init and hash(clone) == hash(init) and repr(clone) == repr(init)
    assert pickle.loads(pickle.dumps(init)) == init
    np.testing.assert_array_equal(clone(None, (5,)), init(None, (5,)))
    assert repr(jinit.torch_bias(9)) == "torch_bias(fan_in=9, dtype=None)"
    assert jinit.torch_bias(np.int64(9)) == jinit.torch_bias(9) != jinit.torch_bias(10)
    for spec in jax.tree.leaves(MODEL, is_leaf=_is_spec):  # every initializer of a layer round-trips
        assert jinit.deserialize(jinit.serialize(spec.init)) == spec.init


def test_specs_are_values():
    assert jinit.torch_conv(4, 8, (3, 3)) == jinit.torch_conv(4, 8, [3, 3], groups=1)
    assert hash(jinit.torch_linear(3, 4)["kernel"]) == hash(jinit.torch_linear(3, 4)["kernel"])
    assert jinit.torch_linear(3, 4, dtype=jnp.bfloat16)["bias"].init == jinit.torch_bias(3, "bfloat16")


# ----------------------------------------------------------------------------------------------------- errors

ERRORS = [
    ("bias_negative", lambda: jinit.torch_bias(-1), ValueError, r"`fan_in`.*non-negative.*Received: fan_in=-1$"),
    ("bias_float", lambda: jinit.torch_bias(3.0), TypeError, r"`fan_in`.*integer.*Received: fan_in=3\.0$"),
    ("bias_bool", lambda: jinit.torch_bias(True), TypeError, r"`fan_in`.*Received: fan_in=True$"),
    ("bias_huge", lambda: jinit.torch_bias(2**63), ValueError, r"`fan_in`.*2\*\*63.*fan_in=9223372036854775808$"),
    ("bias_dtype", lambda: jinit.torch_bias(3, "float33"), TypeError, r"`dtype`.*dtype='float33'$"),
    ("linear_negative", lambda: jinit.torch_linear(-2, 3), ValueError, r"`in_features`.*Received: in_features=-2$"),
    ("linear_str", lambda: jinit.torch_linear(2, "3"), TypeError, r"`out_features`.*Received: out_features='3'$"),
    ("linear_bias", lambda: jinit.torch_linear(2, 3, bias=1), TypeError, r"`bias`.*boolean.*Received: bias=1$"),
    (
        "linear_layout",
        lambda: jinit.torch_linear(2, 3, layout="flax"),
        ValueError,
        r"`layout`.*'jax', 'torch'.*Received: layout='flax'$",
    ),
    ("conv_int_kernel", lambda: jinit.torch_conv(2, 3, 3), TypeError, r"`kernel_size`.*\(3, 3\).*kernel_size=3$"),
    (
        "conv_empty_kernel",
        lambda: jinit.torch_conv(2, 3, ()),
        ValueError,
        r"`kernel_size`.*Received: kernel_size=\(\)$",
    ),
    (
        "conv_negative_kernel",
        lambda: jinit.torch_conv(2, 3, (3, -1)),
        ValueError,
        r"`kernel_size`.*Received: kernel_size=\(3, -1\)$",
    ),
    (
        "conv_float_kernel",
        lambda: jinit.torch_conv(2, 3, (3, 1.5)),
        TypeError,
        r"`kernel_size`.*Received: kernel_size=\(3, 1\.5\)$",
    ),
    ("conv_groups_zero", lambda: jinit.torch_conv(2, 2, (3,), groups=0), ValueError, r"`groups`.*positive.*groups=0$"),
    ("conv_groups_float", lambda: jinit.torch_conv(2, 2, (3,), groups=2.0), TypeError, r"`groups`.*groups=2\.0$"),
    (
        "conv_groups_in",
        lambda: jinit.torch_conv(6, 8, (3,), groups=4),
        ValueError,
        r"`in_channels`.*divisible by `groups`.*Received: in_channels=6, groups=4$",
    ),
    (
        "conv_groups_out",
        lambda: jinit.torch_conv(8, 6, (3,), groups=4, transpose=True),
        ValueError,
        r"`out_channels`.*divisible by `groups`.*Received: out_channels=6, groups=4$",
    ),
    ("conv_transpose", lambda: jinit.torch_conv(2, 3, (3,), transpose="yes"), TypeError, r"`transpose`.*'yes'$"),
    ("conv_dtype", lambda: jinit.torch_conv(2, 3, (3,), dtype="text"), TypeError, r"`dtype`.*dtype='text'$"),
    ("bias_call_int_dtype", lambda: jinit.torch_bias(3)(_key(), (2,), "int32"), TypeError, r"`torch_bias`.*int32"),
]


@pytest.mark.parametrize("call, error, message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(call, error, message, no_arrays):
    with pytest.raises(error, match=message):
        call()
