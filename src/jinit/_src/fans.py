"""Fan-in and fan-out of a weight shape: plain Python on the static shape."""

import math

from jinit._src import checks
from jinit._src.typing import Axis, Shape


def compute_fans(
    shape: Shape,
    in_axis: Axis = -2,
    out_axis: Axis = -1,
    batch_axis: Axis = (),
) -> tuple[int | float, int | float]:
    """Computes the fan-in and fan-out of a weight of shape `shape`.

    With the default axes this follows Keras: a scalar has fans ``(1, 1)``, a vector of size ``n`` has
    ``(n, n)``, a matrix ``(shape[0], shape[1])``, and a convolution kernel ``(..., in, out)`` has
    ``fan_in = in * receptive_field`` and ``fan_out = out * receptive_field`` where ``receptive_field`` is
    the product of the leading (spatial) sizes. Other axes follow `jax.nn.initializers` exactly: with
    ``in_size``, ``out_size`` and ``batch_size`` the products of the sizes of the axes named by `in_axis`,
    `out_axis` and `batch_axis`, ``receptive_field = prod(shape) / in_size / out_size / batch_size``,
    ``fan_in = in_size * receptive_field`` and ``fan_out = out_size * receptive_field``. So PyTorch's
    ``(out, in, *kernel)`` layout is ``in_axis=1, out_axis=0``, and Flax's embedding tables (``in_axis=-2,
    out_axis=0``: the same axis twice) have both fans equal to the embedding size. An axis may be named more
    than once, as JAX allows; a fan is then a float where JAX's is not a whole number. A zero-size axis gives
    a zero fan, never an error.

    Args:
      shape: the weight's shape.
      in_axis: the input axis or axes.
      out_axis: the output axis or axes.
      batch_axis: axes that count in neither fan (e.g. independent heads).

    Returns:
      ``(fan_in, fan_out)``: Python ints, or floats where the axes overlap so that a fan is not a whole number.

    Raises:
      ValueError: an axis out of range.
      TypeError: a shape or axis that is not made of ints.

    Examples:
      >>> import jinit
      >>> jinit.compute_fans((3, 3, 64, 128))
      (576, 1152)
      >>> jinit.compute_fans((128, 64, 3, 3), in_axis=1, out_axis=0)
      (576, 1152)
      >>> jinit.compute_fans((1000, 64), out_axis=0)  # flax.linen.Embed's default initializer
      (64, 64)
      >>> jinit.compute_fans((10,))
      (10, 10)
    """
    shape = checks.shape(shape)
    in_axis = checks.axis("in_axis", in_axis)
    out_axis = checks.axis("out_axis", out_axis)
    batch_axis = checks.axis("batch_axis", batch_axis)
    return fans(shape, in_axis, out_axis, batch_axis)


def fans(shape: tuple[int, ...], in_axis: Axis, out_axis: Axis, batch_axis: Axis) -> tuple[int | float, int | float]:
    """`compute_fans` on arguments already checked by `checks.shape` and `checks.axis`."""
    rank = len(shape)
    if in_axis == -2 and out_axis == -1 and batch_axis == ():  # the default axes: Keras's rule
        if rank < 2:
            return (1, 1) if rank == 0 else (shape[0], shape[0])
        receptive_field = math.prod(shape[:-2])
        return shape[-2] * receptive_field, shape[-1] * receptive_field
    ins = checks.normalize_axes("in_axis", in_axis, rank, shape, repeats=True)
    outs = checks.normalize_axes("out_axis", out_axis, rank, shape, repeats=True)
    batch = checks.normalize_axes("batch_axis", batch_axis, rank, shape, repeats=True)
    in_size, out_size, batch_size = (math.prod(shape[i] for i in axes) for axes in (ins, outs, batch))
    named = ins + outs + batch
    if len(set(named)) == len(named) or 0 in shape:
        # distinct axes: the receptive field is the product of the other axes, a whole number (JAX's division
        # gives it exactly, where it is defined: no size is zero)
        receptive_field = math.prod(d for i, d in enumerate(shape) if i not in named)
        return in_size * receptive_field, out_size * receptive_field
    receptive_field = math.prod(shape) / in_size / out_size / batch_size  # JAX's float arithmetic, in its order
    return _whole(in_size * receptive_field), _whole(out_size * receptive_field)


def _whole(fan: float) -> int | float:
    """A fan as an int where it is a whole number (exactly: fans are far below 2**53), else the float."""
    return int(fan) if fan.is_integer() else fan
