"""What PyTorch users expect: `torch.nn.init`'s gains, Kaiming/Xavier with torch's semantics, sparse, dirac and
a truncated normal with absolute bounds.

PyTorch lays weights out as ``(out, in, *kernel)``; the `torch_*` factories use that layout
(``in_axis=1, out_axis=0``), and return `variance_scaling` values, which serialize like any other.
"""

import dataclasses
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import checks, distributions, engine, kernel, variance_scaling
from jinit._src.base import Initializer
from jinit._src.typing import DTypeLike

LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
NONLINEARITIES = (*LINEAR, "sigmoid", "tanh", "relu", "leaky_relu", "selu")
TORCH_MODES = ("fan_in", "fan_out")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain PyTorch recommends for a nonlinearity (`torch.nn.init.calculate_gain`).

    linear, convolutions and sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: ``sqrt(2 / (1 + slope**2))``
    with ``slope = param`` (default 0.01); selu: 3/4.

    Args:
      nonlinearity: one of "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
        "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu".
      param: the negative slope of leaky_relu (ignored by the others).

    Returns:
      The gain, a float.

    Raises:
      ValueError: an unknown nonlinearity, or a slope that is not a finite number.

    Examples:
      >>> import jinit
      >>> jinit.calculate_gain("tanh")
      1.6666666666666667
      >>> jinit.calculate_gain("leaky_relu", 0.2) == (2 / (1 + 0.2**2)) ** 0.5
      True
    """
    checks.choice("nonlinearity", nonlinearity, NONLINEARITIES)
    if nonlinearity in (*LINEAR, "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    try:
        slope = 0.01 if param is None else checks.number("param", param)
    except TypeError as err:  # torch raises ValueError for a slope that is not a number
        raise ValueError(str(err)) from None
    if abs(slope) < 2**500:
        return math.sqrt(2.0 / (1 + slope**2))
    return math.sqrt(2.0) / math.hypot(1.0, slope)  # the same, where slope**2 would overflow


def _scale(name: str, value: float, gain: float) -> float:
    """``gain**2``, the variance-scaling scale of a PyTorch gain; a gain whose square is 0 or infinite is refused,
    naming the argument `name` it came from."""
    scale = gain * gain
    if not 0 < scale < math.inf:
        raise ValueError(
            f"Argument `{name}` gives a gain whose square is not a positive finite float ({scale!r}). "
            f"{checks.received(name, value)}"
        )
    return scale


def _torch_kaiming(distribution: str, a: float, mode: str, nonlinearity: str, dtype: DTypeLike | None):
    scale = _scale("a", a, calculate_gain(nonlinearity, a))
    mode = checks.choice("mode", mode, TORCH_MODES)
    return variance_scaling.variance_scaling(scale, mode, distribution, in_axis=1, out_axis=0, dtype=dtype)


def torch_kaiming_normal(
    a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", dtype: DTypeLike | None = None
) -> Initializer:
    """Builds `torch.nn.init.kaiming_normal_`: ``N(0, std**2)``, ``std = gain / sqrt(fan)``, layout ``(out, in, *k)``.

    ``gain = calculate_gain(nonlinearity, a)``; `fan` is fan_in or fan_out of PyTorch's layout. The result is
    ``variance_scaling(gain**2, mode, "normal", in_axis=1, out_axis=0, dtype=dtype)``.

    Args:
      a: the negative slope of the leaky ReLU after the layer (only for ``nonlinearity="leaky_relu"``).
      mode: "fan_in" (preserves the forward pass's variance) or "fan_out" (the backward pass's).
      nonlinearity: the activation after the layer, as `calculate_gain` takes it.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` (a `variance_scaling` value).

    Raises:
      ValueError: an unknown `mode` or `nonlinearity`, or a bad `a`.

    Examples:
      >>> import jinit
      >>> init = jinit.torch_kaiming_normal(nonlinearity="relu")
      >>> init.name, round(init.config["scale"], 12), init.config["in_axis"], init.config["out_axis"]
      ('variance_scaling', 2.0, 1, 0)
    """
    return _torch_kaiming("normal", a, mode, nonlinearity, dtype)


def torch_kaiming_uniform(
    a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", dtype: DTypeLike | None = None
) -> Initializer:
    """Builds `torch.nn.init.kaiming_uniform_`: ``U(-b, b)``, ``b = gain * sqrt(3 / fan)``, layout ``(out, in, *k)``.

    As `torch_kaiming_normal`, with ``distribution="uniform"``.

    Args:
      a: the negative slope of the leaky ReLU after the layer (only for ``nonlinearity="leaky_relu"``).
      mode: "fan_in" (preserves the forward pass's variance) or "fan_out" (the backward pass's).
      nonlinearity: the activation after the layer, as `calculate_gain` takes it.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` (a `variance_scaling` value).

    Raises:
      ValueError: an unknown `mode` or `nonlinearity`, or a bad `a`.

    Examples:
      >>> import jax, jinit
      >>> jinit.torch_kaiming_uniform(a=5 ** 0.5)(jax.random.key(0), (64, 32)).shape  # nn.Linear(32, 64)
      (64, 32)
    """
    return _torch_kaiming("uniform", a, mode, nonlinearity, dtype)


def torch_xavier_normal(gain: float = 1.0, dtype: DTypeLike | None = None) -> Initializer:
    """Builds `torch.nn.init.xavier_normal_`: ``std = gain * sqrt(2 / (fan_in + fan_out))``, layout ``(out, in, *k)``.

    Args:
      gain: the scaling factor, e.g. ``calculate_gain("tanh")``; positive.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` (a `variance_scaling` value with ``scale = gain**2``, ``in_axis=1, out_axis=0``).

    Raises:
      ValueError: `gain` is not a positive finite number.

    Examples:
      >>> import jinit
      >>> jinit.torch_xavier_normal().config["distribution"]
      'normal'
    """
    scale = _scale("gain", gain, checks.number("gain", gain, minimum="positive"))
    return variance_scaling.variance_scaling(scale, "fan_avg", "normal", in_axis=1, out_axis=0, dtype=dtype)


def torch_xavier_uniform(gain: float = 1.0, dtype: DTypeLike | None = None) -> Initializer:
    """Builds `torch.nn.init.xavier_uniform_`: ``U(-b, b)``, ``b = gain * sqrt(6 / (fan_in + fan_out))``.

    Args:
      gain: the scaling factor, e.g. ``calculate_gain("tanh")``; positive.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` (a `variance_scaling` value with ``scale = gain**2``, ``in_axis=1, out_axis=0``).

    Raises:
      ValueError: `gain` is not a positive finite number.

    Examples:
      >>> import jinit
      >>> jinit.torch_xavier_uniform(2.0).config["scale"]
      4.0
    """
    scale = _scale("gain", gain, checks.number("gain", gain, minimum="positive"))
    return variance_scaling.variance_scaling(scale, "fan_avg", "uniform", in_axis=1, out_axis=0, dtype=dtype)


# ----------------------------------------------------------------------------------------- trunc_normal


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class TruncNormal(Initializer, name="trunc_normal"):
    """`trunc_normal`'s value: ``N(mean, std**2)`` truncated to the absolute bounds ``[a, b]``."""

    mean: float = 0.0
    std: float = 1.0
    a: float = -2.0
    b: float = 2.0
    dtype: str | None = None
    dtypes = "real"

    def __post_init__(self) -> None:
        mean = checks.number("mean", self.mean)
        std = checks.number("std", self.std, minimum="positive")
        a, b = checks.number("a", self.a), checks.number("b", self.b)
        checks.ordered("a", a, "b", b)
        self._set(mean=mean, std=std, a=a, b=b, dtype=checks.dtype("dtype", self.dtype))

    def law(self, shape, dtype):
        mean, std, a, b = self.mean, self.std, self.a, self.b
        distributions.computable(self.name, dtype, mean=mean, std=std)
        low, high = distributions.bounded(self.name, Fraction(a), Fraction(b), False, dtype, {"a": a, "b": b})
        return distributions.truncated_normal(std, mean or None, (a - mean) / std, (b - mean) / std, low, high, dtype)


