"""The maximal update parametrization (muP) of Tensor Programs V: a wide model's initializers and learning-rate
multipliers, from the shapes of the small model whose hyperparameters were tuned. Plain Python on the specs."""

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jinit._src import checks, tree
from jinit._src.base import Initializer
from jinit._src.compose import Composed, scaled
from jinit._src.tree import ParamSpec
from jinit._src.variance_scaling import KerasVarianceScaling, Preset, VarianceScaling

KINDS = ("input", "hidden", "output", "fixed")
OPTIMIZERS = ("adam", "sgd")
READOUTS = ("multiplier", "init")
ONE = 1e-12
"""A factor within this of 1 is float rounding of an exact 1 (e.g. ``(1/384) / (1/96) * 96/384``): the
initializer is then left as it is."""


class MuP(NamedTuple):
    """What `mup` returns: the target model's muP specs, learning-rate multipliers and output multiplier.

    Attributes:
      specs: the target's pytree of `ParamSpec`s, each with its muP initializer.
      lr_multipliers: the same pytree with a Python float per parameter: multiply each parameter's update (the
        base learning rate times the optimizer's step) by it.
      output_multiplier: multiply the output layer's ``x @ kernel`` (before its bias) by this float in the
        forward pass; 1.0 with ``readout="init"``, or when no parameter is an output weight.
      kinds: the same pytree with each parameter's kind: ``"input"``, ``"hidden"``, ``"output"`` or ``"fixed"``.
    """

    specs: Any
    lr_multipliers: Any
    output_multiplier: float
    kinds: Any


