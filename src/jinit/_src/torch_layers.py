"""PyTorch's default layer initialization, kernel and bias together: `nn.Linear`'s and `nn.Conv*d`'s
`reset_parameters`.

PyTorch draws a layer's weight with ``kaiming_uniform_(weight, a=sqrt(5))``, uniform in ``±1/sqrt(fan_in)``, and
its bias uniform in ``±1/sqrt(fan_in)`` with the *weight's* fan_in, which an initializer called with the bias's
shape alone cannot know (jax#4862, equinox#179). `torch_bias` takes that fan_in as its argument; `torch_linear`
and `torch_conv` compute it as PyTorch does and return both parameters' `ParamSpec`s.
"""

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from jinit._src import checks, distributions, fans, pytorch, variance_scaling
from jinit._src.base import Initializer
from jinit._src.tree import ParamSpec
from jinit._src.typing import DTypeLike

LAYOUTS = ("jax", "torch")


def _size(name: str, value: Any) -> int:
    """Checks a size (features, channels, a fan): an integer in [0, 2**63)."""
    size = checks.integer(name, value, minimum="nonnegative")
    if size > checks.MAX_BYTES:
        raise ValueError(f"Argument `{name}` must be below 2**63. {checks.received(name, value)}")
    return size


def _kernel_size(value: Any) -> tuple[int, ...]:
    """Checks `kernel_size`: a non-empty sequence of non-negative ints, one per spatial axis (as Flax's)."""
    if not isinstance(value, list | tuple):
        raise TypeError(
            "Argument `kernel_size` must be a sequence of ints, one per spatial axis, as Flax's `kernel_size`: "
            f"write (3, 3) for a 3x3 convolution, (3,) for a 1-D one. {checks.received('kernel_size', value)}"
        )
    if not value:
        raise ValueError(
            f"Argument `kernel_size` must have at least one spatial axis. {checks.received('kernel_size', value)}"
        )
    sizes = []
    for size in value:
        try:
            sizes.append(_size("kernel_size", size))
        except (TypeError, ValueError) as err:  # the message shows the whole kernel size, not one entry
            message = (
                f"Argument `kernel_size` must contain only non-negative ints. {checks.received('kernel_size', value)}"
            )
            raise type(err)(message) from None
    return tuple(sizes)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class TorchBias(Initializer, name="torch_bias"):
    """`torch_bias`'s value: ``U[-bound, bound)``, ``bound = 1 / sqrt(fan_in)`` (0 when ``fan_in = 0``)."""

    fan_in: int
    dtype: str | None = None
    dtypes = "real"

    def __post_init__(self) -> None:
        self._set(fan_in=_size("fan_in", self.fan_in), dtype=checks.dtype("dtype", self.dtype))

    def law(self, shape, dtype):
        # torch.nn.Linear/_ConvNd.reset_parameters: `bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0`
        bound = 1 / math.sqrt(self.fan_in) if self.fan_in > 0 else 0.0
        lower, upper = Fraction(-bound), Fraction(bound)
        low, high = distributions.bounded(self.name, lower, upper, bound > 0, dtype, {"fan_in": self.fan_in})
        return distributions.RandomUniform(-bound if bound else 0.0, bound, low, high)


