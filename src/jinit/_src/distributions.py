"""The distributions of jinit's elementwise random initializers: how a key becomes values. All the math is here.

Each distribution is a small frozen dataclass and a pytree: its hyperparameters are the leaves, traced by the
engine's kernels (so a new `stddev` does not recompile), and its class and ``None`` fields are the structure.
`sample` computes exactly what `jax.nn.initializers` computes, the same `jax.random` calls and the same
arithmetic in the same order, so float32, float64 and complex results are bitwise JAX's. Floating types
narrower than 32 bits (bfloat16, float16, float8) are sampled in float32 and rounded once at the end, then
clamped into the distribution's bounds, so they are unbiased and stay in range.
"""

import dataclasses
import functools
import math
import operator
from collections.abc import Callable
from fractions import Fraction
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from jinit._src import host_keys

TRUNCATED_STDDEV = 0.87962566103423978
"""Standard deviation of N(0, 1) truncated to [-2, 2]: variance scaling divides by it (as JAX and Keras)."""
COMPLEX_TRUNCATED_STDDEV = 0.95311164380491208
"""JAX's constant for the complex truncated normal, ``sqrt(1 - 5 exp(-4))`` (see variance_scaling's docstring)."""


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a sample is computed in: float32 for floats narrower than 32 bits, else `dtype` itself."""
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype


def _materialized(x: jax.Array) -> jax.Array:
    """`x` as a value XLA cannot fold into the arithmetic that uses it.

    `jax.nn.initializers` scales a finished sample in a separate operation. In one program XLA would merge
    ``sqrt(2) * erf_inv(u) * stddev`` into ``erf_inv(u) * (sqrt(2) * stddev)``, and turn a division by a
    constant into a multiplication by its reciprocal, and fold constant expressions with its own (not the
    run-time) functions; each rounds differently. The barrier keeps JAX's operations, and so the bits of
    JAX's result.
    """
    return jax.lax.optimization_barrier(x)


def _constant(value: complex, dtype: np.dtype) -> jax.Array:
    """A constant that XLA computes with at run time, as in JAX's op-by-op code (see `_materialized`)."""
    return _materialized(jnp.asarray(value, dtype))


def _divide(a: jax.Array, divisor: float) -> jax.Array:
    """``a / b`` in `a`'s dtype, rounded once also where `a` is batched (one value per row of the rows' loop).

    XLA turns a division by a broadcast value into a multiplication by its reciprocal, which rounds twice: a
    batched `a` divided by the constant `divisor` would be such a division. Here the divisor has `a`'s batching
    (a select that `vmap` batches as it batches `a`) behind a barrier, so it is no broadcast; unbatched, this is
    ``a / divisor``, as JAX computes it.
    """
    b = jnp.asarray(divisor, a.dtype)
    return a / _materialized(jnp.where(a == a, b, b))


def _inward(bound: jax.Array, dtype: np.dtype, *, down: bool, strict: bool) -> jax.Array:
    """`bound` (a float32 scalar) rounded into `dtype` on its inner side, within the dtype's finite range.

    down=True gives the largest value of `dtype` that is <= bound (< bound when `strict`); down=False the
    smallest that is >= bound.
    """
    info = jnp.finfo(dtype)
    bound = jnp.clip(bound, float(info.min), float(info.max))  # beyond, a float8 "fn" type would give NaN
    rounded = bound.astype(dtype)
    wide = rounded.astype(bound.dtype)
    # Step towards the finite extremes, not towards infinity: float8 types without infinities make it NaN.
    if down:
        outside = (wide >= bound) if strict else (wide > bound)
        return jnp.where(outside, jax.lax.nextafter(rounded, jnp.array(jnp.finfo(dtype).min, dtype)), rounded)
    outside = wide < bound
    return jnp.where(outside, jax.lax.nextafter(rounded, jnp.array(jnp.finfo(dtype).max, dtype)), rounded)


def cast(
    x: jax.Array, dtype: np.dtype, lower: Any = None, upper: Any = None, upper_open: bool = False, always: bool = False
) -> jax.Array:
    """Casts a sample computed in `compute_dtype` to `dtype`, keeping it inside [lower, upper] (or [lower, upper)).

    A sample already in `dtype` is left alone (it is JAX's), unless `always`.
    """
    if x.dtype == dtype and not always:
        return x
    y = saturate(x, dtype)
    if lower is not None:
        low = _inward(jnp.asarray(lower, x.dtype), dtype, down=False, strict=False)
        y = jnp.where(y < low, low, y)
    if upper is not None:
        high = _inward(jnp.asarray(upper, x.dtype), dtype, down=True, strict=upper_open)
        y = jnp.where(y > high, high, y)
    return y


def saturate(x: jax.Array, dtype: np.dtype) -> jax.Array:
    """`x` rounded to `dtype`, values beyond the dtype's finite range clamped to it (rounding would give infinity,
    or NaN for float8 types without one)."""
    if x.dtype == dtype or not jnp.issubdtype(dtype, jnp.floating):
        return x.astype(dtype)
    info = jnp.finfo(dtype)
    return jnp.clip(x, float(info.min), float(info.max)).astype(dtype)