def mup(
    base: Any,
    target: Any,
    *,
    optimizer: str = "adam",
    readout: str = "multiplier",
    overrides: Mapping[str, str] | None = None,
) -> MuP:
    """Builds the muP version of a wide model: initializers, learning-rate multipliers and output multiplier.

    muP (Yang et al. 2022, *Tensor Programs V*) sets how each parameter's initialization and learning rate
    scale with width so that the hyperparameters tuned on a small model, the *base*, stay optimal on a wide one,
    the *target*; as `microsoft/mup` (``set_base_shapes``, ``MuReadout``, ``MuAdam``, ``MuSGD``) does, the
    target equals the base where their shapes agree. An axis is *infinite* when its size differs between base
    and target. Each parameter's fan-in and fan-out axes are jinit's: ``in_axis`` and ``out_axis`` of a
    variance-scaling initializer (``input_axes`` and ``output_axes`` of `keras_variance_scaling`, the held
    initializer's for `scaled` and `packed`), else the last two axes ``(..., in, out)``; a vector's one axis is
    its fan-out. With ``m_in`` and ``m_out`` the ratios target / base of the products of those axes, a parameter
    is

    - ``"input"``: only its fan-out grows: input weights, embeddings, biases, norm scales (vector-like);
    - ``"hidden"``: both fans grow (matrix-like);
    - ``"output"``: only its fan-in grows: the readout;
    - ``"fixed"``: neither grows (an output bias): it is left as it is.

    Relative to the base (Table 8 of the paper, ``readout="multiplier"``, as ``MuReadout``; Table 3,
    ``readout="init"``, folds the output multiplier into the output weights' initialization and learning rate):

    | kind             | init variance   | Adam LR      | SGD LR           | output multiplier |
    |------------------|-----------------|--------------|------------------|-------------------|
    | input            | ``1 / m_in``    | 1            | ``m_out``        | 1                 |
    | hidden           | ``1 / m_in``    | ``1 / m_in`` | ``m_out / m_in`` | 1                 |
    | output (Table 8) | 1               | 1            | ``m_in``         | ``1 / m_in``      |
    | output (Table 3) | ``1 / m_in**2`` | ``1 / m_in`` | ``1 / m_in``     | 1                 |
    | fixed            | unchanged       | 1            | 1                | 1                 |

    (``m_in`` is 1 for a true input weight; ``m_out / m_in``, `MuSGD`'s rule, is the table's 1 when both fans
    grow alike.) The target's own initializer ``I`` of each parameter carries the tuned hyperparameters (e.g.
    ``normal(0.02)``, ``lecun_normal()``): it becomes ``scaled(I, f)`` with
    ``f = sqrt(v * Var_I(base shape) / Var_I(target shape))``, ``v`` the init-variance entry above, so that
    ``lecun_normal`` (variance ``1 / fan_in``) keeps its hidden weights (``f = 1``) and gets ``f = sqrt(m_in)``
    on the readout, while ``normal(0.02)`` gets ``f = 1 / sqrt(m_in)`` on hidden weights. An initializer is left
    as it is where ``f`` is 1, and so is a constant one (``zeros``, ``ones``, ``identity``, any keyless one).

    A learning-rate multiplier multiplies its parameter's update: ``jax.tree.map(lambda u, m: u * m, updates,
    result.lr_multipliers)`` after the optimizer, or one `optax.multi_transform` branch per distinct multiplier.
    (Multiplied after `optax.adamw`, a decoupled weight decay shrinks with it; ``MuAdamW`` keeps
    ``lr * weight_decay`` as the base has it, as multiplying before `optax.add_decayed_weights` does.) With
    ``readout="multiplier"``, the model multiplies its logits' ``x @ kernel`` by `output_multiplier`. muP also
    divides attention scores by the head dimension ``d`` instead of ``sqrt(d)``: a change to the model, not to
    its parameters.

    Args:
      base: the small model's pytree, with `target`'s structure, whose leaves are its parameters' shapes: the
        `ParamSpec`s of the same model at the base width (only their shapes are read), arrays or
        `jax.ShapeDtypeStruct`s, or tuples of ints.
      target: the wide model's pytree of `ParamSpec`s.
      optimizer: ``"adam"`` (Adam, AdamW and other entrywise-normalized optimizers) or ``"sgd"`` (SGD-like).
      readout: ``"multiplier"`` (Table 8: a forward multiplier on the logits) or ``"init"`` (Table 3: none).
      overrides: None, or a dict from a regex to a kind, for the parameters whose kind the shapes tell wrongly;
        the first regex that matches the whole path (as `init_tree` writes it: ``"blocks/0/attn/kernel"``)
        gives the kind. Every regex must match some path.

    Returns:
      A `MuP`: ``(specs, lr_multipliers, output_multiplier, kinds)``.

    Raises:
      TypeError: a leaf of `target` is not a `ParamSpec`, a leaf of `base` is not a shape, or an initializer
        that must be scaled is not a jinit `Initializer`.
      ValueError: `base` and `target` differ in structure or a parameter in rank; an axis shrinks (is `base`
        the small model?), or an axis that is neither a fan-in nor a fan-out axis changes (muP covers at most two
        infinite fans); an initializer's variance at the two shapes cannot be read (`orthogonal` and other
        initializers whose elements are not independent); output weights with different ``m_in`` under
        ``readout="multiplier"``; an unknown `optimizer`, `readout` or kind, or an override that matches no
        path. Every check runs before any array is allocated; `mup` allocates none.

    Examples:
      >>> import jinit
      >>> def mlp(width):
      ...     return {"in": jinit.ParamSpec((784, width), jinit.lecun_normal()),
      ...             "hidden": jinit.ParamSpec((width, width), jinit.normal(0.02)),
      ...             "out": jinit.ParamSpec((width, 10), jinit.lecun_normal())}
      >>> result = jinit.mup(mlp(256), mlp(1024))
      >>> result.kinds
      {'hidden': 'hidden', 'in': 'input', 'out': 'output'}
      >>> result.lr_multipliers
      {'hidden': 0.25, 'in': 1.0, 'out': 1.0}
      >>> result.output_multiplier
      0.25
      >>> result.specs["hidden"].init
      scaled(init=normal(stddev=0.02, dtype=None, mean=0.0), factor=0.5)
      >>> result.specs["out"].init.factor  # lecun_normal's 1 / fan_in variance, back to the base's
      2.0
    """
    optimizer = checks.choice("optimizer", optimizer, OPTIMIZERS)
    readout = checks.choice("readout", readout, READOUTS)
    patterns = _overrides(overrides)
    flat, treedef = tree._flatten(target, "target", is_leaf=lambda x: isinstance(x, ParamSpec))
    for path, spec in flat:
        if not isinstance(spec, ParamSpec):
            raise TypeError(
                f"Argument `target` must have `jinit.ParamSpec` leaves; the leaf at {checks.show(path)} is not. "
                f"{checks.received(path, spec)}"
            )
    shapes = _base_shapes(base, treedef, [path for path, _ in flat])
    unused = {pattern.pattern for pattern, _ in patterns}
    specs, multipliers, kinds, outputs = [], [], [], {}
    for (path, spec), base_shape in zip(flat, shapes, strict=True):
        m_in, m_out = _width_multipliers(path, spec, base_shape)
        match = next(((pattern, kind) for pattern, kind in patterns if pattern.fullmatch(path)), None)
        if match is None:
            kind = _kind(m_in, m_out)
        else:
            unused.discard(match[0].pattern)
            kind = match[1]
        variance, lr, forward = _table(kind, m_in, m_out, optimizer, readout)
        specs.append(spec if kind == "fixed" else _scaled(path, spec, base_shape, variance))
        multipliers.append(float(lr))
        kinds.append(kind)
        if kind == "output" and readout == "multiplier":
            outputs[path] = forward
    if unused:
        raise ValueError(
            f"Argument `overrides` has regexes that match no parameter path: {', '.join(map(repr, sorted(unused)))}. "
            f"Paths are written as `init_tree` writes them, e.g. {checks.show(flat[0][0] if flat else '')}. "
            f"{checks.received('overrides', overrides)}"
        )
    if len(set(outputs.values())) > 1:
        shown = ", ".join(f"{path}: {float(m)!r}" for path, m in outputs.items())
        raise ValueError(
            "The output weights grow by different fan-in ratios, so no one output multiplier fits them all; pass "
            f"`readout='init'`, which needs none. Received: output weights with multipliers {checks.show(shown)}"
        )
    output_multiplier = float(next(iter(outputs.values()), 1))
    unflatten = treedef.unflatten
    return MuP(unflatten(specs), unflatten(multipliers), output_multiplier, unflatten(kinds))