def torch_bias(fan_in: int, dtype: DTypeLike | None = None) -> Initializer:
    """Builds PyTorch's default bias of `nn.Linear` and `nn.Conv*d`: ``U[-bound, bound)``, ``bound = 1 / sqrt(fan_in)``.

    `fan_in` is the fan-in of the layer's *weight* (PyTorch's ``_calculate_fan_in_and_fan_out(weight)[0]``):
    ``in_features`` for `nn.Linear`, ``in_channels // groups * prod(kernel_size)`` for `nn.Conv*d`, and
    ``out_channels // groups * prod(kernel_size)`` for `nn.ConvTranspose*d`. As in PyTorch, ``fan_in = 0``
    gives ``bound = 0``: zeros. The shape it is called with does not matter: every element has this law.
    `torch_linear` and `torch_conv` compute the fan-in and pair the bias with its kernel.

    Args:
      fan_in: the fan-in of the layer's weight, a non-negative integer.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `fan_in` is negative.
      TypeError: `fan_in` is not an integer.

    Examples:
      >>> import jax, jinit
      >>> init = jinit.torch_bias(784)  # the bias of nn.Linear(784, 256)
      >>> init
      torch_bias(fan_in=784, dtype=None)
      >>> b = init(jax.random.key(0), (256,))
      >>> bool(abs(b).max() < 1 / 784**0.5)
      True

      In Flax, as the bias of a Dense layer whose kernel is PyTorch's too (`flax` is an optional extra):

      >>> import flax.linen as nn, jax.numpy as jnp  # doctest: +SKIP
      >>> kernel = jinit.torch_linear(784, 256)["kernel"].init  # doctest: +SKIP
      >>> dense = nn.Dense(256, kernel_init=kernel, bias_init=jinit.torch_bias(784))  # doctest: +SKIP
      >>> dense.init(jax.random.key(0), jnp.ones((1, 784)))["params"]["bias"].shape  # doctest: +SKIP
      (256,)
    """
    return TorchBias(fan_in, dtype)


def _layer(
    torch_shape: tuple[int, ...],
    jax_shape: tuple[int, ...],
    jax_axes: tuple[int, int],
    bias: int | None,
    layout: str,
    dtype: str | None,
) -> dict[str, ParamSpec]:
    """The specs of a layer whose weight has the PyTorch shape `torch_shape`: PyTorch's weight in that shape, or
    in `jax_shape` with its fan-in axis and fan-out axis `jax_axes`; a bias of `bias` elements unless None."""
    fan_in = int(fans.fans(torch_shape, 1, 0, ())[0])  # PyTorch's `_calculate_fan_in_and_fan_out(weight)[0]`
    weight = pytorch.torch_kaiming_uniform(a=math.sqrt(5), dtype=dtype)  # `reset_parameters`' call, in torch's layout
    if layout == "torch":
        specs = {"kernel": ParamSpec(torch_shape, weight, dtype)}
    else:
        in_axis, out_axis = jax_axes
        kernel = variance_scaling.variance_scaling(
            weight.config["scale"], "fan_in", "uniform", in_axis=in_axis, out_axis=out_axis, dtype=dtype
        )
        specs = {"kernel": ParamSpec(jax_shape, kernel, dtype)}
    if bias is not None:
        specs["bias"] = ParamSpec((bias,), TorchBias(fan_in, dtype), dtype)
    return specs


