"""Statistical tests: samples against the exact distributions of `scipy.stats`.

Every tolerance is derived from the sample size, none is guessed:

- the Kolmogorov-Smirnov tests of this file, ``KS_TESTS`` of them, reject together with probability at most
  ``FAMILY_ALPHA``: each runs at level ``ALPHA = FAMILY_ALPHA / KS_TESTS`` (Bonferroni's correction, which holds
  whatever the dependence between the tests; `KS_TESTS` is counted from the tables below);
- a sample mean (or variance) must lie within ``K`` standard errors of the exact mean (variance), the standard
  error computed from the exact distribution: ``sqrt(var / n)`` for the mean and ``sqrt((mu4 - var**2) / n)`` for
  the (unbiased) sample variance, ``mu4`` being the fourth central moment.

Keys are fixed (one per initializer, shape and dtype), so the tests are deterministic; for fresh keys a correct
implementation fails any of the KS checks with probability at most ``FAMILY_ALPHA`` and a moment check with
probability ``6e-7``.

Low-precision dtypes are sampled in float32, rounded to nearest and clamped into the bounds, so their exact
distribution is the float32 one discretized onto the representable values of the dtype; `_discretized` computes
it and `_assert_discrete` compares a sample with it.
"""

import dataclasses
import functools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinit

from cases import LOW_PRECISION

FAMILY_ALPHA = 1e-3  # the probability that any KS test of this file rejects a correct implementation
K = 5.0  # standard errors: P(|N(0, 1)| > 5) = 5.7e-7
N = 2**16  # float32 samples for a KS test (at least 65,536)
N_LOW = 2**20  # bfloat16 and float16 samples

DENSE = (512, 128)  # 65,536 samples
CONV = (3, 3, 64, 128)  # 73,728 samples
MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
TRUNCATED_STDDEV = 0.87962566103423978  # standard deviation of N(0, 1) truncated to [-2, 2]
COMPLEX_TRUNCATED_STDDEV = 0.95311164380491208  # jinit's (and JAX's) constant for complex truncated normals
FLOAT32_ROUNDING = 2.0**-21  # relative slack for a bound computed in float32 by a few roundings of 2**-24 each


def _key(*parts) -> jax.Array:
    """A fixed key per test sample, so that different tests draw independent samples."""
    return jax.random.key(zlib.crc32(repr(parts).encode()) % 2**31)


@functools.cache
def _sample(init: jinit.Initializer, shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """``init(key, shape, dtype)`` as a NumPy array, drawn once per module run and shared by the tests."""
    return np.asarray(init(_key(init, shape, dtype), shape, dtype))


# ----------------------------------------------------------------------------------------------- helpers


def _assert_moments(x: np.ndarray, mean: float, var: float, mu4: float) -> None:
    """Sample mean and unbiased sample variance within K standard errors of the exact ones."""
    n = x.size
    mean_se = math.sqrt(var / n)
    var_se = math.sqrt((mu4 - var**2) / n)
    assert abs(x.mean() - mean) <= K * mean_se, f"mean {x.mean()} vs {mean} (standard error {mean_se})"
    assert abs(x.var(ddof=1) - var) <= K * var_se, f"variance {x.var(ddof=1)} vs {var} (standard error {var_se})"


def _assert_continuous(x, dist, min_size: int = N) -> None:
    """`x` is a sample of the continuous scipy distribution `dist`: KS test, mean and variance."""
    x = np.asarray(x, np.float64).ravel()
    assert x.size >= min_size
    ks = stats.kstest(x, dist.cdf)
    assert ks.pvalue > ALPHA, f"KS statistic {ks.statistic}, p-value {ks.pvalue}"
    var = float(dist.var())
    mu4 = (float(dist.stats(moments="k")) + 3) * var**2  # from the excess kurtosis
    _assert_moments(x, float(dist.mean()), var, mu4)


def _assert_within(x, lower: float, upper: float, *, upper_open: bool = False, rtol: float = 0.0) -> None:
    """Every sample in [lower, upper] ([lower, upper) when `upper_open`), each bound widened by rtol * |bound|."""
    x = np.asarray(x, np.float64)  # compare in float64: NumPy would compare float32 with a bound cast to float32
    assert not np.isnan(x).any()
    lo, hi = lower - rtol * abs(lower), upper + rtol * abs(upper)
    assert x.min() >= lo, (x.min(), lo)
    if upper_open and rtol == 0:
        assert x.max() < hi, (x.max(), hi)
    else:
        assert x.max() <= hi, (x.max(), hi)


def _assert_uncorrelated(a: np.ndarray, b: np.ndarray) -> None:
    """For independent `a` and `b` the sample correlation is asymptotically N(0, 1 / n)."""
    r = np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]
    assert abs(r) <= K / math.sqrt(np.size(a)), r