def clamp(x: jax.Array, low: Any, high: Any) -> jax.Array:
    """`x` clamped into ``[low, high]``, two values of `x`'s dtype (`inward_bounds`): no value of `x` within them
    changes, not even the sign of a zero (``clip(-0.0, 0.0, 0.0)`` is ``0.0``), so JAX's own values stay bitwise
    JAX's."""
    low, high = jnp.asarray(low, x.dtype), jnp.asarray(high, x.dtype)
    return jnp.where(x < low, low, jnp.where(x > high, high, x))


@functools.lru_cache(maxsize=1024)
def inward_bounds(
    lower: Fraction | None, upper: Fraction | None, upper_open: bool, dtype: np.dtype
) -> tuple[float, float] | None:
    """The smallest value of `dtype` that is >= `lower` and the largest that is <= `upper` (< `upper` when
    `upper_open`), as Python floats (exact); None when no value of `dtype` lies between the two.

    `lower` and `upper` are exact (rationals: a distribution's bounds computed from its float hyperparameters
    without rounding), so the samples clamped into the result never leave the documented bounds. A bound beyond
    the dtype's finite range is its finite extreme. A bounded call computes this once per hyperparameters and
    dtype (the cache is bounded).
    """
    info = jnp.finfo(dtype)
    top, bottom = Fraction(float(info.max)), Fraction(float(info.min))

    def value(v: np.ndarray) -> Fraction:
        return Fraction(float(v))

    def step(v: np.ndarray, up: bool) -> np.ndarray:
        return np.nextafter(v, np.asarray(info.max if up else info.min, dtype))

    if lower is None or lower <= bottom:
        lo = np.asarray(info.min, dtype)
    elif lower > top:
        return None
    else:
        lo = np.asarray(float(lower)).astype(dtype)  # within an ulp of `lower`
        while value(lo) < lower:
            lo = step(lo, up=True)
    if upper is None or upper > top:
        hi = np.asarray(info.max, dtype)
    elif upper < bottom or (upper_open and upper == bottom):
        return None
    else:
        hi = np.asarray(float(upper)).astype(dtype)
        while value(hi) > upper or (upper_open and value(hi) == upper):
            hi = step(hi, up=False)
    if value(lo) > value(hi):
        return None
    return float(lo), float(hi)


def bounded(
    name: str, lower: Fraction, upper: Fraction, upper_open: bool, dtype: np.dtype, received: dict[str, Any]
) -> tuple[float, float]:
    """`inward_bounds` of ``[lower, upper]`` (or ``[lower, upper)``) in `dtype`; a ValueError naming the initializer
    `name` and its hyperparameters `received` when no value of `dtype` lies in the interval."""
    result = inward_bounds(lower, upper, upper_open, dtype)
    if result is None:
        interval = f"[{float(lower)!r}, {float(upper)!r}{')' if upper_open else ']'}"
        shown = ", ".join(f"{k}={v!r}" for k, v in received.items())
        raise ValueError(
            f"`{name}`'s samples lie in {interval}, which holds no {dtype.name} value: widen the interval or use a "
            f"wider dtype. Received: {shown}, dtype={dtype.name}"
        )
    return result


def computable(name: str, dtype: np.dtype, **values: float) -> None:
    """A ValueError when a hyperparameter overflows the dtype a sample is computed in (`compute_dtype`): JAX's
    arithmetic would then give infinities and NaNs."""
    largest = float(jnp.finfo(compute_dtype(dtype)).max) if jnp.issubdtype(dtype, jnp.inexact) else np.inf
    for key, value in values.items():
        if abs(value) > largest:
            raise ValueError(
                f"`{name}`'s {key} overflows {compute_dtype(dtype).name}, the dtype a {dtype.name} sample is computed "
                f"in. Received: {key}={value!r}, dtype={dtype.name}"
            )


Moments = tuple[float, float, float, float]
"""A real distribution's mean and its central moments of orders 2, 4 and 6, as Python floats."""

Support = tuple[Fraction | None, Fraction | None, bool]
"""A real distribution's exact bounds ``(lower, upper, upper_open)``; None where it has none."""


def _ncdf(z: float) -> float:
    """The standard normal CDF, accurate in both tails (``erfc`` of the side the tail lies on)."""
    return math.erfc(-z / math.sqrt(2)) / 2


def _nsf(z: float) -> float:
    """The standard normal survival function ``1 - Phi(z)``, accurate in the upper tail."""
    return math.erfc(z / math.sqrt(2)) / 2


def _truncated_cdf(z: float, lower: float, upper: float) -> float:
    """The CDF at `z` of ``N(0, 1)`` truncated to ``[lower, upper]``, from the tail the interval lies in."""
    z = min(max(z, lower), upper)
    if lower > 0:  # the upper tail: differences of survival functions keep their digits
        return (_nsf(lower) - _nsf(z)) / (_nsf(lower) - _nsf(upper))
    return (_ncdf(z) - _ncdf(lower)) / (_ncdf(upper) - _ncdf(lower))