def trunc_normal(
    mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, dtype: DTypeLike | None = None
) -> Initializer:
    """Builds `torch.nn.init.trunc_normal_`: ``N(mean, std**2)`` truncated to the ABSOLUTE bounds ``[a, b]``.

    Unlike `truncated_normal` (JAX's, whose bounds are in standard deviations around the mean), `a` and `b`
    are values: ``trunc_normal(mean, std, a, b)`` samples as ``truncated_normal(std, lower=(a - mean) / std,
    upper=(b - mean) / std, mean=mean)``.

    Args:
      mean: the mean of the untruncated normal.
      std: its standard deviation, a positive finite number.
      a: the lower bound.
      b: the upper bound, greater than `a`.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: a number is not finite, `std` is not positive, or ``a >= b``.

    Examples:
      >>> import jax, jinit
      >>> x = jinit.trunc_normal(mean=1.0, std=2.0, a=0.0, b=1.5)(jax.random.key(0), (1000,))
      >>> bool((x >= 0.0).all() and (x <= 1.5).all())
      True
    """
    return TruncNormal(mean, std, a, b, dtype)


# ----------------------------------------------------------------------------------------------- sparse


@kernel.jit(static_argnames=("shape", "dtype", "zeros"), older=engine.bit_generated)
def _sparse_kernel(key, values, *, shape, dtype, zeros):
    """Zeros `zeros` entries of each column of `values`, at rows drawn uniformly without replacement."""
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(key, shape), axis=0), axis=0)
    return jnp.where(ranks < zeros, jnp.zeros((), dtype), values)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Sparse(Initializer, name="sparse"):
    """`sparse`'s value: ``N(0, stddev**2)`` with ``ceil(sparsity * rows)`` zeros in every column."""

    sparsity: float
    stddev: float = 0.01
    dtype: str | None = None
    dtypes = "real"

    def __post_init__(self) -> None:
        sparsity = checks.number("sparsity", self.sparsity, minimum="nonnegative")
        if sparsity > 1:
            raise ValueError(f"Argument `sparsity` must be in [0, 1]. Received: sparsity={checks.show(sparsity)}")
        stddev = checks.number("stddev", self.stddev, minimum="nonnegative")
        self._set(sparsity=sparsity, stddev=stddev, dtype=checks.dtype("dtype", self.dtype))

    def sample(self, key, shape, dtype, sharding):
        if len(shape) != 2:
            raise ValueError(f"`sparse` needs a 2-D shape. Received: shape={shape}")
        distributions.computable(self.name, dtype, stddev=self.stddev)
        key_values, key_zeros = jax.random.split(key)
        values = engine.draw(distributions.Normal(self.stddev), key_values, shape, dtype, sharding)
        if math.prod(shape) == 0:
            return values
        zeros = math.ceil(self.sparsity * shape[0])
        return _sparse_kernel(key_zeros, values, shape=shape, dtype=dtype, zeros=zeros)


