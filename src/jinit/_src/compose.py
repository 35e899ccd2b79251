"""Initializers made of initializers: `scaled` multiplies one by a factor, `packed` draws one per projection of a
fused kernel. Both are values like any other (equal, hashable, printable, picklable) and serialize with the
initializer they hold as a nested config."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import checks, distributions, engine
from jinit._src.base import Initializer

MAX_COMPOSITION = 16
"""How deeply initializers may hold initializers (``scaled(packed(scaled(...)))``): construction and loading alike
refuse deeper ones, so that whatever is built serializes, loads back, hashes, prints and pickles."""


def depth(init: Any) -> int:
    """How many composed initializers `init` is made of, nested (0 for a plain one)."""
    return 1 + depth(init.init) if isinstance(init, Composed) else 0


def inner(name: str, value: Any) -> Initializer:
    """Checks that `value`, the initializer a composed one holds, is a jinit `Initializer` without a seed, not
    already composed `MAX_COMPOSITION` deep."""
    if not isinstance(value, Initializer):
        raise TypeError(
            f"Argument `{name}` must be a jinit `Initializer` (a value that serializes; wrap a function with "
            f"`jinit.register`). {checks.received(name, value)}"
        )
    if value.seed is not None:
        raise ValueError(
            f"Argument `{name}` must not be seeded: seed the composed initializer instead "
            f"(`.with_seed({value.seed})` on the result). {checks.received(name, value)}"
        )
    if depth(value) >= MAX_COMPOSITION:
        raise ValueError(
            f"Initializers may be composed at most {MAX_COMPOSITION} deep (`scaled` of `packed` of ...): fold "
            f"the factors into one `scaled`. Received: {name}, composed {depth(value)} deep"
        )
    return value


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Composed(Initializer):
    """An initializer that holds another, `init`: its key, dtypes and default dtype are `init`'s."""

    init: Initializer

    nested = ("init",)
    """The fields that hold initializers: configs write them as nested configs."""

    @property
    def keyless(self) -> bool:  # type: ignore[override]
        return self.init.keyless

    @property
    def dtypes(self) -> str:  # type: ignore[override]
        return self.init.dtypes

    @property
    def dtype(self) -> str | None:
        return getattr(self.init, "dtype", None)

    def magnitude(self) -> float | None:
        return self.init.magnitude()


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Scaled(Composed, name="scaled"):
    """`scaled`'s value: `init`'s samples times `factor`."""

    factor: float = 1.0

    def __post_init__(self) -> None:
        self._set(init=inner("init", self.init), factor=checks.number("factor", self.factor))

    @property
    def dtypes(self) -> str:  # type: ignore[override]
        # A real factor times an integer is not an integer: floating dtypes only, also for `ones` and `constant`
        return "inexact" if self.init.dtypes == "any" else self.init.dtypes

    def magnitude(self) -> float | None:
        inner = self.init.magnitude()
        return None if inner is None else abs(self.factor) * inner

    def _computable(self, dtype: np.dtype, magnitude: float | None) -> None:
        """A ValueError when the factor, or the factor times the inner initializer's `magnitude`, overflows the
        dtype the product is computed in (it would give infinities, or NaN for zeros)."""
        distributions.computable(self.name, dtype, factor=self.factor)
        if magnitude is not None:
            largest = float(jnp.finfo(distributions.compute_dtype(dtype)).max)
            if abs(self.factor) * magnitude > largest:
                raise ValueError(
                    f"`scaled`'s factor times what `init` gives (up to {magnitude!r}) overflows "
                    f"{distributions.compute_dtype(dtype).name}, the dtype a {dtype.name} sample is computed in. "
                    f"Received: factor={self.factor!r}, init={self.init!r}, dtype={dtype.name}"
                )

    def law(self, shape, dtype):
        ct = distributions.compute_dtype(dtype)
        law = self.init.law(shape, ct)  # the inner sample is computed in `ct`, then multiplied there
        if law is None:
            return None
        self._computable(dtype, law.magnitude())
        low = high = None
        real = not jnp.issubdtype(dtype, jnp.complexfloating)
        product = distributions.Multiplied(law, self.factor)
        lower, upper, upper_open = product.support(ct) if real else (None, None, False)
        if lower is not None and upper is not None:
            received = {"factor": self.factor, "init": self.init}
            low, high = distributions.bounded(self.name, lower, upper, upper_open, dtype, received)
        return distributions.Multiplied(law, self.factor, low, high)

    def sample(self, key, shape, dtype, sharding):
        law = self.law(shape, dtype)
        if law is not None:
            return engine.draw(law, key, shape, dtype, sharding)
        magnitude = self.init.magnitude()
        self._computable(dtype, magnitude)
        if self.init.keyless and magnitude is not None:  # a constant that overflows the output dtype: refused
            checks.representable(self.name, "factor times `init`'s value", abs(self.factor) * magnitude, dtype)
        x = self.init.sample(key, shape, distributions.compute_dtype(dtype), sharding)
        return engine.lay_out(lambda x: distributions.times(x, self.factor, dtype), sharding, x)


