"""Initializers that sample elementwise distributions: normal, uniform and truncated normal.

`normal`, `uniform` and `truncated_normal` have the names, arguments and defaults of `jax.nn.initializers`
(plus a keyword-only `mean`); `random_normal` and `random_uniform` have those of Keras.
"""

import dataclasses
from fractions import Fraction

from jinit._src import checks, distributions
from jinit._src.base import Initializer
from jinit._src.typing import DTypeLike


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Normal(Initializer, name="normal"):
    """`normal`'s value: ``N(mean, stddev**2)``."""

    stddev: float = 1e-2
    dtype: str | None = None
    mean: float = 0.0
    dtypes = "inexact"

    def __post_init__(self) -> None:
        self._set(
            stddev=checks.number("stddev", self.stddev, minimum="nonnegative"),
            dtype=checks.dtype("dtype", self.dtype),
            mean=checks.number("mean", self.mean),
        )

    def law(self, shape, dtype):
        distributions.computable(self.name, dtype, stddev=self.stddev, mean=self.mean)
        return distributions.Normal(self.stddev, self.mean or None)


def normal(stddev: float = 1e-2, dtype: DTypeLike | None = None, *, mean: float = 0.0) -> Initializer:
    """Builds an initializer of samples from a normal distribution ``N(mean, stddev**2)``.

    Same as `jax.nn.initializers.normal` (bitwise, for float32, float64 and complex dtypes), with a `mean`.
    A complex sample has independent real and imaginary parts, each of variance ``stddev**2 / 2``.

    Args:
      stddev: the standard deviation, a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.
      mean: the mean, a finite number.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `stddev` is negative or not finite, or `mean` is not finite.

    Examples:
      >>> import jax, jinit
      >>> init = jinit.normal(stddev=0.02)
      >>> init
      normal(stddev=0.02, dtype=None, mean=0.0)
      >>> init(jax.random.key(0), (2, 3)).shape
      (2, 3)
    """
    return Normal(stddev, dtype, mean)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class RandomNormal(Initializer, name="random_normal"):
    """`random_normal`'s value: `Normal` with Keras's arguments."""

    mean: float = 0.0
    stddev: float = 0.05
    dtype: str | None = None
    dtypes = "inexact"

    def __post_init__(self) -> None:
        self._set(
            mean=checks.number("mean", self.mean),
            stddev=checks.number("stddev", self.stddev, minimum="nonnegative"),
            dtype=checks.dtype("dtype", self.dtype),
        )

    def law(self, shape, dtype):
        distributions.computable(self.name, dtype, stddev=self.stddev, mean=self.mean)
        return distributions.Normal(self.stddev, self.mean or None)


