"""Variance scaling and its named cases: Glorot (Xavier), He (Kaiming) and LeCun."""

import dataclasses
import math
from typing import ClassVar

from jinit._src import checks, distributions, fans
from jinit._src.base import Initializer
from jinit._src.typing import Axis, DTypeLike

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
_SYNONYMS = {"untruncated_normal": "normal"}


def scaled(scale, mode, distribution, fan_in, fan_out, dtype) -> distributions.Distribution:
    """Variance scaling's distribution, given the fans: every variance-scaling family's `law`.

    The variance is ``scale / n``, with `n` the fan that `mode` names, computed as JAX computes it; a zero fan
    (of a zero-size shape, whose sample is empty) counts as 1, as in Keras.
    """
    if mode == "fan_in":
        n = fan_in
    elif mode == "fan_out":
        n = fan_out
    elif mode == "fan_avg":
        n = (fan_in + fan_out) / 2
    else:
        n = (fan_in * fan_out) ** 0.5
    variance = scale / (n or 1)
    if variance > 3.0e38:  # a float32 computation would overflow (its largest value is 3.4e38)
        distributions.computable(f"variance scaling's scale / n = {variance!r}; its `scale`", dtype, scale=scale)
    return distributions.SCALED[distribution](variance)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class VarianceScaling(Initializer, name="variance_scaling"):
    """`variance_scaling`'s value: variance ``scale / n``, `n` a fan of the shape chosen by `mode`."""

    scale: float
    mode: str
    distribution: str
    in_axis: Axis = -2
    out_axis: Axis = -1
    batch_axis: Axis = ()
    dtype: str | None = None
    dtypes = "inexact"

    def __post_init__(self) -> None:
        distribution = self.distribution
        distribution = _SYNONYMS.get(distribution, distribution) if isinstance(distribution, str) else distribution
        self._set(
            scale=checks.number("scale", self.scale, minimum="positive"),
            mode=checks.choice("mode", self.mode, MODES),
            distribution=checks.choice("distribution", distribution, (*DISTRIBUTIONS, *_SYNONYMS)),
            in_axis=checks.axis("in_axis", self.in_axis),
            out_axis=checks.axis("out_axis", self.out_axis),
            batch_axis=checks.axis("batch_axis", self.batch_axis),
            dtype=checks.dtype("dtype", self.dtype),
        )

    def law(self, shape, dtype):
        fan_in, fan_out = fans.fans(shape, self.in_axis, self.out_axis, self.batch_axis)
        return scaled(self.scale, self.mode, self.distribution, fan_in, fan_out, dtype)


def variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    in_axis: Axis = -2,
    out_axis: Axis = -1,
    batch_axis: Axis = (),
    dtype: DTypeLike | None = None,
) -> Initializer:
    r"""Builds an initializer whose samples have variance ``scale / n``, with `n` a fan of the shape.

    As `jax.nn.initializers.variance_scaling` (bitwise, for float32, float64 and complex dtypes). With
    ``fan_in, fan_out = compute_fans(shape, in_axis, out_axis, batch_axis)``, `n` is ``fan_in``, ``fan_out``,
    ``(fan_in + fan_out) / 2`` or ``sqrt(fan_in * fan_out)`` for the modes ``"fan_in"``, ``"fan_out"``,
    ``"fan_avg"`` and ``"fan_geo_avg"`` (a zero fan, of an empty sample, counts as 1). Then, with
    ``variance = scale / n``:

    - ``"truncated_normal"``: a normal truncated to two standard deviations, rescaled so that the variance
      is exactly ``variance``: ``stddev = sqrt(variance) / 0.87962566103423978``.
    - ``"normal"`` (synonym ``"untruncated_normal"``): ``N(0, variance)``. Note that Keras's
      ``VarianceScaling(distribution="normal")`` means the truncated normal.
    - ``"uniform"``: uniform in ``[-limit, limit)`` with ``limit = sqrt(3 * variance)``.

    Complex dtypes sample the complex analogues (a truncated normal of the modulus, a uniform disk). As in
    JAX, the complex truncated normal's variance is ``variance / (1 - exp(-4))``, 1.87% more than
    ``variance``: its constant leaves out the truncation's probability; jinit keeps JAX's values.

    Args:
      scale: the scaling factor, a positive finite number.
      mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` or ``"fan_geo_avg"``.
      distribution: ``"truncated_normal"``, ``"normal"`` (or ``"untruncated_normal"``) or ``"uniform"``.
      in_axis: the input axis or axes of the weight.
      out_axis: the output axis or axes of the weight.
      batch_axis: axes counted in neither fan.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `scale` is not positive and finite, or `mode` or `distribution` is unknown; when called,
        an axis is out of range or named twice.

    Examples:
      >>> import jax, jinit
      >>> init = jinit.variance_scaling(2.0, "fan_in", "normal")
      >>> x = init(jax.random.key(0), (512, 256))
      >>> round(float(x.std() * 512**0.5 / 2**0.5), 1)
      1.0
    """
    return VarianceScaling(scale, mode, distribution, in_axis, out_axis, batch_axis, dtype)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class KerasVarianceScaling(Initializer, name="keras_variance_scaling"):
    """`keras_variance_scaling`'s value: variance scaling whose fans count only `input_axes` and `output_axes`."""

    scale: float
    mode: str
    distribution: str
    input_axes: tuple[int, ...]
    output_axes: tuple[int, ...]
    dtype: str | None = None
    dtypes = "inexact"

    def __post_init__(self) -> None:
        # variance_scaling checks (and normalizes) the arguments the two share
        shared = VarianceScaling(self.scale, self.mode, self.distribution, dtype=self.dtype)
        self._set(
            scale=shared.scale,
            mode=shared.mode,
            distribution=shared.distribution,
            input_axes=_axes("input_axes", self.input_axes),
            output_axes=_axes("output_axes", self.output_axes),
            dtype=shared.dtype,
        )

    def law(self, shape, dtype):
        rank = len(shape)
        ins = checks.normalize_axes("input_axes", self.input_axes, rank, shape)
        outs = checks.normalize_axes("output_axes", self.output_axes, rank, shape)
        fan_in, fan_out = math.prod(shape[a] for a in ins), math.prod(shape[a] for a in outs)
        return scaled(self.scale, self.mode, self.distribution, fan_in, fan_out, dtype)


