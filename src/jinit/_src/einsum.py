"""The fan axes of an einsum kernel, read from its equation: plain Python on a string."""

import string
from typing import Any

from jinit._src import checks

_LETTERS = frozenset(string.ascii_letters)
_ELLIPSIS = "..."
_EXAMPLE = "'btd,dnh->btnh'"


def einsum_axes(equation: str) -> dict[str, tuple[int, ...]]:
    """Reads the input, output and batch axes of an einsum kernel from its equation.

    The equation is ``"input,kernel->output"``, as `flax.linen.Einsum`, `flax.nnx.Einsum` and
    `keras.layers.EinsumDense` write it: the kernel is the second operand. Each axis of the kernel is, by where
    else its letter appears:

    - in the input and not in the output (contracted): an **input** axis, ``in_axis``;
    - in the output and not in the input: an **output** axis, ``out_axis``;
    - in both the input and the output: a **batch** axis, ``batch_axis``, counted in neither fan (an MoE expert
      axis ``e`` of ``"ebd,edf->ebf"``, per-head weights);
    - in neither (the kernel is summed over it): named in none of the three, so `compute_fans` counts it in
      the receptive field, which multiplies both fans, as a convolution's spatial axes do.

    These are exactly the fans that preserve variance: with ``fan_in, fan_out = compute_fans(kernel_shape,
    **einsum_axes(equation))``, each element of the output sums ``fan_in`` products of a kernel element (times
    the sizes of input axes summed away that the kernel lacks), and each element of the gradient of the input
    sums ``fan_out``. Keras 3.15's `EinsumDense` agrees on input and output axes; it counts a batch axis as an
    output axis (so its ``fan_out`` is too large by the batch size) and refuses a kernel axis that is in
    neither the input nor the output.

    A stacked projection, such as a fused QKV kernel ``"BTD,SNDH->SBTNH"`` with ``S = 3``, is read as the
    equation says: ``S`` is an output axis, so ``fan_out = 3 * N * H``, what the one kernel's gradient sees. For
    the fans each of the three projections would have on its own, pass ``S`` as a batch axis instead.

    An ellipsis ``...`` may stand for axes of the input and of the output (anywhere in each, in both or in
    neither): those axes are not the kernel's, so they change nothing. The kernel must name every axis with a
    letter. Spaces are ignored, as Flax and NumPy ignore them.

    With Flax, whose `Einsum` passes the kernel's shape to the initializer, so that its default rule would take
    the last two axes of a ``(d, n, h)`` kernel for ``fan_in = n * d`` and ``fan_out = h * d``:

    ```python
    import flax.linen as nn
    import jinit
    from flax import nnx

    equation = "btd,dnh->btnh"
    init = jinit.lecun_normal(**jinit.einsum_axes(equation))  # fan_in = d
    linen_layer = nn.Einsum((512, 8, 64), equation, kernel_init=init)
    nnx_layer = nnx.Einsum(equation, (512, 8, 64), kernel_init=init, rngs=nnx.Rngs(0))
    ```

    Args:
      equation: a two-operand einsum equation with an explicit output, ``"input,kernel->output"``, made of
        ASCII letters, each at most once per operand, and ``...``.

    Returns:
      ``{"in_axis": ..., "out_axis": ..., "batch_axis": ...}``, each a tuple of non-negative axes of the kernel
      in increasing order: the keyword arguments of `compute_fans`, `variance_scaling` and its named cases
      (`glorot_uniform`, `he_normal`, `lecun_normal`, ...), and of `jax.nn.initializers`' ones.

    Raises:
      TypeError: `equation` is not a string.
      ValueError: `equation` is not ``"input,kernel->output"`` (no ``->``, not two operands), holds a character
        other than letters and ``...``, names an axis twice in one operand, has an output axis in neither
        operand, has an ellipsis in the kernel, or in only one of the input and the output.

    Examples:
      >>> import jinit
      >>> axes = jinit.einsum_axes("btd,dnh->btnh")  # an attention query projection
      >>> axes
      {'in_axis': (0,), 'out_axis': (1, 2), 'batch_axis': ()}
      >>> jinit.compute_fans((512, 8, 64), **axes)  # d = 512, n = 8, h = 64
      (512, 512)
      >>> jinit.compute_fans((512, 8, 64))  # the raw shape's rule: the last two axes, the rest a receptive field
      (4096, 32768)
      >>> init = jinit.glorot_uniform(**axes)
      >>> jinit.einsum_axes("ebd,edf->ebf")  # mixture of experts: `e` indexes independent kernels
      {'in_axis': (1,), 'out_axis': (2,), 'batch_axis': (0,)}
      >>> jinit.einsum_axes("...d,df->...f")
      {'in_axis': (0,), 'out_axis': (1,), 'batch_axis': ()}
    """
    lhs, kernel, out = _parse(equation)
    in_axis, out_axis, batch_axis = [], [], []
    for axis, letter in enumerate(kernel):
        if letter in lhs and letter in out:
            batch_axis.append(axis)
        elif letter in lhs:
            in_axis.append(axis)
        elif letter in out:
            out_axis.append(axis)
    return {"in_axis": tuple(in_axis), "out_axis": tuple(out_axis), "batch_axis": tuple(batch_axis)}


def _parse(equation: Any) -> tuple[str, str, str]:
    """The input, kernel and output of a checked equation: their letters, without ellipses."""
    if not isinstance(equation, str):
        raise TypeError(
            f"Argument `equation` must be a string such as {_EXAMPLE}. {checks.received('equation', equation)}"
        )

    def fail(problem: str) -> ValueError:
        return ValueError(f"Argument `equation` {problem}. {checks.received('equation', equation)}")

    text = equation.replace(" ", "")
    if "->" not in text:
        raise fail(f"must have an explicit output after `->`, such as {_EXAMPLE}")
    if text.count("->") > 1:
        raise fail("must have one `->`")
    inputs, out = text.split("->")
    operands = inputs.split(",")
    if len(operands) != 2:
        raise fail(f"must have exactly two operands, the input and the kernel, such as {_EXAMPLE}")
    lhs, kernel = operands
    roles = {"input": lhs, "kernel": kernel, "output": out}
    for role, spec in roles.items():
        if spec.count(_ELLIPSIS) > 1:
            raise fail(f"may hold `...` at most once per operand; its {role} {spec!r} has more")
        letters = spec.replace(_ELLIPSIS, "")
        bad = next((c for c in letters if c not in _LETTERS), None)
        if bad is not None:
            raise fail(f"must be made of the letters a-z and A-Z and `...`; its {role} {spec!r} holds {bad!r}")
        repeated = next((c for c in letters if letters.count(c) > 1), None)
        if repeated is not None:
            raise fail(f"must name each axis at most once per operand; its {role} {spec!r} names {repeated!r} twice")
    if _ELLIPSIS in kernel:
        raise fail(
            f"must name every axis of the kernel with a letter, so that its fans are known; its kernel {kernel!r} "
            "holds `...`"
        )
    if (_ELLIPSIS in lhs) != (_ELLIPSIS in out):
        raise fail("must hold `...` in both the input and the output, or in neither")
    lhs, out = lhs.replace(_ELLIPSIS, ""), out.replace(_ELLIPSIS, "")
    missing = next((c for c in out if c not in lhs and c not in kernel), None)
    if missing is not None:
        raise fail(f"has the output axis {missing!r}, which is in neither the input nor the kernel")
    return lhs, kernel, out