def _density(x: float) -> float:
    """The standard normal density."""
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _mills(x: float) -> float:
    """Mills's ratio ``(1 - Phi(x)) / phi(x)`` for ``x >= 0``; from 25 on, where ``erfc`` nears underflow,
    Laplace's continued fraction ``1 / (x + 1 / (x + 2 / (x + 3 / ...)))``, exact to double precision there."""
    if x < 25:
        return math.erfc(x / math.sqrt(2)) / 2 / _density(x)
    t = x
    for k in range(60, 0, -1):
        t = x + k / t
    return 1 / t


def truncated_moments(lower: float, upper: float) -> Moments:
    """The moments of ``N(0, 1)`` truncated to ``[lower, upper]``, in closed form.

    With ``r_a = phi(a) / Z``, ``r_b = phi(b) / Z`` (``Z = Phi(b) - Phi(a)``) and the mean ``c = r_a - r_b``,
    the central moments follow from integrating by parts, ``M_k = (k - 1) M_{k-2} - c M_{k-1} + (a - c)^{k-1}
    r_a - (b - c)^{k-1} r_b`` with ``M_0 = 1, M_1 = 0``: moments about the mean, with no cancellation of raw
    moments. ``Z`` is computed from the tail it lies in (Mills's ratio), so that bounds far in a tail work too.
    The recursion subtracts terms of size ``r * (b - a)^(k-1)``, which loses every digit over a narrow interval
    (``[0.1, 0.100001]`` gave a negative variance): intervals at most `_NARROW` wide are integrated instead
    (`_quadrature_moments`), which is exact to about 1e-12 relative however narrow they are.
    """
    a, b = float(lower), float(upper)
    if b <= 0:  # the mirror image of a distribution on [-b, -a]
        mean, mu2, mu4, mu6 = truncated_moments(-b, -a)
        return -mean, mu2, mu4, mu6
    if b - a <= _NARROW:
        return _quadrature_moments(a, b)
    if a >= 0:  # Z / phi(a) = R(a) - R(b) phi(b) / phi(a)
        ratio = math.exp(-(b - a) * (b + a) / 2)  # phi(b) / phi(a)
        r_a = 1 / (_mills(a) - _mills(b) * ratio)
        r_b = r_a * ratio
    else:
        z = 1 - (math.erfc(-a / math.sqrt(2)) + math.erfc(b / math.sqrt(2))) / 2
        r_a, r_b = _density(a) / z, _density(b) / z
    c = r_a - r_b

    def edge(bound: float, r: float, power: int) -> float:
        return 0.0 if r == 0 else (bound - c) ** power * r  # a bound so far out that phi is 0 adds nothing

    m = [1.0, 0.0]
    for k in range(2, 7):
        m.append((k - 1) * m[k - 2] - c * m[k - 1] + edge(a, r_a, k - 1) - edge(b, r_b, k - 1))
    return c, m[2], m[4], m[6]


_NARROW = 4.0
"""Truncations at most this wide (in standard deviations) get their moments by quadrature."""

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)


def _quadrature_moments(a: float, b: float) -> Moments:
    """`truncated_moments` over ``[a, b]``, ``b - a <= _NARROW``, by 64-point Gauss-Legendre quadrature of the
    density relative to its largest value on the interval (so that no tail underflows), and of the powers of the
    distance to the mean (so that nothing cancels). The integrands are entire and vary by at most ``exp(8)`` over
    the interval: the rule is exact to double precision."""
    half = (b - a) / 2
    if half == 0:
        return a, 0.0, 0.0, 0.0
    x = (a + b) / 2 + half * _NODES
    peak = min(max(0.0, a), b)  # where the density is largest
    w = _WEIGHTS * np.exp(-(x - peak) * (x + peak) / 2)
    w = w / w.sum()
    offsets = half * _NODES  # x - midpoint, exact to the rounding of the nodes
    shift = float(np.dot(w, offsets))
    d = offsets - shift
    mean = (a + b) / 2 + shift
    return mean, float(np.dot(w, d**2)), float(np.dot(w, d**4)), float(np.dot(w, d**6))


def _uniform_moments(low: float, high: float) -> Moments:
    """``U[low, high)``: central moments ``w**2 / 12``, ``w**4 / 80`` and ``w**6 / 448`` of the width ``w``."""
    w = float(high) - float(low)
    return (float(low) + float(high)) / 2, w**2 / 12, w**4 / 80, w**6 / 448


def _uniform_cdf(x: float, low: float, high: float) -> float:
    """The CDF of ``U[low, high)`` (a point mass at `low` when the interval is empty)."""
    if high <= low:
        return float(x >= low)
    return min(max((x - low) / (high - low), 0.0), 1.0)


def _normal_moments(stddev: float, mean: float = 0.0) -> Moments:
    v = float(stddev) ** 2
    return float(mean), v, 3 * v**2, 15 * v**3


