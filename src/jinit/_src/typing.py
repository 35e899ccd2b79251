"""Type aliases shared by jinit's modules."""

from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import jax

Shape: TypeAlias = Sequence[int] | int
"""A shape: a sequence of non-negative ints (Python, NumPy or JAX), or one int for a single axis, as JAX takes it."""

DTypeLike: TypeAlias = Any
"""Anything `jax.numpy.dtype` accepts: a name, a NumPy dtype or a scalar type."""

KeyArray: TypeAlias = jax.Array
"""A single PRNG key: `jax.random.key(seed)` or a legacy `uint32[2]` key."""

Axis: TypeAlias = int | Sequence[int]
"""One axis, or several whose sizes multiply."""

OutSharding: TypeAlias = jax.sharding.Sharding | jax.sharding.PartitionSpec | None
"""Where the result lives: a `Sharding`, a `PartitionSpec` of the current mesh, or None."""


@runtime_checkable
class InitializerLike(Protocol):
    """What any initializer is called with, jinit's or `jax.nn.initializers`'."""

    def __call__(
        self,
        key: KeyArray,
        shape: Shape,
        dtype: DTypeLike | None = None,
        out_sharding: OutSharding = None,
    ) -> jax.Array: ...