def random_normal(mean: float = 0.0, stddev: float = 0.05, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer of samples from ``N(mean, stddev**2)``, with Keras's `RandomNormal` defaults.

    It samples exactly as ``normal(stddev, dtype, mean=mean)``.

    Args:
      mean: the mean, a finite number.
      stddev: the standard deviation, a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `stddev` is negative or not finite, or `mean` is not finite.

    Examples:
      >>> import jinit
      >>> jinit.random_normal()
      random_normal(mean=0.0, stddev=0.05, dtype=None)
    """
    return RandomNormal(mean, stddev, dtype)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Uniform(Initializer, name="uniform"):
    """`uniform`'s value: ``U[0, scale)``."""

    scale: float = 1e-2
    dtype: str | None = None
    dtypes = "real"

    def __post_init__(self) -> None:
        scale = checks.number("scale", self.scale, minimum="nonnegative")
        self._set(scale=scale, dtype=checks.dtype("dtype", self.dtype))

    def law(self, shape, dtype):
        distributions.computable(self.name, dtype, scale=self.scale)
        scale = Fraction(self.scale)  # [0, scale), or 0 itself for scale 0
        low, high = distributions.bounded(self.name, Fraction(0), scale, scale > 0, dtype, {"scale": self.scale})
        return distributions.Uniform(self.scale, low, high)


def uniform(scale: float = 1e-2, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer of samples uniform in ``[0, scale)``, as `jax.nn.initializers.uniform`.

    Args:
      scale: the upper bound (excluded), a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `scale` is negative or not finite.

    Examples:
      >>> import jax, jinit
      >>> x = jinit.uniform(1.0)(jax.random.key(0), (1000,))
      >>> bool((x >= 0).all() and (x < 1).all())
      True
    """
    return Uniform(scale, dtype)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class RandomUniform(Initializer, name="random_uniform"):
    """`random_uniform`'s value: ``U[minval, maxval)``."""

    minval: float = -0.05
    maxval: float = 0.05
    dtype: str | None = None
    dtypes = "real"

    def __post_init__(self) -> None:
        minval, maxval = checks.number("minval", self.minval), checks.number("maxval", self.maxval)
        checks.ordered("minval", minval, "maxval", maxval)
        self._set(minval=minval, maxval=maxval, dtype=checks.dtype("dtype", self.dtype))

    def law(self, shape, dtype):
        minval, maxval = self.minval, self.maxval
        distributions.computable(self.name, dtype, minval=minval, maxval=maxval, **{"maxval - minval": maxval - minval})
        received = {"minval": minval, "maxval": maxval}
        low, high = distributions.bounded(self.name, Fraction(minval), Fraction(maxval), True, dtype, received)
        return distributions.RandomUniform(minval, maxval, low, high)


def random_uniform(minval: float = -0.05, maxval: float = 0.05, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer of samples uniform in ``[minval, maxval)``, with Keras's `RandomUniform` defaults.

    Samples are ``jax.random.uniform(key, shape, dtype, minval, maxval)``.

    Args:
      minval: the lower bound (included), a finite number.
      maxval: the upper bound (excluded), a finite number greater than `minval`.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: a bound is not finite, or ``minval >= maxval``.

    Examples:
      >>> import jinit
      >>> jinit.random_uniform(-1, 1)
      random_uniform(minval=-1.0, maxval=1.0, dtype=None)
    """
    return RandomUniform(minval, maxval, dtype)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class TruncatedNormal(Initializer, name="truncated_normal"):
    """`truncated_normal`'s value: ``mean + stddev * z``, ``z`` standard normal truncated to ``[lower, upper]``."""

    stddev: float = 1e-2
    dtype: str | None = None
    lower: float = -2.0
    upper: float = 2.0
    mean: float = 0.0
    dtypes = "real"

    def __post_init__(self) -> None:
        stddev = checks.number("stddev", self.stddev, minimum="nonnegative")
        lower, upper = checks.number("lower", self.lower), checks.number("upper", self.upper)
        checks.ordered("lower", lower, "upper", upper)
        self._set(
            stddev=stddev,
            dtype=checks.dtype("dtype", self.dtype),
            lower=lower,
            upper=upper,
            mean=checks.number("mean", self.mean),
        )

    def law(self, shape, dtype):
        stddev, mean, lower, upper = self.stddev, self.mean, self.lower, self.upper
        distributions.computable(self.name, dtype, stddev=stddev, mean=mean)
        low, high = distributions.bounded(
            self.name,
            Fraction(mean) + Fraction(lower) * Fraction(stddev),
            Fraction(mean) + Fraction(upper) * Fraction(stddev),
            False,
            dtype,
            {"stddev": stddev, "lower": lower, "upper": upper, "mean": mean},
        )
        return distributions.truncated_normal(stddev, mean or None, lower, upper, low, high, dtype)


def truncated_normal(
    stddev: float = 1e-2,
    dtype: DTypeLike | None = None,
    lower: float = -2.0,
    upper: float = 2.0,
    *,
    mean: float = 0.0,
) -> Initializer:
    """Builds an initializer of ``mean + stddev * z``, with ``z`` standard normal truncated to ``[lower, upper]``.

    As `jax.nn.initializers.truncated_normal`, `lower` and `upper` are in units of `stddev` and `stddev` is
    that of the normal before truncation (the samples' standard deviation is smaller: about ``0.88 * stddev``
    for the default bounds). Samples never leave ``[mean + lower * stddev, mean + upper * stddev]``, in any
    dtype. The sampler is JAX's (bitwise), with its precision: bounds both far in one tail (``lower >= 4`` in
    float32) give samples visibly off the truncated distribution; see the differences in docs/naming.md.

    Args:
      stddev: the standard deviation of the untruncated normal, a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.
      lower: the lower bound, in standard deviations from the mean.
      upper: the upper bound, in standard deviations from the mean, greater than `lower`.
      mean: the mean of the untruncated normal.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: a number is not finite, `stddev` is negative or ``lower >= upper``.

    Examples:
      >>> import jax, jinit
      >>> x = jinit.truncated_normal(1.0)(jax.random.key(0), (10000,))
      >>> bool(abs(x).max() <= 2.0)
      True
    """
    return TruncatedNormal(stddev, dtype, lower, upper, mean)