def _overrides(value: Any) -> list[tuple[re.Pattern, str]]:
    """Checks `overrides`: None or a mapping from a regex (a string or a compiled pattern) to a kind."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise TypeError(
            f"Argument `overrides` must be None or a dict from a path regex to a kind. "
            f"{checks.received('overrides', value)}"
        )
    checked = []
    for pattern, kind in value.items():
        if not (isinstance(pattern, str) or (isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str))):
            raise TypeError(
                f"Argument `overrides` must have regexes (strings) as keys. {checks.received('overrides', value)}"
            )
        try:
            compiled = re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as err:
            raise ValueError(
                f"A key of `overrides` is not a valid regex ({err}). {checks.received('regex', pattern)}"
            ) from None
        checked.append((compiled, checks.choice(f"overrides[{compiled.pattern!r}]", kind, KINDS)))
    return checked


def _base_shapes(base: Any, treedef: Any, paths: list[str]) -> list[tuple[int, ...]]:
    """The shape of each of `target`'s parameters in `base`, in `target`'s order."""
    try:
        leaves = treedef.flatten_up_to(base)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Argument `base` must have the structure of `target`, with a shape where `target` has a `ParamSpec` "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). Received: base={checks.show(base)}"
        ) from None
    shapes = []
    for path, leaf in zip(paths, leaves, strict=True):
        shape = getattr(leaf, "shape", leaf)  # a ParamSpec's, an array's, or the shape itself
        try:
            shapes.append(checks.shape(tuple(shape) if isinstance(shape, list) else shape))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"Argument `base` must have a shape (a `ParamSpec`, an array, a `jax.ShapeDtypeStruct` or a tuple "
                f"of ints) at each parameter's path; at {checks.show(path)} it has not ({err}). "
                f"{checks.received(path, leaf)}"
            ) from None
    return shapes


def _fan_axes(init: Any, rank: int) -> tuple[Any, Any]:
    """The fan-in and fan-out axes of a parameter of rank `rank` initialized by `init`, as given (unchecked)."""
    while isinstance(init, Composed):
        init = init.init
    if rank < 2:
        return (), tuple(range(rank))  # a vector's one axis is its fan-out; a scalar has none
    if isinstance(init, KerasVarianceScaling):
        return init.input_axes, init.output_axes
    if isinstance(init, VarianceScaling | Preset):
        return init.in_axis, init.out_axis
    return -2, -1


def _width_multipliers(path: str, spec: ParamSpec, base_shape: tuple[int, ...]) -> tuple[Fraction, Fraction]:
    """``(m_in, m_out)``: target / base of the products of the fan-in and of the fan-out axes, exact."""
    shape = spec.shape
    ending = f"Received: base shape={base_shape}, shape={shape}"
    if len(shape) != len(base_shape):
        raise ValueError(f"Parameter {checks.show(path)} has a different rank in `base` and in `target`. {ending}")
    if any(t < b or (b == 0 and t != 0) for b, t in zip(base_shape, shape, strict=True)):
        raise ValueError(
            f"Parameter {checks.show(path)}: an axis of `target` is smaller than in `base`, or grows from 0; muP "
            f"scales up from a small base model (are `base` and `target` swapped?). {ending}"
        )
    ins, outs = _fan_axes(spec.init, len(shape))
    try:
        ins = checks.normalize_axes("in_axis", ins, len(shape), shape)
        outs = checks.normalize_axes("out_axis", outs, len(shape), shape)
    except ValueError as err:
        raise ValueError(f"Parameter {checks.show(path)}: {err}") from None
    for axis, (b, t) in enumerate(zip(base_shape, shape, strict=True)):
        if b != t and axis not in ins + outs:
            raise ValueError(
                f"Parameter {checks.show(path)}: its axis {axis} changes, but it is neither a fan-in nor a fan-out "
                f"axis ({ins} and {outs}); muP scales a weight along its two fans only. Give its initializer its "
                f"fan axes (e.g. `jinit.lecun_normal(**jinit.einsum_axes(equation))`), or reshape it. {ending}"
            )

    def ratio(axes: tuple[int, ...]) -> Fraction:
        base_size = math.prod(base_shape[a] for a in axes)
        return Fraction(math.prod(shape[a] for a in axes), base_size) if base_size else Fraction(1)

    return ratio(ins), ratio(outs)


def _kind(m_in: Fraction, m_out: Fraction) -> str:
    """A parameter's kind by which of its fans grow."""
    return {(False, True): "input", (True, True): "hidden", (True, False): "output"}.get((m_in > 1, m_out > 1), "fixed")