class Distribution:
    """A distribution of independent, identically distributed elements.

    Subclasses are frozen dataclasses registered as pytrees whose data fields are traced hyperparameters.
    `sample` is traceable: the engine runs it in its kernels, on a key that may carry a stream position.
    `central_moments` gives the exact moments of a real sample (before rounding to a narrower dtype), from
    concrete hyperparameters.
    """

    complex_op_by_op: ClassVar[bool] = False
    """Whether `sample` must run operation by operation, outside `jax.jit`, to give JAX's bits in complex dtypes."""

    per_row: ClassVar[bool] = False
    """Whether `sample` gives the same values with its hyperparameters batched by `vmap` as with each law's own:
    then the rows (`jinit._src.rows`) draw the laws of this class in one loop, each row with its law's
    hyperparameters. A division by a constant breaks it unless written with `_divide`: XLA multiplies by the
    reciprocal instead where the dividend is batched. tests/test_rows.py checks each class that says so."""

    def sample(self, key: jax.Array, shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
        raise NotImplementedError

    def central_moments(self) -> Moments:
        """The mean and the central moments of orders 2, 4 and 6 of an element, exact, as Python floats."""
        raise NotImplementedError

    def moments(self) -> tuple[float, float, float]:
        """The mean, the variance and the fourth central moment of an element, exact, as Python floats."""
        mean, variance, mu4, _ = self.central_moments()
        return mean, variance, mu4

    def support(self, dtype: np.dtype) -> Support:
        """Exact bounds of a real sample computed in `dtype` (a compute dtype, `compute_dtype`): ``(lower, upper,
        upper_open)``, a bound None where there is none (the normal)."""
        return None, None, False

    def magnitude(self) -> float:
        """How large the hyperparameters make an element: the largest magnitude of a bounded law, ``|mean| +
        stddev`` of a normal. What a factor multiplying the sample (`jinit.scaled`) must not overflow."""
        raise NotImplementedError

    def cdf(self, x: float) -> float:
        """``P(element <= x)`` of a real sample before rounding to the output dtype, exact to double precision."""
        raise NotImplementedError

    def resolution(self, dtype: np.dtype) -> float:
        """How far the sampler's own discreteness in the compute dtype of `dtype` can move an element from the
        distribution's (before rounding to `dtype`): 0 but for the truncated normal's inverse-CDF sampler."""
        return 0.0


def _distribution(cls: type) -> type:
    """Declares a distribution: a frozen dataclass, and a pytree whose fields are all traced leaves.

    The pytree's auxiliary data is the class itself, so two distributions with the same fields never share a
    compiled kernel. (`jax.tree_util.register_dataclass` would not do: in jax 0.10.2 the structures of two such
    classes with the same fields compare equal while hashing differently, so a jit cache can hand one class the
    program traced for the other, depending on where the classes landed in memory.)
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    get = operator.attrgetter(*names)
    one = len(names) == 1

    def flatten(law: Any) -> tuple[Any, type]:
        return ((get(law),) if one else get(law)), type(law)

    def unflatten(kind: type, leaves: Any) -> Any:
        return kind(*leaves)

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    return cls


@_distribution
class Normal(Distribution):
    """``N(mean, stddev**2)``; ``mean=None`` adds nothing (as JAX's `normal`, which has no mean). Complex too."""

    stddev: Any
    mean: Any = None
    per_row: ClassVar[bool] = True

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        x = _materialized(jax.random.normal(key, shape, ct)) * jnp.asarray(self.stddev, ct)
        return cast(x if self.mean is None else x + jnp.asarray(self.mean, ct), dtype)

    def central_moments(self):
        return _normal_moments(self.stddev, 0.0 if self.mean is None else self.mean)

    def magnitude(self):
        return abs(float(self.mean or 0.0)) + float(self.stddev)

    def cdf(self, x):
        mean, stddev = float(self.mean or 0.0), float(self.stddev)
        return float(x >= mean) if stddev == 0 else _ncdf((x - mean) / stddev)


@_distribution
class Uniform(Distribution):
    """``U[0, scale)``, as JAX's `uniform`, clamped into ``[low, high]`` (`inward_bounds` of the interval)."""

    scale: Any
    low: Any
    high: Any
    per_row: ClassVar[bool] = True

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        x = _materialized(jax.random.uniform(key, shape, ct)) * jnp.asarray(self.scale, ct)
        return clamp(saturate(x, dtype), self.low, self.high)

    def central_moments(self):
        return _uniform_moments(0.0, self.scale)

    def support(self, dtype):
        scale = Fraction(float(self.scale))
        return Fraction(0), scale, scale > 0

    def magnitude(self):
        return float(self.scale)

    def cdf(self, x):
        return _uniform_cdf(x, 0.0, float(self.scale))


def erf_bounds(lower: float, upper: float, dtype: np.dtype) -> tuple[float, float]:
    """``erf(lower / sqrt(2))`` and ``erf(upper / sqrt(2))`` in `dtype`, computed at run time by XLA on the default
    backend, as `jax.random.truncated_normal` computes them (bounded cache: once per bounds and dtype)."""
    dtype = jax.dtypes.canonicalize_dtype(dtype)  # (what XLA computes in: float32 for float64 without x64)
    return _erf_bounds(lower, upper, math.copysign(1.0, lower), math.copysign(1.0, upper), dtype)


@functools.lru_cache(maxsize=1024)
def _erf_bounds(lower: float, upper: float, lower_sign: float, upper_sign: float, dtype: np.dtype) -> tuple:
    """`erf_bounds`, cached by the bounds with their signs (``-0.0 == 0.0`` as a key, but not as an erf)."""
    known = KNOWN_ERFS.get((lower, upper, np.dtype(dtype)))
    if known is not None and host_keys.checked():  # (a release listed there, on CPU)
        return known
    with jax.ensure_compile_time_eval():  # concrete, also when first needed under a trace
        a, b = _erf_kernel(lower, upper, dtype=dtype)
    return float(a), float(b)


KNOWN_ERFS = {
    (-2.0, 2.0, np.dtype(np.float32)): (float.fromhex("-0x1.e8b43p-1"), float.fromhex("0x1.e8b43p-1")),
    (-2.0, 2.0, np.dtype(np.float64)): (float.fromhex("-0x1.e8b4307d3627ap-1"), float.fromhex("0x1.e8b4307d3627ap-1")),
}
"""`erf_bounds` of the usual bounds (a variance-scaling truncated normal's, Keras's, Haiku's: ±2 standard
deviations), as XLA:CPU computes them under the releases of `jinit._src.host_keys.CHECKED`: there, on CPU, they are
not compiled again (0.025 s of the first call of every model with a truncated normal). tests/test_host_keys.py
derives them from `_erf_kernel` under those releases; elsewhere they are computed, as all others are."""


@functools.partial(jax.jit, static_argnames=("dtype",))
def _erf_kernel(lower, upper, *, dtype):
    # (compiled as JAX compiles its sampler, without `kernel.OPTIONS`: under them XLA:CPU's scalar erf rounds
    # differently within ulps of ±1, the erf of a bound near ±5.3 in float32)
    sqrt2 = np.array(np.sqrt(2), dtype)
    lower, upper = jax.lax.convert_element_type(lower, dtype), jax.lax.convert_element_type(upper, dtype)
    return jax.lax.erf(lower / sqrt2), jax.lax.erf(upper / sqrt2)


def standard_truncated(key: jax.Array, lower: Any, upper: Any, shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype)``, bitwise, in every mode.

    JAX computes ``erf(lower / sqrt(2))`` (and the same of `upper`) in its sampler, at run time when called
    eagerly; under a user's `jax.jit` the bounds are constants there, XLA evaluates the erf while compiling with
    its own function, which rounds differently, and the sample changes (jax 0.10.2: 60% of the elements of
    ``truncated_normal(lower=-4.0)``). Here `lower` and `upper` are concrete numbers, their erf is computed at run
    time once (`erf_bounds`), and the rest is JAX's sampler as written in `jax.random`, which constant bounds no
    longer change. `_truncated_verified` checks once per process that this transcription is JAX's sampler; where
    it is not (a JAX that changed its sampler), JAX's own sampler is used, with its own modes.
    """
    if not _truncated_verified():
        return jax.random.truncated_normal(key, lower, upper, shape, dtype)
    a, b = erf_bounds(float(lower), float(upper), np.dtype(dtype))
    return _transcribed_truncated(key, lower, upper, a, b, shape, dtype)


def _transcribed_truncated(key, lower, upper, a, b, shape, dtype):
    """`jax.random.truncated_normal`'s sampler (jax/_src/random), given its erf of the bounds `a` and `b`."""
    return _sampler(key, lower, upper, lambda lo, hi, sqrt2: (a, b), shape, dtype)


def _sampler(key, lower, upper, erf_of, shape, dtype):
    """JAX's truncated normal sampler, transcribed, with ``erf_of(lower, upper, sqrt2)`` for its bounds' erf."""
    sqrt2 = np.array(np.sqrt(2), dtype)
    lower, upper = jax.lax.convert_element_type(lower, dtype), jax.lax.convert_element_type(upper, dtype)
    a, b = erf_of(lower, upper, sqrt2)
    u = jax.random.uniform(key, shape, dtype, minval=a, maxval=b)
    out = sqrt2 * jax.lax.erf_inv(u)
    return jnp.clip(
        out,
        jax.lax.nextafter(jax.lax.stop_gradient(lower), np.array(np.inf, dtype=dtype)),
        jax.lax.nextafter(jax.lax.stop_gradient(upper), np.array(-np.inf, dtype=dtype)),
    )


@functools.cache
def _truncated_verified() -> bool:
    """Whether `_sampler` is `jax.random.truncated_normal`'s sampler, operation for operation: the jaxpr of JAX's
    sampler and that of the transcription computing the erf as `_erf_kernel` does print the same, in float32 and
    bfloat16 (checked once per process, by tracing only)."""

    def erf_of(lo: Any, hi: Any, sqrt2: Any) -> tuple:
        return jax.lax.erf(lo / sqrt2), jax.lax.erf(hi / sqrt2)

    try:
        for dtype in (np.dtype(np.float32), jnp.dtype(jnp.bfloat16)):
            key = jax.random.key(0)
            theirs = jax.make_jaxpr(lambda k, lo, hi, d=dtype: jax.random.truncated_normal(k, lo, hi, (8,), d))
            outer = theirs(key, -4.0, 1.5).jaxpr
            if len(outer.eqns) != 1 or not isinstance(outer.eqns[0].params.get("jaxpr"), jex_core.ClosedJaxpr):
                return False
            ours = jax.make_jaxpr(lambda k, lo, hi, d=dtype: _sampler(k, lo, hi, erf_of, (8,), d))(key, -4.0, 1.5)
            if str(outer.eqns[0].params["jaxpr"].jaxpr) != str(ours.jaxpr):
                return False
        return True
    except Exception:  # any change in JAX's sampler: its own code
        return False


def truncated_normal(
    stddev: float, mean: float | None, lower: float, upper: float, low: float, high: float, dtype: np.dtype
) -> "TruncatedNormal":
    """`TruncatedNormal` of these hyperparameters for a sample of `dtype`, with the erf of its bounds (`erf_bounds`)."""
    a, b = erf_bounds(lower, upper, compute_dtype(dtype))
    return TruncatedNormal(stddev, mean, lower, upper, low, high, a, b)


def inverse_cdf_step(lower: float, upper: float, erf_lower: float, erf_upper: float, dtype: np.dtype) -> float:
    """How far JAX's truncated normal sampler, ``sqrt(2) erfinv(u)`` with ``u`` uniform between the erf of the
    bounds, can put a standard element from where exact arithmetic would: ``u`` moves by up to an ulp of the
    compute dtype at the larger erf, which ``erfinv`` stretches by at most ``1 / erf'`` at the bound farthest
    from 0, plus a few ulps of the result. Negligible for the usual bounds (1.5e-6 for ±2 in float32); large
    where both bounds lie far in one tail, where the erf of the bounds is 1 to a few ulps (see the README's
    differences)."""
    ct = compute_dtype(dtype)
    spacing = float(np.spacing(np.asarray(max(abs(erf_lower), abs(erf_upper)), ct)))
    edge = max(abs(lower), abs(upper))
    slope = 2 / math.sqrt(math.pi) * math.exp(-min(edge * edge / 2, 700.0))
    return math.sqrt(2) * spacing / slope + 4 * float(np.spacing(np.asarray(edge, ct)))


@_distribution
class TruncatedNormal(Distribution):
    """``mean + stddev * z`` with ``z ~ N(0, 1)`` truncated to ``[lower, upper]``, as JAX's `truncated_normal`,
    clamped into ``[low, high]`` (`inward_bounds` of ``mean + [lower, upper] * stddev``). `erf_lower` and
    `erf_upper` are the erf of the bounds that JAX's sampler computes (built by `truncated_normal`)."""

    stddev: Any
    mean: Any
    lower: Any
    upper: Any
    low: Any
    high: Any
    erf_lower: Any
    erf_upper: Any
    per_row: ClassVar[bool] = True  # (the erf of the bounds is given: the rest is IEEE arithmetic, no division)

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        if _truncated_verified():
            z = _transcribed_truncated(key, self.lower, self.upper, self.erf_lower, self.erf_upper, shape, ct)
        else:
            z = jax.random.truncated_normal(key, self.lower, self.upper, shape, ct)
        x = _materialized(z) * jnp.asarray(self.stddev, ct)
        x = x if self.mean is None else x + jnp.asarray(self.mean, ct)
        return clamp(saturate(x, dtype), self.low, self.high)

    def central_moments(self):
        mean, mu2, mu4, mu6 = truncated_moments(self.lower, self.upper)
        s = float(self.stddev)
        return (0.0 if self.mean is None else float(self.mean)) + s * mean, s**2 * mu2, s**4 * mu4, s**6 * mu6

    def resolution(self, dtype):
        return float(self.stddev) * inverse_cdf_step(
            float(self.lower), float(self.upper), float(self.erf_lower), float(self.erf_upper), dtype
        )

    def support(self, dtype):
        mean, stddev = Fraction(float(self.mean or 0.0)), Fraction(float(self.stddev))
        return mean + stddev * Fraction(float(self.lower)), mean + stddev * Fraction(float(self.upper)), False

    def magnitude(self):
        mean, stddev = abs(float(self.mean or 0.0)), float(self.stddev)
        return mean + stddev * max(abs(float(self.lower)), abs(float(self.upper)))

    def cdf(self, x):
        mean, stddev = float(self.mean or 0.0), float(self.stddev)
        if stddev == 0:
            return float(x >= mean)
        return _truncated_cdf((x - mean) / stddev, float(self.lower), float(self.upper))


@_distribution
class RandomUniform(Distribution):
    """``U[minval, maxval)``, as ``jax.random.uniform(key, shape, dtype, minval, maxval)`` (Keras's), clamped into
    ``[low, high]`` (`inward_bounds` of the interval: ``minval + u * (maxval - minval)`` can round up to maxval)."""

    minval: Any
    maxval: Any
    low: Any
    high: Any
    per_row: ClassVar[bool] = True

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        # Materialized bounds: folded as constants (under a user's `jit`), XLA would round differently.
        minval, maxval = _materialized(jnp.asarray(self.minval, ct)), _materialized(jnp.asarray(self.maxval, ct))
        x = jax.random.uniform(key, shape, ct, minval, maxval)
        return clamp(saturate(x, dtype), self.low, self.high)

    def central_moments(self):
        return _uniform_moments(self.minval, self.maxval)

    def support(self, dtype):
        low, high = Fraction(float(self.minval)), Fraction(float(self.maxval))
        return low, high, high > low

    def magnitude(self):
        return max(abs(float(self.minval)), abs(float(self.maxval)))

    def cdf(self, x):
        return _uniform_cdf(x, float(self.minval), float(self.maxval))


@_distribution
class ScaledTruncatedNormal(Distribution):
    """Variance scaling's truncated normal: ``N(0, 1)`` truncated to ±2, rescaled to variance `variance`.

    Complex: the modulus of a complex normal truncated to 2, and a uniform angle, as JAX computes them,
    operation by operation: XLA's complex log rounds differently once fused with the operations around it,
    even across optimization barriers, so only JAX's operations run one by one give JAX's bits.
    """

    variance: Any
    complex_op_by_op: ClassVar[bool] = True
    per_row: ClassVar[bool] = True

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        variance = jnp.asarray(self.variance, ct)
        if not jnp.issubdtype(ct, jnp.complexfloating):
            stddev = _divide(jnp.sqrt(variance), TRUNCATED_STDDEV)
            x = _materialized(standard_truncated(key, -2.0, 2.0, shape, ct)) * stddev
            return cast(x, dtype, -2 * stddev, 2 * stddev)
        stddev = _divide(jnp.sqrt(variance), COMPLEX_TRUNCATED_STDDEV)
        return _materialized(_complex_truncated_normal(key, 2, shape, ct)) * stddev

    def central_moments(self):
        _, mu2, mu4, mu6 = truncated_moments(-2.0, 2.0)
        s2 = float(self.variance) / TRUNCATED_STDDEV**2
        return 0.0, s2 * mu2, s2**2 * mu4, s2**3 * mu6

    def support(self, dtype):  # |z| <= 2 times the scale as `sample` computes it: within 2 s (rounding is monotone)
        scale = np.sqrt(np.asarray(self.variance, dtype)) / np.asarray(TRUNCATED_STDDEV, dtype)
        bound = 2 * Fraction(float(scale))
        return -bound, bound, False

    def magnitude(self):
        return 2 * math.sqrt(float(self.variance)) / TRUNCATED_STDDEV

    def cdf(self, x):
        stddev = math.sqrt(float(self.variance)) / TRUNCATED_STDDEV
        return float(x >= 0) if stddev == 0 else _truncated_cdf(x / stddev, -2.0, 2.0)


@_distribution
class ScaledNormal(Distribution):
    """Variance scaling's normal: ``N(0, variance)``. Complex too."""

    variance: Any
    per_row: ClassVar[bool] = True

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        return cast(_materialized(jax.random.normal(key, shape, ct)) * jnp.sqrt(jnp.asarray(self.variance, ct)), dtype)

    def central_moments(self):
        return _normal_moments(math.sqrt(float(self.variance)))

    def magnitude(self):
        return math.sqrt(float(self.variance))

    def cdf(self, x):
        stddev = math.sqrt(float(self.variance))
        return float(x >= 0) if stddev == 0 else _ncdf(x / stddev)


@_distribution
class ScaledUniform(Distribution):
    """Variance scaling's uniform: ``U[-limit, limit)``, ``limit = sqrt(3 * variance)``; complex: a uniform disk."""

    variance: Any
    per_row: ClassVar[bool] = True

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        variance = jnp.asarray(self.variance, ct)
        if not jnp.issubdtype(ct, jnp.complexfloating):
            limit = jnp.sqrt(3 * variance)
            x = _materialized(jax.random.uniform(key, shape, ct, -1)) * limit
            return cast(x, dtype, -limit, limit, upper_open=True)
        return _materialized(_complex_uniform(key, shape, ct)) * jnp.sqrt(variance)

    def central_moments(self):
        limit = math.sqrt(3 * float(self.variance))
        return _uniform_moments(-limit, limit)

    def support(self, dtype):  # [-1, 1) times the limit as `sample` computes it, rounded: within it
        limit = Fraction(float(np.sqrt(np.asarray(3, dtype) * np.asarray(self.variance, dtype))))
        return -limit, limit, limit > 0

    def magnitude(self):
        return math.sqrt(3 * float(self.variance))

    def cdf(self, x):
        limit = math.sqrt(3 * float(self.variance))
        return _uniform_cdf(x, -limit, limit)


@_distribution
class Multiplied(Distribution):
    """`inner`'s elements times `factor` (`jinit.scaled`): `inner` sampled in the compute dtype, multiplied there,
    rounded once (`times`), clamped into ``[low, high]`` (`inward_bounds` of `factor` times `inner`'s exact
    support; None for an unbounded `inner` or a complex sample)."""

    inner: Distribution
    factor: Any
    low: Any = None
    high: Any = None

    @property
    def complex_op_by_op(self) -> bool:  # type: ignore[override]
        return self.inner.complex_op_by_op

    def sample(self, key, shape, dtype):
        ct = compute_dtype(dtype)
        y = times(_materialized(self.inner.sample(key, shape, ct)), self.factor, dtype)
        return y if self.low is None else clamp(y, self.low, self.high)

    def central_moments(self):
        mean, mu2, mu4, mu6 = self.inner.central_moments()
        f = float(self.factor)
        return f * mean, f**2 * mu2, f**4 * mu4, f**6 * mu6

    def support(self, dtype):
        lower, upper, upper_open = self.inner.support(dtype)
        if lower is None or upper is None:
            return None, None, False
        f = Fraction(float(self.factor))
        if f < 0:  # [a, b) times f < 0 is (f b, f a]: the open end is the lower one, clamped as closed
            return f * upper, f * lower, False
        return f * lower, f * upper, upper_open and f > 0

    def magnitude(self):
        return abs(float(self.factor)) * self.inner.magnitude()

    def resolution(self, dtype):
        return abs(float(self.factor)) * self.inner.resolution(dtype)

    def cdf(self, x):
        f = float(self.factor)
        if f == 0:
            return float(x >= 0)
        return self.inner.cdf(x / f) if f > 0 else 1.0 - self.inner.cdf(x / f)


_MASK = {np.dtype(np.float32): (np.uint32, 0xFFFFF000), np.dtype(np.float64): (np.uint64, 0xFFFFFFFFF8000000)}
"""Per compute dtype, the bits that keep the upper half of a significand (12 of 24 bits, 27 of 53)."""


def _halves(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`x` split exactly into ``hi + lo``, each with at most half the significand's bits (so that the product of
    two halves is exact): the low bits masked off, no arithmetic that a compiler could contract."""
    unsigned, mask = _MASK[np.dtype(x.dtype)]
    bits = jax.lax.bitcast_convert_type(x, unsigned) & np.asarray(mask, unsigned)
    hi = jax.lax.bitcast_convert_type(bits, x.dtype)
    return hi, x - hi


def times(x: jax.Array, factor: Any, dtype: np.dtype) -> jax.Array:
    """`x`, computed in its compute dtype, times `factor` (in that dtype too), rounded once to `dtype`.

    In the compute dtype itself this is the product JAX computes (``factor * x``). For a narrower float, rounding
    the float32 product to `dtype` would round twice (805 of 3,072 bfloat16 elements of ``0.3 * q`` differ from
    the exact product rounded once); so the product is rounded to odd instead, with its exact error from Dekker's
    product of halves, and rounding a float32 rounded to odd to a dtype of at most 22 significant bits is
    rounding the exact product once (Boldo and Melquiond, 2008). Values beyond `dtype`'s range saturate.
    """
    ct = x.dtype
    f = _materialized(jnp.asarray(factor, ct))
    p = x * f
    narrow = jnp.issubdtype(dtype, jnp.floating) and np.dtype(dtype) != np.dtype(ct) and np.dtype(ct) in _MASK
    if not narrow:
        return saturate(p, dtype)
    (xh, xl), (fh, fl) = _halves(x), _halves(f)
    error = ((xh * fh - p) + xh * fl + xl * fh) + xl * fl  # x * f - p, exactly (Dekker)
    unsigned, _ = _MASK[np.dtype(ct)]
    even = (jax.lax.bitcast_convert_type(p, unsigned) & np.asarray(1, unsigned)) == 0
    toward = jnp.where(error > 0, jnp.asarray(np.inf, ct), jnp.asarray(-np.inf, ct))
    odd = jnp.where((error != 0) & even & jnp.isfinite(p), jax.lax.nextafter(p, toward), p)
    return saturate(odd, dtype)


def _complex_uniform(key: jax.Array, shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
    """Uniform on the unit-variance disk, as `jax.nn.initializers` computes it."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = jnp.finfo(dtype).dtype
    r = jnp.sqrt(_constant(2, real_dtype) * jax.random.uniform(key_r, shape, real_dtype)).astype(dtype)
    theta = _constant(2 * np.pi, dtype) * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(_constant(1j, dtype) * theta)


def _complex_truncated_normal(key: jax.Array, upper: float, shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
    """Complex standard normal with modulus truncated to `upper`, as `jax.nn.initializers` computes it."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = jnp.finfo(dtype).dtype
    one = _constant(1, dtype)
    t = (one - jnp.exp(_constant(-(upper**2), dtype))) * jax.random.uniform(key_r, shape, real_dtype).astype(dtype)
    r = jnp.sqrt(-_materialized(jnp.log(one - t)))
    theta = _constant(2 * np.pi, dtype) * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(_constant(1j, dtype) * theta)


SCALED: dict[str, Callable[[Any], Distribution]] = {
    "truncated_normal": ScaledTruncatedNormal,
    "normal": ScaledNormal,
    "uniform": ScaledUniform,
}
"""Variance scaling's distributions by name, each made of its variance."""
