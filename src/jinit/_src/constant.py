"""Initializers that use no randomness: zeros, ones, constant and identity."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from jinit._src import checks
from jinit._src.base import Initializer
from jinit._src.typing import DTypeLike


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Zeros(Initializer, name="zeros"):
    """`zeros`: an initializer of zeros, in any dtype."""

    keyless = True
    bare = True

    def magnitude(self):
        return 0.0

    def sample(self, key, shape, dtype, sharding):
        return jnp.zeros(shape, dtype, device=sharding)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Ones(Initializer, name="ones"):
    """`ones`: an initializer of ones, in any dtype."""

    keyless = True
    bare = True

    def magnitude(self):
        return 1.0

    def sample(self, key, shape, dtype, sharding):
        return jnp.ones(shape, dtype, device=sharding)


zeros = Zeros()
"""An initializer of zeros: ``jinit.zeros(key, shape, dtype=None)``; the key may be None."""

ones = Ones()
"""An initializer of ones: ``jinit.ones(key, shape, dtype=None)``; the key may be None."""


def zeros_init() -> Initializer:
    """Returns `zeros`, as Flax's ``zeros_init()`` returns JAX's ``zeros``: for code written against
    `flax.linen.initializers` or `flax.nnx.initializers`.

    Examples:
      >>> import jinit
      >>> jinit.zeros_init() == jinit.zeros
      True
    """
    return zeros


def ones_init() -> Initializer:
    """Returns `ones`, as Flax's ``ones_init()`` returns JAX's ``ones``.

    Examples:
      >>> import jinit
      >>> jinit.ones_init()(None, 3)
      Array([1., 1., 1.], dtype=float32)
    """
    return ones


def _freeze(value: Any) -> Any:
    """A constant as a hashable value: a Python number, or nested tuples of Python numbers."""
    if isinstance(value, Tracer):
        raise TypeError(
            f"Argument `value` must be concrete: an initializer is a hashable value. {checks.received('value', value)}"
        )
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        message = "Argument `value` must be a number or an array-like."
        raise TypeError(f"{message} {checks.received('value', value)}") from err
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_ or array.dtype.kind == "V"):
        raise TypeError(
            f"Argument `value` must be a number or an array-like of numbers. {checks.received('value', value)}"
        )
    if array.ndim > checks.MAX_DEPTH - 2 or array.size > checks.MAX_ITEMS:
        raise ValueError(
            f"Argument `value` may have at most {checks.MAX_DEPTH - 2} axes and {checks.MAX_ITEMS} numbers, as a "
            f"config can hold (an initializer serializes; for larger arrays, pass the array itself as the "
            f"parameter). Received: value of shape {array.shape}"
        )
    if array.dtype.kind == "V":  # ml_dtypes scalars (bfloat16, float8...) that NumPy sees as void
        array = array.astype(np.float32)
    if np.issubdtype(array.dtype, np.inexact) and np.isnan(array).any():
        raise ValueError(
            "Argument `value` must not contain NaN: NaN is not equal to itself, so the initializer could not be "
            f"compared or hashed. Received: value={checks.show(value)}"
        )

    def freeze(x: Any) -> Any:
        return tuple(freeze(v) for v in x) if isinstance(x, list) else x

    return freeze(array.tolist())


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Constant(Initializer, name="constant"):
    """`constant`'s value: `value` broadcast to the shape."""

    value: Any
    dtype: str | None = None
    keyless = True

    def __post_init__(self) -> None:
        self._set(value=_freeze(self.value), dtype=checks.dtype("dtype", self.dtype))

    def magnitude(self):
        return float(np.abs(np.asarray(self.value)).max(initial=0.0))

    def sample(self, key, shape, dtype, sharding):
        value = np.asarray(self.value)
        try:
            broadcast = np.broadcast_shapes(value.shape, shape)
        except ValueError:
            broadcast = None
        if broadcast != shape:
            raise ValueError(
                f"`constant` value of shape {value.shape} does not broadcast to the requested shape. "
                f"Received: shape={shape}"
            )
        if np.iscomplexobj(value) and not jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"`constant` has a complex value, so it needs a complex dtype. Received: dtype={dtype.name}"
            )
        checks.representable("constant", "value", self.value, dtype)
        if value.ndim == 0:
            return jnp.full(shape, value, dtype, device=sharding)
        # an array: laid out from the host, as jnp.full's broadcast cannot name a mesh's auto axes
        host = np.broadcast_to(np.asarray(value).astype(dtype), shape)
        return jax.device_put(host, sharding) if sharding is not None else jnp.asarray(host)


def constant(value: Any, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer that returns `value` broadcast to the requested shape.

    Args:
      value: a number, or an array-like that broadcasts to the shapes the initializer is called with. It is
        stored as exact Python numbers, so the initializer is hashable; NaN is refused for that reason.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      TypeError: `value` is not numeric, or is traced.
      ValueError: `value` contains NaN; when called, `value` does not broadcast to the shape.

    Examples:
      >>> import jax, jinit
      >>> jinit.constant(0.5)(None, (2, 3))
      Array([[0.5, 0.5, 0.5],
             [0.5, 0.5, 0.5]], dtype=float32)
      >>> jinit.constant([1, 2, 3], dtype="int32")(jax.random.key(0), (2, 3))
      Array([[1, 2, 3],
             [1, 2, 3]], dtype=int32)
    """
    return Constant(value, dtype)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Identity(Initializer, name="identity"):
    """`identity`'s value: ``gain * I``, padded with zeros when not square."""

    gain: float = 1.0
    dtype: str | None = None
    keyless = True

    def __post_init__(self) -> None:
        self._set(gain=checks.number("gain", self.gain, minimum="nonnegative"), dtype=checks.dtype("dtype", self.dtype))

    def magnitude(self):
        return self.gain

    def sample(self, key, shape, dtype, sharding):
        if len(shape) < 2:
            raise ValueError(f"`identity` needs a shape of rank >= 2. Received: shape={shape}")
        checks.representable("identity", "gain", self.gain, dtype)
        *batch, rows, cols = shape
        if batch:  # Haiku's batched identities: one matrix for every index of the leading axes
            eye = np.broadcast_to(np.eye(rows, cols, dtype=np.float64) * self.gain, shape).astype(dtype)
            return jax.device_put(eye, sharding) if sharding is not None else jnp.asarray(eye)
        eye = jnp.eye(rows, cols, dtype=dtype, device=sharding)
        return eye if self.gain == 1.0 else eye * jnp.asarray(self.gain, dtype)


def identity(gain: float = 1.0, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer of identity matrices times `gain` (Keras's `Identity`).

    A non-square shape gives the identity padded with zeros: ``result[i, j] = gain if i == j else 0``.

    Args:
      gain: the diagonal value, a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` for 2-D shapes.

    Raises:
      ValueError: `gain` is negative or not finite; when called, the shape is not 2-D.

    Examples:
      >>> import jinit
      >>> jinit.identity(2.0)(None, (2, 3))
      Array([[2., 0., 0.],
             [0., 2., 0.]], dtype=float32)
    """
    return Identity(gain, dtype)
