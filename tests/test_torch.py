"""PyTorch's semantics: calculate_gain, Kaiming/Xavier in torch's (out, in, *k) layout, trunc_normal's absolute
bounds, sparse and dirac; formulas from `torch.nn.init`'s documentation, distributions against scipy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinit

FAMILY_ALPHA = 1e-3  # the probability that any KS test of this file rejects a correct implementation
KEY = jax.random.key(17)

GAINS = [
    ("linear", None, 1.0), ("conv1d", None, 1.0), ("conv2d", None, 1.0), ("conv3d", None, 1.0),
    ("conv_transpose1d", None, 1.0), ("conv_transpose2d", None, 1.0), ("conv_transpose3d", None, 1.0),
    ("sigmoid", None, 1.0), ("tanh", None, 5 / 3), ("relu", None, math.sqrt(2)), ("selu", None, 3 / 4),
    ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))), ("leaky_relu", 0.2, math.sqrt(2 / (1 + 0.04))),
    ("leaky_relu", 0, math.sqrt(2)), ("tanh", 7.0, 5 / 3),
]  # fmt: skip


@pytest.mark.parametrize("nonlinearity, param, expected", GAINS)
def test_calculate_gain(nonlinearity, param, expected):
    assert jinit.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_rejects():
    with pytest.raises(ValueError, match=r"`nonlinearity`.*'relu'.*nonlinearity='gelu'"):
        jinit.calculate_gain("gelu")
    with pytest.raises(ValueError, match=r"`param`.*param='0.1'"):
        jinit.calculate_gain("leaky_relu", "0.1")
    with pytest.raises(ValueError, match=r"`param`.*param=True"):
        jinit.calculate_gain("leaky_relu", True)


def _ks(x, dist):
    result = stats.kstest(np.asarray(x, np.float64).ravel(), dist.cdf)
    assert result.pvalue > ALPHA, result


# (initializer, torch-layout shape, the exact distribution by torch's documented formula)
OUT, IN, K = 256, 64, 2  # fan_in = IN * K * K, fan_out = OUT * K * K
FAN_IN, FAN_OUT = IN * K * K, OUT * K * K
TORCH = [
    ("kaiming_normal", jinit.torch_kaiming_normal(), stats.norm(0, math.sqrt(2 / (1 + 0.0)) / math.sqrt(FAN_IN))),
    (
        "kaiming_normal_fan_out_relu",
        jinit.torch_kaiming_normal(mode="fan_out", nonlinearity="relu"),
        stats.norm(0, math.sqrt(2) / math.sqrt(FAN_OUT)),
    ),
    (
        "kaiming_uniform_linear_default",
        jinit.torch_kaiming_uniform(a=math.sqrt(5)),  # nn.Linear/Conv's default
        stats.uniform(-1 / math.sqrt(FAN_IN), 2 / math.sqrt(FAN_IN)),
    ),
    ("xavier_normal", jinit.torch_xavier_normal(1.5), stats.norm(0, 1.5 * math.sqrt(2 / (FAN_IN + FAN_OUT)))),
    (
        "xavier_uniform",
        jinit.torch_xavier_uniform(),
        stats.uniform(-math.sqrt(6 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ),
]


@pytest.mark.parametrize("init, dist", [t[1:] for t in TORCH], ids=[t[0] for t in TORCH])
def test_torch_layout_distributions(init, dist):
    x = init(KEY, (OUT, IN, K, K))
    _ks(x, dist)
    assert init == jinit.deserialize(jinit.serialize(init))  # a variance_scaling value, serializable


def test_torch_factories_reject():
    with pytest.raises(ValueError, match=r"`mode`.*'fan_in', 'fan_out'.*mode='fan_avg'"):
        jinit.torch_kaiming_normal(mode="fan_avg")
    with pytest.raises(ValueError, match=r"`nonlinearity`.*nonlinearity='swish'"):
        jinit.torch_kaiming_uniform(nonlinearity="swish")
    with pytest.raises(ValueError, match=r"`gain`.*gain=0"):
        jinit.torch_xavier_normal(0)


TRUNC = [(0.0, 1.0, -2.0, 2.0), (1.0, 2.0, 0.0, 1.5), (0.0, 0.02, -0.04, 0.04)]
# Bonferroni: the KS tests of this file (one per TORCH row, one per TRUNC row and one for `sparse`) each run at
# FAMILY_ALPHA divided by their number.
ALPHA = FAMILY_ALPHA / (len(TORCH) + len(TRUNC) + 1)


@pytest.mark.parametrize("mean, std, a, b", TRUNC)
def test_trunc_normal_has_absolute_bounds(mean, std, a, b):
    init = jinit.trunc_normal(mean, std, a, b)
    x = np.asarray(init(KEY, (2**16,)), np.float64)
    _ks(x, stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std))
    eps = 4 * np.finfo(np.float32).eps * max(abs(a), abs(b), std)  # mean + std * z, rounded in float32
    assert x.min() >= a - eps and x.max() <= b + eps
    y = np.asarray(init(KEY, (2**16,), jnp.bfloat16).astype(jnp.float32), np.float64)
    assert y.min() >= a - eps and y.max() <= b + eps


def test_trunc_normal_rejects():
    with pytest.raises(ValueError, match=r"`a`.*`b`.*a=1\.0, b=1\.0"):
        jinit.trunc_normal(a=1.0, b=1.0)
    with pytest.raises(ValueError, match=r"`std`.*positive.*std=0"):
        jinit.trunc_normal(std=0)


def test_sparse():
    rows, cols, sparsity, std = 1000, 80, 0.3, 0.5
    w = np.asarray(jinit.sparse(sparsity, std)(KEY, (rows, cols)))
    np.testing.assert_array_equal((w == 0).sum(axis=0), np.full(cols, math.ceil(sparsity * rows)))
    _ks(w[w != 0], stats.norm(0, std))
    assert len({tuple(np.flatnonzero(w[:, c] == 0)) for c in range(cols)}) == cols  # columns drawn apart
    np.testing.assert_array_equal(w, jinit.sparse(sparsity, std)(KEY, (rows, cols)))
    assert not (np.asarray(jinit.sparse(0.0)(KEY, (5, 3))) == 0).any()
    assert (np.asarray(jinit.sparse(1.0)(KEY, (5, 3))) == 0).all()
    with pytest.raises(ValueError, match=r"`sparsity`.*sparsity=1\.5"):
        jinit.sparse(1.5)
    with pytest.raises(ValueError, match=r"`sparse`.*2-D.*shape=\(2, 3, 4\)"):
        jinit.sparse(0.1)(KEY, (2, 3, 4))


def _dirac_reference(shape, groups):
    w = np.zeros(shape)
    per_group = shape[0] // groups
    for g in range(groups):
        for d in range(min(per_group, shape[1])):
            w[(g * per_group + d, d, *(k // 2 for k in shape[2:]))] = 1
    return w


@pytest.mark.parametrize("shape, groups", [((4, 4, 3), 1), ((6, 2, 3, 3), 2), ((8, 3, 3, 5, 2), 4), ((3, 5, 1), 3)])
def test_dirac(shape, groups):
    w = jinit.dirac(groups)(None, shape)
    np.testing.assert_array_equal(w, _dirac_reference(shape, groups))
    x = jax.random.normal(KEY, (1, shape[1], 7))  # a 1-D convolution with a dirac kernel copies its input
    if len(shape) == 3 and groups == 1 and shape[0] >= shape[1]:
        y = jax.lax.conv_general_dilated(x, w, (1,), "SAME")
        np.testing.assert_allclose(y[:, : shape[1]], x, atol=1e-6)


def test_dirac_rejects():
    with pytest.raises(ValueError, match=r"`dirac`.*divisible.*shape=\(5, 2, 3\), groups=2"):
        jinit.dirac(2)(None, (5, 2, 3))
    with pytest.raises(ValueError, match=r"`dirac`.*rank 3, 4 or 5.*shape=\(3, 3\)"):
        jinit.dirac()(None, (3, 3))
    with pytest.raises(ValueError, match=r"`groups`.*groups=0"):
        jinit.dirac(0)
    with pytest.raises(TypeError, match=r"`groups`.*groups=1\.0"):
        jinit.dirac(1.0)