def sparse(sparsity: float, stddev: float = 0.01, dtype: DTypeLike | None = None) -> Initializer:
    """Builds `torch.nn.init.sparse_`: ``N(0, stddev**2)`` with ``ceil(sparsity * rows)`` zeros in every column.

    The zeros of each column are at rows drawn uniformly without replacement, independently per column.

    Args:
      sparsity: the fraction of each column set to zero, in [0, 1].
      stddev: the standard deviation of the non-zero values (torch's `std`), a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` for 2-D shapes.

    Raises:
      ValueError: `sparsity` outside [0, 1], `stddev` negative or not finite; when called, a shape that is not 2-D.

    Examples:
      >>> import jax, jinit
      >>> w = jinit.sparse(0.5)(jax.random.key(0), (10, 3))
      >>> (w == 0).sum(axis=0).tolist()
      [5, 5, 5]
    """
    return Sparse(sparsity, stddev, dtype)


# ------------------------------------------------------------------------------------------------ dirac


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Dirac(Initializer, name="dirac"):
    """`dirac`'s value: identity-preserving convolution kernels in PyTorch's layout."""

    groups: int = 1
    dtype: str | None = None
    keyless = True

    def __post_init__(self) -> None:
        self._set(
            groups=checks.integer("groups", self.groups, minimum="positive"), dtype=checks.dtype("dtype", self.dtype)
        )

    def sample(self, key, shape, dtype, sharding):
        groups = self.groups
        if len(shape) not in (3, 4, 5):
            raise ValueError(f"`dirac` needs a shape (out, in, *kernel) of rank 3, 4 or 5. Received: shape={shape}")
        if shape[0] % groups:
            raise ValueError(
                f"`dirac` needs the output channels (axis 0) divisible by `groups`. "
                f"Received: shape={shape}, groups={groups}"
            )
        weight = np.zeros(shape)
        per_group = shape[0] // groups
        centre = tuple(k // 2 for k in shape[2:])
        for g in range(groups if weight.size else 0):
            for d in range(min(per_group, shape[1])):
                weight[(g * per_group + d, d, *centre)] = 1
        return jnp.asarray(weight, dtype, device=sharding)


def dirac(groups: int = 1, dtype: DTypeLike | None = None) -> Initializer:
    """Builds `torch.nn.init.dirac_`: convolution kernels ``(out, in, *kernel)`` that preserve their input.

    For each of the `groups` groups of output channels, ``w[g * n + d, d, centre] = 1`` for
    ``d < min(n, in)`` with ``n = out // groups``; zeros elsewhere. The layout is PyTorch's; for JAX's
    ``(*kernel, in, out)`` move the axes (``jnp.moveaxis(w, (0, 1), (-1, -2))``).

    Args:
      groups: the number of groups, an integer >= 1 that divides the output channels.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` for shapes of rank 3 to 5; the key may be None.

    Raises:
      ValueError: `groups` < 1; when called, another rank, or output channels not divisible by `groups`.
      TypeError: `groups` is not an integer.

    Examples:
      >>> import jinit
      >>> jinit.dirac()(None, (2, 2, 3))[:, :, 1]
      Array([[1., 0.],
             [0., 1.]], dtype=float32)
    """
    return Dirac(groups, dtype)
