"""muP's learning-rate multipliers in optax: `mup_scale`, a transformation that multiplies each parameter's update by
its multiplier, and `mu_adam`, `mu_adamw` and `mu_sgd`, optax's optimizers with microsoft/mup's `MuAdam`,
`MuAdamW` and `MuSGD` rules, weight decay included. optax is imported when one of them is called, never by
``import jinit`` (``pip install 'jinit[optax]'``)."""

from typing import Any

import jax

from jinit._src import checks, tree

MULTIPLIERS = "a `jinit.MuP` (or `jinit.DepthMuP`), or its `lr_multipliers`: a pytree of positive numbers"


def _optax() -> Any:
    """optax, imported on first use."""
    try:
        import optax
    except ImportError:
        raise ImportError(
            "jinit's muP optimizers need optax, an optional extra: pip install 'jinit[optax]' (or pip install optax)"
        ) from None
    return optax


def multipliers(value: Any) -> Any:
    """Checks `lr_multipliers`: a `MuP`-like result (its `lr_multipliers` are read) or a pytree of positive finite
    numbers. Returns the pytree, with Python floats as leaves."""
    value = getattr(value, "lr_multipliers", value)
    flat, treedef = tree._flatten(value, "lr_multipliers")
    leaves = []
    for path, leaf in flat:
        try:
            number = checks.number("lr_multipliers", leaf, minimum="positive")
        except (TypeError, ValueError) as err:
            raise type(err)(
                f"Argument `lr_multipliers` must be {MULTIPLIERS}; the leaf at {checks.show(path)} is not a positive "
                f"finite number. {checks.received(path, leaf)}"
            ) from None
        leaves.append(number)
    return treedef.unflatten(leaves)


def scale_updates(lr_multipliers: Any, updates: Any) -> Any:
    """Each update times its parameter's multiplier. `lr_multipliers` is a prefix of `updates`' structure: a float
    scales the whole subtree under it (a None, or optax's `MaskedNode`, stays as it is)."""

    def scale(multiplier: float, subtree: Any) -> Any:
        if multiplier == 1:
            return subtree
        return jax.tree.map(lambda u: u * multiplier, subtree)

    try:
        return jax.tree.map(scale, lr_multipliers, updates)
    except (TypeError, ValueError) as err:
        raise ValueError(
            "The updates (the parameters' pytree) must have the structure of `lr_multipliers`, the specs' that "
            f"`jinit.mup` read ({str(err).splitlines()[0] if str(err) else type(err).__name__}). "
            f"Received: lr_multipliers={checks.show(lr_multipliers)}"
        ) from None