def torch_linear(
    in_features: int, out_features: int, *, bias: bool = True, layout: str = "jax", dtype: DTypeLike | None = None
) -> dict[str, ParamSpec]:
    """Builds the parameter specs of a `torch.nn.Linear(in_features, out_features)`, initialized as PyTorch does.

    The kernel is uniform in ``±1/sqrt(in_features)`` (PyTorch's ``kaiming_uniform_(weight, a=sqrt(5))``) and the
    bias is ``torch_bias(in_features)``, also uniform in ``±1/sqrt(in_features)``.

    Args:
      in_features: the input size, a non-negative integer.
      out_features: the output size, a non-negative integer.
      bias: whether the layer has a bias (a ``"bias"`` entry).
      layout: ``"jax"``: the kernel is ``(in_features, out_features)``, as Flax's `Dense`; ``"torch"``:
        ``(out_features, in_features)``, PyTorch's ``weight``.
      dtype: the parameters' dtype; None is JAX's default float type.

    Returns:
      ``{"kernel": ParamSpec, "bias": ParamSpec}`` (without ``"bias"`` when `bias` is False), for
      `jinit.init_tree`. The kernel's initializer computes its fan-in from the shape it is called with, so it is
      also a Flax ``kernel_init`` (``specs["kernel"].init``); in the torch layout it is
      ``torch_kaiming_uniform(a=sqrt(5))``. The bias's is ``torch_bias(in_features)``. The bias is
      ``(out_features,)``.

    Raises:
      ValueError: a size is negative, or `layout` is unknown.
      TypeError: a size is not an integer, or `bias` is not a boolean.

    Examples:
      >>> import jax, jinit
      >>> specs = jinit.torch_linear(784, 256)
      >>> specs["kernel"].shape, specs["bias"].shape, specs["bias"].init
      ((784, 256), (256,), torch_bias(fan_in=784, dtype=None))
      >>> jinit.torch_linear(784, 256, layout="torch")["kernel"].shape  # nn.Linear(784, 256).weight
      (256, 784)
      >>> params = jinit.init_tree(jax.random.key(0), {"fc1": specs, "fc2": jinit.torch_linear(256, 10, bias=False)})
      >>> jax.tree.map(lambda x: x.shape, params)
      {'fc1': {'bias': (256,), 'kernel': (784, 256)}, 'fc2': {'kernel': (256, 10)}}
      >>> bool(abs(params["fc1"]["kernel"]).max() <= 1 / 784**0.5)
      True

      With Flax (an optional extra), the same initializers go to `nn.Dense`:

      >>> import flax.linen as nn  # doctest: +SKIP
      >>> dense = nn.Dense(256, kernel_init=specs["kernel"].init, bias_init=specs["bias"].init)  # doctest: +SKIP
    """
    in_features = _size("in_features", in_features)
    out_features = _size("out_features", out_features)
    bias = checks.boolean("bias", bias)
    layout = checks.choice("layout", layout, LAYOUTS)
    dtype = checks.dtype("dtype", dtype)
    torch_shape = (out_features, in_features)
    return _layer(torch_shape, (in_features, out_features), (-2, -1), out_features if bias else None, layout, dtype)