def _axes(name: str, value: Axis) -> tuple[int, ...]:
    axes = checks.axis(name, value)
    return (axes,) if isinstance(axes, int) else axes


def keras_variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    input_axes: tuple[int, ...],
    output_axes: tuple[int, ...],
    dtype: DTypeLike | None = None,
) -> Initializer:
    """Builds Keras 3's `VarianceScaling` with `input_axes` and `output_axes`: fans count only those axes.

    ``fan_in = prod(shape[a] for a in input_axes)`` and ``fan_out`` likewise, with no receptive field (unlike
    `variance_scaling`'s axes, which multiply by every axis that is neither an input, output nor batch axis;
    the two agree when the axes cover the whole shape). `distribution` is jinit's (``"normal"`` untruncated).
    Keras configs with both axes given load into this factory.

    Args:
      scale: the scaling factor, a positive finite number.
      mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` or ``"fan_geo_avg"``.
      distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
      input_axes: the input axes.
      output_axes: the output axes.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: as `variance_scaling`; when called, an axis out of range or repeated.

    Examples:
      >>> import jax, jinit
      >>> init = jinit.get({"class_name": "HeNormal", "config": {"input_axes": [0], "output_axes": [1, 2]}})
      >>> init.name, init.config["input_axes"], init.config["output_axes"]
      ('keras_variance_scaling', (0,), (1, 2))
      >>> init(jax.random.key(0), (64, 4, 16)).shape
      (64, 4, 16)
    """
    return KerasVarianceScaling(scale, mode, distribution, input_axes, output_axes, dtype)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Preset(Initializer):
    """A named case of variance scaling: its scale, mode and distribution are fixed, its axes are fields."""

    in_axis: Axis = -2
    out_axis: Axis = -1
    batch_axis: Axis = ()
    dtype: str | None = None
    dtypes = "inexact"
    scale: ClassVar[float]
    mode: ClassVar[str]
    distribution: ClassVar[str]

    def __post_init__(self) -> None:
        self._set(
            in_axis=checks.axis("in_axis", self.in_axis),
            out_axis=checks.axis("out_axis", self.out_axis),
            batch_axis=checks.axis("batch_axis", self.batch_axis),
            dtype=checks.dtype("dtype", self.dtype),
        )

    def law(self, shape, dtype):
        fan_in, fan_out = fans.fans(shape, self.in_axis, self.out_axis, self.batch_axis)
        return scaled(self.scale, self.mode, self.distribution, fan_in, fan_out, dtype)


class GlorotUniform(Preset, name="glorot_uniform"):
    scale, mode, distribution = 1.0, "fan_avg", "uniform"


class GlorotNormal(Preset, name="glorot_normal"):
    scale, mode, distribution = 1.0, "fan_avg", "truncated_normal"


class HeUniform(Preset, name="he_uniform"):
    scale, mode, distribution = 2.0, "fan_in", "uniform"


class HeNormal(Preset, name="he_normal"):
    scale, mode, distribution = 2.0, "fan_in", "truncated_normal"


class LecunUniform(Preset, name="lecun_uniform"):
    scale, mode, distribution = 1.0, "fan_in", "uniform"


class LecunNormal(Preset, name="lecun_normal"):
    scale, mode, distribution = 1.0, "fan_in", "truncated_normal"


def _factory(cls: type[Preset], formula: str):
    """The factory of the preset `cls`, with JAX's signature and a docstring."""
    name, scale, mode, distribution = cls.name, cls.scale, cls.mode, cls.distribution

    def build(
        in_axis: Axis = -2,
        out_axis: Axis = -1,
        batch_axis: Axis = (),
        dtype: DTypeLike | None = None,
    ) -> Initializer:
        return cls(in_axis, out_axis, batch_axis, dtype)

    build.__name__ = build.__qualname__ = name
    build.__module__ = __name__
    build.__doc__ = f"""Builds the {formula} initializer: ``variance_scaling({scale}, "{mode}", "{distribution}")``.

    Same arguments and values as `jax.nn.initializers.{name}`.

    Args:
      in_axis: the input axis or axes of the weight.
      out_axis: the output axis or axes of the weight.
      batch_axis: axes counted in neither fan.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: when called, an axis is out of range or named twice.

    Examples:
      >>> import jax, jinit
      >>> jinit.{name}()
      {name}(in_axis=-2, out_axis=-1, batch_axis=(), dtype=None)
      >>> jinit.{name}()(jax.random.key(0), (3, 3, 16, 32)).shape
      (3, 3, 16, 32)
    """
    return build


glorot_uniform = _factory(GlorotUniform, "Glorot (Xavier) uniform")
glorot_normal = _factory(GlorotNormal, "Glorot (Xavier) normal")
he_uniform = _factory(HeUniform, "He (Kaiming) uniform")
he_normal = _factory(HeNormal, "He (Kaiming) normal")
lecun_uniform = _factory(LecunUniform, "LeCun uniform")
lecun_normal = _factory(LecunNormal, "LeCun normal")
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