@functools.cache
def _values(dtype: str) -> np.ndarray:
    """Every finite value of a floating dtype of 8 or 16 bits, sorted, with -0.0 merged into 0.0."""
    bits = jnp.dtype(dtype).itemsize * 8
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        values = np.arange(2**bits, dtype=f"uint{bits}").view(jnp.dtype(dtype)).astype(np.float64)
    return np.unique(values[np.isfinite(values)])


def _discretized(dist, dtype: str, lower=-np.inf, upper=np.inf, upper_open=False) -> tuple[np.ndarray, np.ndarray]:
    """The exact distribution of a sample of `dist` rounded to nearest into `dtype`, then clamped into the bounds.

    Returns the support (the values of `dtype` in [lower, upper], or [lower, upper)) and their probabilities: a
    value gets the mass of `dist` between the midpoints to its neighbours (round to nearest; ties have probability
    zero), and the extreme values also get the mass beyond them (the clamp).
    """
    values = _values(dtype)
    values = values[(values >= lower) & ((values < upper) if upper_open else (values <= upper))]
    cdf = np.concatenate([[0.0], dist.cdf((values[:-1] + values[1:]) / 2), [1.0]])
    return values, np.diff(cdf)


def _discrete_ks(x: np.ndarray, values: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """The KS statistic of `x` against the discrete distribution (values, probs), and its critical value.

    Both CDFs are step functions that jump only at `values`, so the statistic is the largest difference there. For
    a discrete distribution the statistic is stochastically smaller than for a continuous one, so the continuous
    critical value at level ALPHA (`scipy.stats.kstwo`) is a conservative threshold.
    """
    x = np.sort(np.asarray(x, np.float64).ravel())
    empirical = np.searchsorted(x, values, side="right") / x.size
    statistic = np.abs(empirical - np.cumsum(probs)).max()
    return statistic, stats.kstwo(x.size).isf(ALPHA)


def _discrete_moments(values: np.ndarray, probs: np.ndarray) -> tuple[float, float, float]:
    """Exact mean, variance and fourth central moment of the discrete distribution (values, probs)."""
    mean = values @ probs
    centred = values - mean
    return mean, centred**2 @ probs, centred**4 @ probs


def _assert_discrete(x, values: np.ndarray, probs: np.ndarray) -> None:
    """`x` is a sample of the discrete distribution (values, probs): support, KS test, mean and variance."""
    x = np.asarray(x, np.float64).ravel()
    assert not np.isnan(x).any()
    outside = x[~np.isin(x, values)]
    assert outside.size == 0, f"{outside.size} samples outside the support, e.g. {outside[:5]}"
    statistic, critical = _discrete_ks(x, values, probs)
    assert statistic <= critical, f"KS statistic {statistic} > critical value {critical}"
    _assert_moments(x, *_discrete_moments(values, probs))


# ------------------------------------------------------------------------------------- float32 samples


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    init: jinit.Initializer
    shape: tuple[int, ...]
    dist: object  # a frozen scipy.stats distribution
    lower: float = -np.inf
    upper: float = np.inf
    upper_open: bool = False
    rtol: float = 0.0  # relative slack of the bounds (0: exact float32 bounds)
    variance: float | None = None  # scale / n, for variance scaling


def _variance(scale: float, mode: str, shape: tuple[int, ...]) -> float:
    fan_in, fan_out = jinit.compute_fans(shape)
    fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
    fans["fan_geo_avg"] = math.sqrt(fan_in * fan_out)
    return scale / fans[mode]


def _vs_row(id: str, init: jinit.Initializer, shape: tuple[int, ...], distribution: str, variance: float) -> Row:
    """The exact distribution and bounds of variance scaling with `variance` = scale / n."""
    if distribution == "truncated_normal":
        stddev = math.sqrt(variance) / TRUNCATED_STDDEV
        dist = stats.truncnorm(-2, 2, scale=stddev)
        return Row(id, init, shape, dist, -2 * stddev, 2 * stddev, rtol=FLOAT32_ROUNDING, variance=variance)
    if distribution == "normal":
        return Row(id, init, shape, stats.norm(scale=math.sqrt(variance)), variance=variance)
    limit = math.sqrt(3 * variance)
    dist = stats.uniform(-limit, 2 * limit)
    return Row(id, init, shape, dist, -limit, limit, upper_open=True, rtol=FLOAT32_ROUNDING, variance=variance)


# Bounds of the elementwise rows are exactly representable in float32 and exactly computed, so they are exact.
ROWS = (
    Row("normal", jinit.normal(0.37), DENSE, stats.norm(scale=0.37)),
    Row("normal_mean", jinit.normal(0.5, mean=1.5), DENSE, stats.norm(1.5, 0.5)),
    Row("random_normal", jinit.random_normal(), DENSE, stats.norm(0.0, 0.05)),
    Row("random_normal_args", jinit.random_normal(-2.0, 3.0), DENSE, stats.norm(-2.0, 3.0)),
    Row("uniform", jinit.uniform(3.0), DENSE, stats.uniform(0.0, 3.0), 0.0, 3.0, upper_open=True),
    Row("random_uniform", jinit.random_uniform(-0.25, 0.75), DENSE, stats.uniform(-0.25, 1.0), -0.25, 0.75, True),
    Row("truncated_normal", jinit.truncated_normal(0.5), DENSE, stats.truncnorm(-2, 2, scale=0.5), -1.0, 1.0),
    Row(
        "truncated_normal_bounds",
        jinit.truncated_normal(2.0, lower=-1.0, upper=3.0),
        DENSE,
        stats.truncnorm(-1, 3, scale=2.0),
        -2.0,
        6.0,
    ),
    Row("truncated_normal_mean", jinit.truncated_normal(0.5, mean=-1.0), DENSE, stats.truncnorm(-2, 2, -1, 0.5), -2, 0),
    Row(
        "truncated_normal_one_sided",
        jinit.truncated_normal(1.0, lower=0.5, upper=4.0, mean=3.0),
        DENSE,
        stats.truncnorm(0.5, 4.0, loc=3.0),
        3.5,
        7.0,
    ),
    *(
        _vs_row(
            f"variance_scaling_{distribution}_{mode}_{name}",
            jinit.variance_scaling(1.7, mode, distribution),
            shape,
            distribution,
            _variance(1.7, mode, shape),
        )
        for distribution in ("truncated_normal", "normal", "uniform")
        for mode in MODES
        for name, shape in (("dense", DENSE), ("conv", CONV))
    ),
    # Presets on CONV, with the variance derived by hand: fan_in = 3*3*64 = 576, fan_out = 3*3*128 = 1152,
    # fan_avg = 864. glorot: 1 / fan_avg, he: 2 / fan_in, lecun: 1 / fan_in.
    _vs_row("glorot_uniform", jinit.glorot_uniform(), CONV, "uniform", 1 / 864),
    _vs_row("glorot_normal", jinit.glorot_normal(), CONV, "truncated_normal", 1 / 864),
    _vs_row("he_uniform", jinit.he_uniform(), CONV, "uniform", 2 / 576),
    _vs_row("he_normal", jinit.he_normal(), CONV, "truncated_normal", 2 / 576),
    _vs_row("lecun_uniform", jinit.lecun_uniform(), CONV, "uniform", 1 / 576),
    _vs_row("lecun_normal", jinit.lecun_normal(), CONV, "truncated_normal", 1 / 576),
)
BOUNDED = tuple(r for r in ROWS if np.isfinite(r.lower) and np.isfinite(r.upper))


ALPHA = 0.0  # set below the tables, once the KS tests are counted


def test_fans_by_hand():
    assert jinit.compute_fans(CONV) == (3 * 3 * 64, 3 * 3 * 128) == (576, 1152)
    assert jinit.compute_fans(DENSE) == (512, 128)
    assert _variance(1.7, "fan_geo_avg", DENSE) == 1.7 / 256  # sqrt(512 * 128)
    assert _variance(1.0, "fan_avg", CONV) == 1 / 864


def test_truncated_stddev_constant():
    # The variance-scaling reference distributions have variance scale / n exactly only if this holds.
    assert stats.truncnorm(-2, 2).std() == pytest.approx(TRUNCATED_STDDEV, rel=1e-14)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_float32_matches_exact_distribution(row):
    x = _sample(row.init, row.shape)
    assert x.dtype == np.float32 and x.shape == row.shape
    if row.variance is not None:
        # The reference has exactly the variance that variance scaling promises (checked, not assumed).
        assert row.dist.var() == pytest.approx(row.variance, rel=1e-12)
    _assert_continuous(x, row.dist)


@pytest.mark.parametrize("row", BOUNDED, ids=[r.id for r in BOUNDED])
def test_float32_hard_bounds(row):
    _assert_within(_sample(row.init, row.shape), row.lower, row.upper, upper_open=row.upper_open, rtol=row.rtol)


# ---------------------------------------------------------------------------------------------- orthogonal


def _as_matrix(x: np.ndarray, column_axis: int) -> np.ndarray:
    """The matrix whose columns run along `column_axis` and whose rows are all other axes flattened."""
    return np.moveaxis(np.asarray(x, np.float64), column_axis, -1).reshape(-1, x.shape[column_axis])


def _assert_orthonormal(m: np.ndarray, scale: float) -> None:
    """Columns (tall) or rows (wide) orthonormal up to `scale`.

    Householder QR in float32 loses orthogonality by O(n * eps) for n rows; allow 10 * n * eps, scaled by scale**2.
    """
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    atol = 10 * max(m.shape) * np.finfo(np.float32).eps * scale**2
    np.testing.assert_allclose(gram, scale**2 * np.eye(len(gram)), rtol=0, atol=atol)


@pytest.mark.parametrize(
    ("shape", "column_axis"),
    [((64, 16), -1), ((16, 64), -1), ((3, 3, 16, 32), -1), ((1, 1, 8, 32), -1), ((8, 3, 3, 4), 0), ((32, 3, 3, 2), 0)],
)
@pytest.mark.parametrize("scale", [1.0, 1.3])
def test_orthogonal_is_orthonormal(shape, column_axis, scale):
    x = jinit.orthogonal(scale, column_axis=column_axis)(_key("orthogonal", shape, column_axis), shape)
    assert x.shape == shape
    _assert_orthonormal(_as_matrix(np.asarray(x), column_axis), scale)


@pytest.mark.parametrize(
    ("shape", "centre"), [((4, 8, 8), (1,)), ((3, 3, 16, 32), (1, 1)), ((3, 2, 3, 4, 4), (1, 0, 1))]
)
def test_delta_orthogonal_centre_tap(shape, centre):
    x = np.asarray(jinit.delta_orthogonal(1.3)(_key("delta_orthogonal", shape), shape), np.float64)
    _assert_orthonormal(x[centre], 1.3)
    rest = x.copy()
    rest[centre] = 0
    assert not rest.any(), "a tap other than the centre is non-zero"


HAAR_N = 4  # the order of the orthogonal matrices of the Haar test


@functools.cache
def _haar_draws(n: int = HAAR_N, draws: int = N) -> np.ndarray:
    """`draws` independent n x n orthogonal matrices, one per key."""
    keys = jax.random.split(_key("haar", n), draws)
    return np.asarray(jax.vmap(lambda key: jinit.orthogonal()(key, (n, n)))(keys), np.float64)


def test_orthogonal_is_haar():
    # For Haar Q in O(n) every entry is the first coordinate of a uniform point on the sphere S^(n-1):
    # (Q[i, j] + 1) / 2 ~ Beta((n-1)/2, (n-1)/2) and Q[i, j]**2 ~ Beta(1/2, (n-1)/2). Without the sign correction
    # of QR the diagonal of Q has one sign, which the (signed) diagonal tests and the mean reject.
    q = _haar_draws()
    draws, n = q.shape[0], q.shape[1]
    for i in range(n):
        ks = stats.kstest((q[:, i, i] + 1) / 2, stats.beta((n - 1) / 2, (n - 1) / 2).cdf)
        assert ks.pvalue > ALPHA, (i, ks)
    ks = stats.kstest(q[:, 0, 0] ** 2, stats.beta(0.5, (n - 1) / 2).cdf)
    assert ks.pvalue > ALPHA, ks
    # E Q[0, 0] = 0 and Var Q[0, 0] = 1 / n (a unit row has n entries of equal variance).
    assert abs(q[:, 0, 0].mean()) <= K * math.sqrt(1 / n / draws)
    # det Q is +1 or -1 with probability 1/2 each: the fraction of +1 has standard error 1 / (2 sqrt(draws)).
    positive = (np.linalg.det(q) > 0).mean()
    assert abs(positive - 0.5) <= K * 0.5 / math.sqrt(draws), positive


# ------------------------------------------------------------------------------------------------ identity


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3)])
@pytest.mark.parametrize("gain", [1.0, 1.5])
def test_identity(shape, gain):
    x = jinit.identity(gain)(None, shape)
    np.testing.assert_array_equal(np.asarray(x), gain * np.eye(*shape, dtype=np.float32))


