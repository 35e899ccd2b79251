"""Variance scaling and its named cases: Glorot (Xavier), He (Kaiming) and LeCun."""

import functools

import jax

from jinit._src import base, checks, fans, kernels
from jinit._src.typing import Axis, DTypeLike

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
_SYNONYMS = {"untruncated_normal": "normal"}


def variance(scale: float, mode: str, fan_in: int, fan_out: int) -> float:
    """``scale / n``, with `n` the fan that `mode` names (at least 1, as in Keras, so a zero-size fan is harmless)."""
    if mode == "fan_in":
        denominator = fan_in
    elif mode == "fan_out":
        denominator = fan_out
    elif mode == "fan_avg":
        denominator = (fan_in + fan_out) / 2
    else:
        denominator = (fan_in * fan_out) ** 0.5
    return scale / max(1, denominator)


def _sampler(key, shape, dtype, out_sharding, *, scale, mode, distribution, in_axis, out_axis, batch_axis, name):
    fan_in, fan_out = fans.fans(shape, in_axis, out_axis, batch_axis)
    return sample(name, key, shape, dtype, out_sharding, scale, mode, distribution, fan_in, fan_out)


def sample(name, key, shape, dtype, out_sharding, scale, mode, distribution, fan_in, fan_out) -> jax.Array:
    """Checks the dtype and draws variance scaling's sample, given the fans."""
    checks.random_dtype(name, dtype, complex_ok=True)
    params = (variance(scale, mode, fan_in, fan_out),)
    return kernels.sample("vs_" + distribution, key, shape, dtype, params, out_sharding)


@base.factory("variance_scaling", functools.partial(_sampler, name="variance_scaling"))
def variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    in_axis: Axis = -2,
    out_axis: Axis = -1,
    batch_axis: Axis = (),
    dtype: DTypeLike | None = None,
) -> base.Initializer:
    r"""Builds an initializer whose samples have variance ``scale / n``, with `n` a fan of the shape.

    As `jax.nn.initializers.variance_scaling` (bitwise, for float32, float64 and complex dtypes). With
    ``fan_in, fan_out = compute_fans(shape, in_axis, out_axis, batch_axis)``, `n` is ``fan_in``, ``fan_out``,
    ``(fan_in + fan_out) / 2`` or ``sqrt(fan_in * fan_out)`` for the modes ``"fan_in"``, ``"fan_out"``,
    ``"fan_avg"`` and ``"fan_geo_avg"`` (at least 1). Then, with ``variance = scale / n``:

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
    distribution = _SYNONYMS.get(distribution, distribution) if isinstance(distribution, str) else distribution
    return base.make(
        "variance_scaling",
        scale=checks.number("scale", scale, minimum="positive"),
        mode=checks.choice("mode", mode, MODES),
        distribution=checks.choice("distribution", distribution, (*DISTRIBUTIONS, *_SYNONYMS)),
        **_axes(in_axis, out_axis, batch_axis),
        dtype=checks.dtype("dtype", dtype),
    )


def _axes(in_axis: Axis, out_axis: Axis, batch_axis: Axis) -> dict[str, int | tuple[int, ...]]:
    """The checked axis arguments of variance scaling and its presets."""
    return {
        "in_axis": checks.axis("in_axis", in_axis),
        "out_axis": checks.axis("out_axis", out_axis),
        "batch_axis": checks.axis("batch_axis", batch_axis),
    }


def _preset(name: str, scale: float, mode: str, distribution: str, formula: str):
    """Declares the factory `name`: variance scaling with a fixed scale, mode and distribution."""
    sampler = functools.partial(_sampler, scale=scale, mode=mode, distribution=distribution, name=name)

    @base.factory(name, sampler)
    def build(
        in_axis: Axis = -2,
        out_axis: Axis = -1,
        batch_axis: Axis = (),
        dtype: DTypeLike | None = None,
    ) -> base.Initializer:
        return base.make(name, **_axes(in_axis, out_axis, batch_axis), dtype=checks.dtype("dtype", dtype))

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


glorot_uniform = _preset("glorot_uniform", 1.0, "fan_avg", "uniform", "Glorot (Xavier) uniform")
glorot_normal = _preset("glorot_normal", 1.0, "fan_avg", "truncated_normal", "Glorot (Xavier) normal")
he_uniform = _preset("he_uniform", 2.0, "fan_in", "uniform", "He (Kaiming) uniform")
he_normal = _preset("he_normal", 2.0, "fan_in", "truncated_normal", "He (Kaiming) normal")
lecun_uniform = _preset("lecun_uniform", 1.0, "fan_in", "uniform", "LeCun uniform")
lecun_normal = _preset("lecun_normal", 1.0, "fan_in", "truncated_normal", "LeCun normal")
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