def mup_scale(lr_multipliers: Any) -> Any:
    """Builds an optax transformation that multiplies each parameter's update by its muP learning-rate multiplier.

    Chained after an optimizer, it gives each parameter the learning rate ``learning_rate * multiplier``:
    ``optax.chain(optax.adam(learning_rate), jinit.mup_scale(result))`` is microsoft/mup's ``MuAdam`` and
    ``optax.chain(optax.sgd(learning_rate, momentum), jinit.mup_scale(result))`` its ``MuSGD`` (SGD and its
    momentum are linear in the learning rate). After `optax.adamw` it also multiplies the decoupled weight
    decay, so that the decay per step is ``learning_rate * multiplier * weight_decay``: ``MuAdamW`` keeps it at
    the base's ``learning_rate * weight_decay`` instead, which `mu_adamw` does. The transformation keeps no state
    and keeps the updates' dtypes.

    Args:
      lr_multipliers: what `jinit.mup` returned (a `MuP`, or a `DepthMuP` of `jinit.mup_depth`), or its
        `lr_multipliers`: a pytree of positive numbers with the parameters' structure, or a prefix of it (a
        number then scales every update under it).

    Returns:
      An `optax.GradientTransformation`. Its `init` and `update` raise a ValueError when the parameters or
      updates do not have the multipliers' structure.

    Raises:
      TypeError, ValueError: a multiplier is not a positive finite number.
      ImportError: optax is not installed.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jinit
      >>> scale = jinit.mup_scale({"hidden": 0.25, "out": 1.0})
      >>> updates = {"hidden": jnp.ones(2), "out": jnp.ones(2)}
      >>> scaled, _ = scale.update(updates, scale.init(updates))
      >>> print(scaled["hidden"], scaled["out"])
      [0.25 0.25] [1. 1.]
    """
    optax = _optax()
    checked = multipliers(lr_multipliers)

    def init_fn(params: Any) -> Any:
        scale_updates(checked, params)  # the structure, checked once (abstractly under a trace)
        return optax.EmptyState()

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        return scale_updates(checked, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def _weight_decay(weight_decay: Any) -> Any:
    """A weight decay: a non-negative number, or a schedule (a callable of the step)."""
    if callable(weight_decay):
        return weight_decay
    return checks.number("weight_decay", weight_decay, minimum="nonnegative")


def mu_adam(
    learning_rate: Any,
    lr_multipliers: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> Any:
    """Builds `optax.adam` with muP's learning rates: microsoft/mup's ``MuAdam``.

    Each parameter's update is ``-learning_rate * multiplier * adam_step``, with ``adam_step`` optax's
    ``scale_by_adam`` (the bias-corrected ``m / (sqrt(v) + eps)``): ``optax.chain(optax.adam(...),
    jinit.mup_scale(lr_multipliers))``. Build the multipliers with ``jinit.mup(..., optimizer="adam")``.

    Args:
      learning_rate: the base model's tuned learning rate, a number or an optax schedule.
      lr_multipliers: a `MuP` or `DepthMuP`, or its `lr_multipliers` (see `mup_scale`).
      b1, b2, eps, eps_root, mu_dtype, nesterov: as `optax.adam`'s.

    Returns:
      An `optax.GradientTransformation`.

    Raises:
      TypeError, ValueError: a multiplier is not a positive finite number.
      ImportError: optax is not installed.

    Examples:
      >>> import jax.numpy as jnp, jinit
      >>> optimizer = jinit.mu_adam(1e-2, {"w": 0.25})
      >>> params = {"w": jnp.zeros(3)}
      >>> updates, _ = optimizer.update({"w": jnp.ones(3)}, optimizer.init(params), params)
      >>> print(updates["w"].round(6))  # Adam's first step is the gradient's sign: -1e-2 * 0.25 * 1
      [-0.0025 -0.0025 -0.0025]
    """
    optax = _optax()
    return optax.chain(
        optax.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        mup_scale(lr_multipliers),
        optax.scale_by_learning_rate(learning_rate),
    )


def mu_adamw(
    learning_rate: Any,
    lr_multipliers: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
    scale_weight_decay: bool = False,
) -> Any:
    """Builds `optax.adamw` with muP's learning rates: microsoft/mup's ``MuAdamW``.

    ``MuAdamW`` gives each group of parameters the learning rate ``learning_rate * multiplier`` and the weight
    decay ``weight_decay / multiplier``, so PyTorch's AdamW, which decays by ``lr * weight_decay`` a step, decays
    every parameter by the base's ``learning_rate * weight_decay`` whatever the width. So here the update is

        -learning_rate * (multiplier * adam_step + weight_decay * param)

    ``optax.chain(scale_by_adam, jinit.mup_scale(m), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(learning_rate))``. With ``scale_weight_decay=True`` the multiplier scales the decay
    too, ``-learning_rate * multiplier * (adam_step + weight_decay * param)``: ``optax.chain(optax.adamw(...),
    jinit.mup_scale(m))``, or ``MuAdamW(decoupled_wd=True)`` of later mup releases on PyTorch's AdamW.

    Args:
      learning_rate: the base model's tuned learning rate, a number or an optax schedule.
      lr_multipliers: a `MuP` or `DepthMuP`, or its `lr_multipliers` (see `mup_scale`); build them with
        ``jinit.mup(..., optimizer="adam")``.
      b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov: as `optax.adamw`'s.
      scale_weight_decay: whether the multiplier scales the weight decay too (see above).

    Returns:
      An `optax.GradientTransformation`.

    Raises:
      TypeError, ValueError: a multiplier is not a positive finite number, `weight_decay` is negative, or
        `scale_weight_decay` is not a boolean.
      ImportError: optax is not installed.

    Examples:
      >>> import jax.numpy as jnp, jinit
      >>> optimizer = jinit.mu_adamw(1e-2, {"w": 0.25}, weight_decay=0.5)
      >>> params = {"w": jnp.full(2, 2.0)}
      >>> updates, _ = optimizer.update({"w": jnp.ones(2)}, optimizer.init(params), params)
      >>> print(updates["w"].round(6))  # -1e-2 * (0.25 * sign(1) + 0.5 * 2.0)
      [-0.0125 -0.0125]
    """
    optax = _optax()
    weight_decay = _weight_decay(weight_decay)
    scale_decay = checks.boolean("scale_weight_decay", scale_weight_decay)
    adam = optax.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)
    scale, decay = mup_scale(lr_multipliers), optax.add_decayed_weights(weight_decay, mask)
    steps = (adam, decay, scale) if scale_decay else (adam, scale, decay)
    return optax.chain(*steps, optax.scale_by_learning_rate(learning_rate))


def mu_sgd(
    learning_rate: Any,
    lr_multipliers: Any,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
    *,
    weight_decay: Any = 0.0,
    mask: Any = None,
    scale_weight_decay: bool = False,
) -> Any:
    """Builds `optax.sgd` with muP's learning rates and PyTorch's L2 weight decay: microsoft/mup's ``MuSGD``.

    PyTorch's SGD adds ``weight_decay * param`` to the gradient before the momentum; ``MuSGD`` gives each group the
    learning rate ``learning_rate * multiplier`` and the decay ``weight_decay / multiplier``, so the decay's part of
    the step keeps the base's size. Momentum being linear, the update is

        -learning_rate * trace(multiplier * grad + weight_decay * param)

    ``optax.chain(jinit.mup_scale(m), add_decayed_weights(weight_decay, mask), trace(momentum, nesterov),
    scale_by_learning_rate(learning_rate))``; with ``scale_weight_decay=True``, ``-learning_rate * multiplier *
    trace(grad + weight_decay * param)``. Without weight decay it is ``optax.chain(optax.sgd(...),
    jinit.mup_scale(m))``. Build the multipliers with ``jinit.mup(..., optimizer="sgd")``: SGD's differ from Adam's.

    Args:
      learning_rate: the base model's tuned learning rate, a number or an optax schedule.
      lr_multipliers: a `MuP` or `DepthMuP`, or its `lr_multipliers` (see `mup_scale`).
      momentum, nesterov, accumulator_dtype: as `optax.sgd`'s.
      weight_decay: PyTorch SGD's (L2) weight decay, a non-negative number or a schedule; 0 for none.
      mask: as `optax.add_decayed_weights`'s: which parameters decay.
      scale_weight_decay: whether the multiplier scales the weight decay too (see above).

    Returns:
      An `optax.GradientTransformation`.

    Raises:
      TypeError, ValueError: a multiplier is not a positive finite number, `weight_decay` is negative, or
        `scale_weight_decay` is not a boolean.
      ImportError: optax is not installed.

    Examples:
      >>> import jax.numpy as jnp, jinit
      >>> optimizer = jinit.mu_sgd(0.1, {"w": 4.0})
      >>> params = {"w": jnp.zeros(2)}
      >>> updates, _ = optimizer.update({"w": jnp.ones(2)}, optimizer.init(params), params)
      >>> print(updates["w"])
      [-0.4 -0.4]
    """
    optax = _optax()
    weight_decay = _weight_decay(weight_decay)
    scale_decay = checks.boolean("scale_weight_decay", scale_weight_decay)
    scale = mup_scale(lr_multipliers)
    steps = []
    if callable(weight_decay) or weight_decay > 0:
        decay = optax.add_decayed_weights(weight_decay, mask)
        steps = [decay, scale] if scale_decay else [scale, decay]
    else:
        steps = [scale]
    if momentum is not None:
        steps.append(optax.trace(momentum, nesterov, accumulator_dtype))
    return optax.chain(*steps, optax.scale_by_learning_rate(learning_rate))