def _table(kind: str, m_in: Fraction, m_out: Fraction, optimizer: str, readout: str) -> tuple[Fraction, ...]:
    """``(init variance, learning-rate multiplier, output multiplier)`` of a parameter, relative to the base:
    Tables 3 and 8 of Tensor Programs V, as `mup`'s docstring writes them."""
    adam = optimizer == "adam"
    if kind == "input":
        return 1 / m_in, Fraction(1) if adam else m_out, Fraction(1)
    if kind == "hidden":
        return 1 / m_in, 1 / m_in if adam else m_out / m_in, Fraction(1)
    if kind == "output" and readout == "multiplier":
        return Fraction(1), Fraction(1) if adam else m_in, 1 / m_in
    if kind == "output":
        return 1 / m_in**2, 1 / m_in, Fraction(1)
    return Fraction(1), Fraction(1), Fraction(1)


def _scaled(path: str, spec: ParamSpec, base_shape: tuple[int, ...], variance: Fraction) -> ParamSpec:
    """`spec` with its initializer times ``sqrt(variance * Var(base shape) / Var(target shape))``."""
    init = spec.init
    if isinstance(init, Initializer) and init.keyless:
        return spec  # a constant: muP's variances do not apply
    factor = math.sqrt(float(variance) / _variance_ratio(path, spec, base_shape))
    if abs(factor - 1) <= ONE:
        return spec
    if not isinstance(init, Initializer):
        raise TypeError(
            f"Parameter {checks.show(path)}: muP scales its initializer by {factor!r} with `jinit.scaled`, which "
            f"needs a jinit `Initializer`. {checks.received('init', init)}"
        )
    seed = init.seed
    init = scaled(init.with_seed(None), factor)
    return ParamSpec(spec.shape, init if seed is None else init.with_seed(seed), spec.dtype, spec.sharding)


def _variance_ratio(path: str, spec: ParamSpec, base_shape: tuple[int, ...]) -> float:
    """The variance of `spec.init`'s elements at `spec.shape` over that at `base_shape`, read from its laws."""
    init = spec.init
    if base_shape == spec.shape:
        return 1.0
    if not isinstance(init, Initializer):
        raise TypeError(
            f"Parameter {checks.show(path)}: muP reads how its initializer's variance changes with the width, "
            f"which needs a jinit `Initializer`. {checks.received('init', init)}"
        )
    dtype = np.dtype(spec.dtype or "float32")
    try:
        base: Any = init.law(base_shape, dtype)
        wide: Any = init.law(spec.shape, dtype)
    except (TypeError, ValueError) as err:  # the initializer's own check: name the parameter
        raise type(err)(f"Parameter {checks.show(path)}: {err}") from None
    if base is not None and base == wide:
        return 1.0  # the same distribution at both widths: normal(0.02), uniform, ...
    if base is not None and wide is not None and jnp.issubdtype(dtype, jnp.floating):  # bfloat16's kind is "V"
        base_variance, variance = base.moments()[1], wide.moments()[1]  # exact: variance scaling's scale / n
        if base_variance > 0:
            return variance / base_variance
    raise ValueError(
        f"Parameter {checks.show(path)}: muP must know how its initializer's variance changes from the base shape "
        f"{base_shape} to {spec.shape}, which only an elementwise initializer tells (variance scaling, normal, "
        f"uniform, truncated normal, or `scaled` or `packed` of one). {checks.received('init', init)}"
    )