def scaled(init: Initializer, factor: float) -> Initializer:
    """Builds an initializer whose samples are `init`'s times `factor`.

    ``scaled(init, f)(key, shape)`` equals ``f * init(key, shape)``; for floats narrower than float32, the float32
    product rounded once (`init` sampled in float32, the product's exact error carried into the rounding), and
    clamped into `f` times `init`'s bounds (those of a uniform or truncated normal stay exact in every dtype), so
    that, e.g., GPT-2's residual projections, ``scaled(normal(0.02), 1 / sqrt(2 * n_layer))``,
    stay one value that prints, compares and serializes as what it is. The depth scalings of the literature
    are factors: GPT-2 and Megatron-LM's residual output projections ``1 / sqrt(2 * n_layer)``; DeepNet's
    ``beta`` for the value and feed-forward projections, ``(8 * N) ** -0.25`` for an encoder (or a decoder)
    of `N` layers alone, ``0.87 * (N**4 * M) ** -0.0625`` for the encoder and ``(12 * M) ** -0.25`` for the
    decoder of an encoder-decoder with `N` and `M` layers.

    Args:
      init: a jinit `Initializer` (unseeded: seed the result), composed at most 15 deep itself.
      factor: a finite number.

    Returns:
      An `Initializer`; its default dtype and key are `init`'s; it samples floating dtypes only (a real factor
      times an integer is not one).

    Raises:
      TypeError: `init` is not a jinit `Initializer`, or `factor` not a real number; when called, an integer or
        boolean dtype.
      ValueError: `factor` is not finite, `init` is seeded or composed 16 deep; when called, the factor (or the
        factor times the largest value `init`'s hyperparameters give) overflows the dtype the sample is computed
        in.

    Examples:
      >>> import jax, jinit
      >>> init = jinit.scaled(jinit.normal(0.02), 0.25)
      >>> init
      scaled(init=normal(stddev=0.02, dtype=None, mean=0.0), factor=0.25)
      >>> key = jax.random.key(0)
      >>> bool((init(key, (4, 4)) == jinit.normal(0.02)(key, (4, 4)) * init.factor).all())
      True
      >>> jinit.deserialize(jinit.serialize(init)) == init
      True
    """
    return Scaled(init, factor)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Packed(Composed, name="packed"):
    """`packed`'s value: `count` projections of `init` side by side along `axis`."""

    count: int = 1
    axis: int = -1

    def __post_init__(self) -> None:
        self._set(
            init=inner("init", self.init),
            count=checks.integer("count", self.count, minimum="positive"),
            axis=checks.integer("axis", self.axis),
        )

    def part(self, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
        """The packed axis (non-negative) and the shape of one projection of a weight of `shape`."""
        rank = len(shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"Argument `axis` is out of range for a shape of rank {rank}. Received: axis={self.axis}, shape={shape}"
            )
        axis = self.axis % rank
        if shape[axis] % self.count:
            raise ValueError(
                f"`packed` needs the packed axis to hold `count` projections of equal size. Received: count="
                f"{self.count}, axis={self.axis}, shape={shape}"
            )
        return axis, (*shape[:axis], shape[axis] // self.count, *shape[axis + 1 :])

    def law(self, shape, dtype):
        return self.init.law(self.part(shape)[1], dtype)

    def sample(self, key, shape, dtype, sharding):
        axis, one = self.part(shape)
        law = self.init.law(one, dtype)
        if law is not None:  # independent elements: the whole weight from the law of one projection
            return engine.draw(law, key, shape, dtype, sharding)
        if key is None:  # a keyless initializer: one part, repeated
            part = self.init.sample(None, one, dtype, None)
            return engine.lay_out(lambda x: jnp.concatenate([x] * self.count, axis), sharding, part)
        # every part at once (`vmap`): one program whatever `count`, which a config sets
        parts = jax.vmap(lambda k: self.init.sample(k, one, dtype, None))(jax.random.split(key, self.count))
        return engine.lay_out(lambda x: _side_by_side(x, axis), sharding, parts)


def _side_by_side(parts: jax.Array, axis: int) -> jax.Array:
    """Parts stacked on a leading axis, ``(count, *one)``, concatenated along `axis` of one part."""
    moved = jnp.moveaxis(parts, 0, axis)  # (..., count, one[axis], ...)
    shape = list(parts.shape[1:])
    shape[axis] *= parts.shape[0]
    return moved.reshape(shape)


def packed(init: Initializer, count: int, axis: int = -1) -> Initializer:
    """Builds an initializer for a kernel that packs `count` independent projections along `axis`.

    A fused QKV kernel of shape ``(d, 3 * d)`` is three ``(d, d)`` projections side by side: its fans, and so
    its variance, must be those of one projection, where the raw shape would give ``fan_out = 3 * d`` (Glorot
    would then give it about half the variance of three separate projections). An elementwise `init`
    (variance scaling, normal, uniform, ...) draws the whole kernel, in one pass, from the distribution it has
    for the shape of one projection; any other (e.g. `orthogonal`, where each projection should be orthogonal on
    its own) draws each projection from its own key of ``jax.random.split(key, count)`` and concatenates them.

    Args:
      init: a jinit `Initializer` (unseeded: seed the result).
      count: how many projections the kernel packs, a positive int.
      axis: the packed axis, whose size must be a multiple of `count`.

    Returns:
      An `Initializer`; its default dtype, dtypes and key are `init`'s.

    Raises:
      TypeError: `init` is not a jinit `Initializer`, or `count` or `axis` not an int.
      ValueError: `count` is not positive or `init` is seeded; when called, `axis` out of range or its size not a
        multiple of `count`.

    Examples:
      >>> import jax, jinit
      >>> qkv = jinit.packed(jinit.glorot_uniform(), 3)
      >>> x = qkv(jax.random.key(0), (512, 3 * 512))
      >>> round(float(x.var() * 512), 1)  # Glorot's 2 / (fan_in + fan_out) of one (512, 512) projection
      1.0
    """
    return Packed(init, count, axis)