def torch_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: Sequence[int],
    *,
    bias: bool = True,
    groups: int = 1,
    transpose: bool = False,
    layout: str = "jax",
    dtype: DTypeLike | None = None,
) -> dict[str, ParamSpec]:
    """Builds the parameter specs of a `torch.nn.Conv{1,2,3}d` or `ConvTranspose{1,2,3}d`, initialized as PyTorch does.

    The kernel is uniform in ``±1/sqrt(fan_in)`` (PyTorch's ``kaiming_uniform_(weight, a=sqrt(5))``) and the bias
    is ``torch_bias(fan_in)``, with PyTorch's fan-in of the weight: ``fan_in = in_channels // groups * k`` for a
    convolution and ``fan_in = out_channels // groups * k`` for a transposed one, ``k = prod(kernel_size)``.

    The kernel's shape, with ``*ks = kernel_size``:

    | layout      | convolution                  | transposed convolution       |
    | ----------- | ---------------------------- | ---------------------------- |
    | ``"jax"``   | ``(*ks, in // groups, out)`` | ``(*ks, in, out // groups)`` |
    | ``"torch"`` | ``(out, in // groups, *ks)`` | ``(in, out // groups, *ks)`` |

    The JAX layouts are Flax's: `nn.Conv` with ``feature_group_count=groups``, and `nn.ConvTranspose` (which
    has no groups) with its default ``transpose_kernel=False``. A JAX kernel is the torch weight with its first
    two axes moved last (a convolution's swapped: ``jnp.moveaxis(w, (0, 1), (-1, -2))``, a transposed one's
    not: ``jnp.moveaxis(w, (0, 1), (-2, -1))``); the transposed one also flips the spatial axes to compute what
    PyTorch does, which leaves its distribution unchanged. The bias is ``(out_channels,)``.

    Args:
      in_channels: the input channels, a non-negative integer divisible by `groups`.
      out_channels: the output channels, a non-negative integer divisible by `groups`.
      kernel_size: the kernel's spatial sizes, a sequence of non-negative ints, one per spatial axis (Flax's
        `kernel_size`; PyTorch's int shorthand is ambiguous here: write ``(3, 3)``).
      bias: whether the layer has a bias (a ``"bias"`` entry).
      groups: the number of groups, a positive integer (PyTorch's `groups`, Flax's `feature_group_count`).
      transpose: a transposed convolution (`nn.ConvTranspose*d`).
      layout: ``"jax"`` or ``"torch"``, as in the table.
      dtype: the parameters' dtype; None is JAX's default float type.

    Returns:
      ``{"kernel": ParamSpec, "bias": ParamSpec}`` (without ``"bias"`` when `bias` is False), for
      `jinit.init_tree`. The kernel's initializer computes its fan-in from the shape it is called with (a
      `variance_scaling` value), so it is also a Flax ``kernel_init`` (``specs["kernel"].init``); in the torch
      layout it is ``torch_kaiming_uniform(a=sqrt(5))``. The bias's is ``torch_bias(fan_in)``.

    Raises:
      ValueError: a size is negative, `groups` is not positive or does not divide both channel counts,
        `kernel_size` is empty, or `layout` is unknown.
      TypeError: a size or `groups` is not an integer, `kernel_size` is not a sequence of ints, or `bias` or
        `transpose` is not a boolean.

    Examples:
      >>> import jax, jinit
      >>> specs = jinit.torch_conv(16, 32, (3, 3), groups=2)  # nn.Conv2d(16, 32, 3, groups=2)
      >>> specs["kernel"].shape, specs["bias"].init
      ((3, 3, 8, 32), torch_bias(fan_in=72, dtype=None))
      >>> jinit.torch_conv(16, 32, (3, 3), groups=2, layout="torch")["kernel"].shape
      (32, 8, 3, 3)
      >>> up = jinit.torch_conv(32, 16, (4, 4), transpose=True)  # nn.ConvTranspose2d(32, 16, 4)
      >>> up["kernel"].shape, up["bias"].init.fan_in
      ((4, 4, 32, 16), 256)
      >>> model = {"conv": specs, "up": up, "fc": jinit.torch_linear(32, 10)}
      >>> params = jinit.init_tree(jax.random.key(0), model)
      >>> bool(abs(params["up"]["bias"]).max() <= 1 / 256**0.5)
      True

      With Flax (an optional extra):

      >>> import flax.linen as nn  # doctest: +SKIP
      >>> conv = nn.Conv(32, (3, 3), feature_group_count=2,  # doctest: +SKIP
      ...                kernel_init=specs["kernel"].init, bias_init=specs["bias"].init)
    """
    in_channels = _size("in_channels", in_channels)
    out_channels = _size("out_channels", out_channels)
    kernel_size = _kernel_size(kernel_size)
    bias = checks.boolean("bias", bias)
    groups = checks.integer("groups", groups, minimum="positive")
    for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
        if channels % groups:
            raise ValueError(
                f"Argument `{name}` must be divisible by `groups`. Received: {name}={channels}, groups={groups}"
            )
    transpose = checks.boolean("transpose", transpose)
    layout = checks.choice("layout", layout, LAYOUTS)
    dtype = checks.dtype("dtype", dtype)
    bias_size = out_channels if bias else None
    if transpose:  # PyTorch's weight is (in, out // groups, *k); its fan-in is size(1) * k
        torch_shape = (in_channels, out_channels // groups, *kernel_size)
        return _layer(
            torch_shape, (*kernel_size, in_channels, out_channels // groups), (-1, -2), bias_size, layout, dtype
        )
    torch_shape = (out_channels, in_channels // groups, *kernel_size)
    return _layer(torch_shape, (*kernel_size, in_channels // groups, out_channels), (-2, -1), bias_size, layout, dtype)