# ------------------------------------------------------------------------------------- low precision


@dataclasses.dataclass(frozen=True)
class LowRow:
    id: str
    init: jinit.Initializer
    dist: object
    lower: float = -np.inf
    upper: float = np.inf
    upper_open: bool = False

    def discretized(self, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        return _discretized(self.dist, dtype, self.lower, self.upper, self.upper_open)


LOW_SHAPE = (1024, 1024)  # 2**20 samples; fan_in = fan_out = fan_avg = 1024
GLOROT_LIMIT = math.sqrt(3 / 1024)
HE_STDDEV = math.sqrt(2 / 1024) / TRUNCATED_STDDEV
LOW_ROWS = (
    LowRow("truncated_normal", jinit.truncated_normal(1.0), stats.truncnorm(-2, 2), -2.0, 2.0),
    LowRow("normal", jinit.normal(1.0), stats.norm()),
    # [0, 1): values that round up to 1.0 are clamped to the largest value below 1.
    LowRow("uniform", jinit.uniform(1.0), stats.uniform(0, 1), 0.0, 1.0, upper_open=True),
    LowRow(
        "glorot_uniform",
        jinit.glorot_uniform(),
        stats.uniform(-GLOROT_LIMIT, 2 * GLOROT_LIMIT),
        -GLOROT_LIMIT,
        GLOROT_LIMIT,
        upper_open=True,
    ),
    LowRow("he_normal", jinit.he_normal(), stats.truncnorm(-2, 2, scale=HE_STDDEV), -2 * HE_STDDEV, 2 * HE_STDDEV),
)
FLOAT8 = tuple(d.name for d in LOW_PRECISION if d.itemsize == 1)
assert {d.name for d in LOW_PRECISION} == {"bfloat16", "float16", *FLOAT8}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("row", LOW_ROWS, ids=[r.id for r in LOW_ROWS])
def test_low_precision_matches_discretized_distribution(row, dtype):
    x = _sample(row.init, LOW_SHAPE, dtype)
    assert x.dtype == jnp.dtype(dtype) and x.size == N_LOW
    _assert_discrete(x, *row.discretized(dtype))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_truncated_tail_reach(dtype):
    x = np.asarray(_sample(jinit.truncated_normal(1.0), LOW_SHAPE, dtype), np.float64)
    values, probs = LOW_ROWS[0].discretized(dtype)
    # P(no sample above 1.95) = (1 - p)**n <= exp(-n p): require n p >= 20, so a correct sampler misses the tail
    # with probability below 2e-9 (n p is about 3,000 here; a sampler that never exceeds 1.87, as JAX's bfloat16
    # one, always fails).
    for tail in (probs[values > 1.95].sum(), probs[values < -1.95].sum()):
        assert x.size * tail >= 20
    assert x.max() > 1.95 and x.min() < -1.95, (x.min(), x.max())
    assert x.max() <= 2.0 and x.min() >= -2.0, (x.min(), x.max())


def test_discretized_test_rejects_jax_bfloat16_truncated_normal():
    # jax.nn.initializers samples bfloat16 directly, which biases the mean and cuts the tails: the tests above fail.
    init = jax.nn.initializers.truncated_normal(1.0)
    x = np.asarray(init(_key("jax", "truncated_normal", "bfloat16"), LOW_SHAPE, jnp.bfloat16), np.float64)
    values, probs = LOW_ROWS[0].discretized("bfloat16")
    statistic, critical = _discrete_ks(x, values, probs)
    assert statistic > critical, (statistic, critical)
    mean, var, _ = _discrete_moments(values, probs)
    assert abs(x.mean() - mean) > K * math.sqrt(var / x.size), x.mean()
    assert x.max() < 1.95, x.max()
    with pytest.raises(AssertionError):
        _assert_discrete(x, values, probs)


# Every float8 type for the truncated normal; the uniform's open bound for three layouts (finite-only, NaN at
# -0 (fnuz) and four mantissa bits), to keep compilation time down.
FLOAT8_CASES = [(LOW_ROWS[0], d) for d in FLOAT8] + [
    (LOW_ROWS[2], d) for d in ("float8_e4m3fn", "float8_e5m2fnuz", "float8_e3m4")
]


@pytest.mark.parametrize(("row", "dtype"), FLOAT8_CASES, ids=[f"{r.id}-{d}" for r, d in FLOAT8_CASES])
def test_float8_matches_discretized_distribution(row, dtype):
    # Lighter: 2**16 samples. The exact mean is not that of the float32 distribution: for uniform(1.0) the few
    # values of a float8 type below 1 and the clamp of values that round up to 1 move it well away from 0.5.
    x = _sample(row.init, (N,), dtype)
    assert x.dtype == jnp.dtype(dtype)
    _assert_discrete(x, *row.discretized(dtype))


# -------------------------------------------------------------------------------------------------- complex

COMPLEX_NORMAL = [
    (jinit.normal(0.37), 0.37**2 / 2),
    (jinit.variance_scaling(1.7, "fan_in", "normal"), 1.7 / 512 / 2),  # DENSE: fan_in 512
]


@pytest.mark.parametrize(("init", "part_var"), COMPLEX_NORMAL, ids=["normal", "variance_scaling_normal"])
def test_complex_normal(init, part_var):
    # Real and imaginary parts independent, each N(0, variance / 2).
    z = _sample(init, DENSE, "complex64")
    assert z.dtype == np.complex64
    for part in (z.real, z.imag):
        _assert_continuous(part, stats.norm(scale=math.sqrt(part_var)))
    _assert_uncorrelated(z.real, z.imag)


def test_complex_uniform_disk():
    # Uniform on the disk of radius R with E|z|^2 = R^2 / 2 = variance: |z|^2 ~ U(0, 2 variance), independent of
    # the angle, which is uniform.
    variance = _variance(1.7, "fan_avg", CONV)
    z = _sample(jinit.variance_scaling(1.7, "fan_avg", "uniform"), CONV, "complex64").astype(np.complex128)
    modulus2 = np.abs(z) ** 2
    dist = stats.uniform(0, 2 * variance)
    assert dist.mean() == pytest.approx(variance, rel=1e-15)
    _assert_continuous(modulus2, dist)
    _assert_continuous(np.angle(z), stats.uniform(-np.pi, 2 * np.pi))
    _assert_uncorrelated(modulus2, np.angle(z))
    _assert_within(modulus2, 0.0, 2 * variance, rtol=FLOAT32_ROUNDING)


def _complex_truncated():
    """A 2**20 sample of complex variance scaling "truncated_normal", its variance scale / n and its stddev."""
    variance = 1 / 1024  # fan_in of LOW_SHAPE
    z = _sample(jinit.variance_scaling(1.0, "fan_in", "truncated_normal"), LOW_SHAPE, "complex64")
    return z.astype(np.complex128), variance, math.sqrt(variance) / COMPLEX_TRUNCATED_STDDEV


def test_complex_truncated_normal():
    # z = stddev * r * exp(i theta): r^2 is Exp(1) truncated to [0, 4] (|z| <= 2 stddev), theta uniform.
    z, _, stddev = _complex_truncated()
    _assert_continuous(np.abs(z) ** 2 / stddev**2, stats.truncexpon(4.0))
    _assert_continuous(np.angle(z), stats.uniform(-np.pi, 2 * np.pi))
    # r is computed with exp, log and sqrt in float32: allow a few roundings.
    _assert_within(np.abs(z), 0.0, 2 * stddev, rtol=4 * FLOAT32_ROUNDING)


def test_complex_truncated_normal_variance_is_jax_s():
    # JAX's constant COMPLEX_TRUNCATED_STDDEV**2 = 1 - 5 exp(-4) is E[r^2; r^2 <= 4], not divided by
    # P(r^2 <= 4) = 1 - exp(-4); so E|z|^2 = stddev^2 E[r^2 | r^2 <= 4] = variance / (1 - exp(-4)), 1.87% more
    # than scale / n. jinit keeps JAX's values bitwise (the README says so); this pins the exact figure.
    # Var |z|^2 = stddev^4 Var(r^2) for r^2 ~ truncexpon(4): the standard error of the mean of |z|^2.
    z, variance, stddev = _complex_truncated()
    modulus2 = np.abs(z) ** 2
    assert stddev**2 * stats.truncexpon(4.0).mean() == pytest.approx(variance / (1 - math.exp(-4)), rel=1e-12)
    expected = variance / (1 - math.exp(-4))
    se = stddev**2 * stats.truncexpon(4.0).std() / math.sqrt(z.size)
    assert abs(modulus2.mean() - expected) <= K * se, (modulus2.mean() / variance, se / variance)
    assert abs(modulus2.mean() - variance) > K * se  # the sample is large enough to tell the two apart


# Every KS test above: one per float32 row, n + 1 for the Haar test, one per low-precision row and dtype and per
# float8 case, two per complex normal, two for the disk and two for the complex truncated normal.
KS_TESTS = len(ROWS) + HAAR_N + 1 + 2 * len(LOW_ROWS) + len(FLOAT8_CASES) + 2 * len(COMPLEX_NORMAL) + 2 + 2
ALPHA = FAMILY_ALPHA / KS_TESTS
