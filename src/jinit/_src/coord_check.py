"""The coordinate check of muP (Tensor Programs V, Section 7 and microsoft/mup's ``get_coord_data``): train a model
a few steps at several widths and record the size of its activations' coordinates, which a correct muP keeps
flat in the width. `coord_check` runs it, `CoordCheck` holds the numbers and draws them (matplotlib, imported
when drawing)."""

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import checks


@dataclasses.dataclass(frozen=True, eq=False)
class CoordCheck:
    """What `coord_check` returns: the mean absolute value of each activation, by width and step.

    Attributes:
      widths: the widths, increasing.
      names: the activations' names: their paths in what the forward pass returns, ``"hidden"``, ``"out/logits"``.
      scales: a float64 array of shape ``(len(widths), steps + 1, len(names))``: ``scales[i, t, j]`` is
        ``mean(abs(activation))`` of ``names[j]`` at ``widths[i]`` after ``t`` optimizer steps (``t = 0``: at
        initialization).
      losses: a float64 array of shape ``(len(widths), steps + 1)``: the loss at the same points.
    """

    widths: tuple[int, ...]
    names: tuple[str, ...]
    scales: np.ndarray
    losses: np.ndarray

    def scale(self, name: str) -> np.ndarray:
        """The scales of the activation `name`, an array of shape ``(len(widths), steps + 1)``."""
        return self.scales[:, :, self._index(name)]

    def slope(self, name: str, step: int = -1) -> float:
        """How the activation's scale grows with the width at `step` (the last by default): the least-squares slope
        of ``log(scale)`` against ``log(width)``. 0 is flat, as muP wants; 1 grows as the width does."""
        if len(self.widths) < 2:
            raise ValueError(f"A slope needs at least two widths. Received: widths={self.widths}")
        steps = self.scales.shape[1]
        step = checks.integer("step", step)
        if not -steps <= step < steps:
            raise ValueError(f"Argument `step` must be in [-{steps}, {steps}). {checks.received('step', step)}")
        x, y = np.log(self.widths), np.log(self.scale(name)[:, step])
        return float(np.polyfit(x, y, 1)[0])

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(
                f"Argument `name` must be one of {', '.join(map(repr, self.names))}. {checks.received('name', name)}"
            )
        return self.names.index(name)

    def plot(self, path: Any = None, *, axes: Sequence[Any] | None = None, title: str | None = None) -> Any:
        """Draws each activation's scale against the width, one line per step (dark to light), on log-log axes.

        Args:
          path: None, or a file to save the figure to (any format matplotlib writes: ``"coord.png"``).
          axes: None, or one matplotlib ``Axes`` per name to draw on; by default a new figure of one row.
          title: a title for the figure, or None.

        Returns:
          The matplotlib ``Figure``.

        Raises:
          ImportError: matplotlib is not installed (``pip install 'jinit[plot]'``).
          ValueError: `axes` does not hold one ``Axes`` per name.
        """
        try:
            from matplotlib import colormaps, ticker
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(
                "Drawing needs matplotlib: pip install 'jinit[plot]' (or pip install matplotlib)"
            ) from None
        if axes is None:
            figure = Figure(figsize=(3.6 * len(self.names), 3.2), constrained_layout=True)
            axes = list(np.atleast_1d(figure.subplots(1, len(self.names), squeeze=False)[0]))
        else:
            axes = list(axes)
            if len(axes) != len(self.names):
                raise ValueError(
                    f"Argument `axes` must hold one Axes per name ({len(self.names)}). {checks.received('axes', axes)}"
                )
            figure = axes[0].get_figure()
        steps = self.scales.shape[1]
        colors = colormaps["viridis"]
        for ax, name in zip(axes, self.names, strict=True):
            for t in range(steps):
                ax.plot(self.widths, self.scale(name)[:, t], color=colors(t / max(steps - 1, 1)), marker="o", ms=3)
            ax.set(xscale="log", yscale="log", title=name, xlabel="width", ylabel="mean |x|")
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.set_xticks(self.widths, [str(w) for w in self.widths])
        if title is not None:
            figure.suptitle(title)
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure


def coord_check(
    model: Callable[[int], tuple[Any, Callable[..., Any], Any]],
    widths: Sequence[int],
    batch: Any,
    *,
    steps: int = 3,
) -> CoordCheck:
    """Runs muP's coordinate check: trains the model a few steps at each width and records its activations' scales.

    At each width, ``params, forward, optimizer = model(width)``; then `steps` times: the loss and activations of
    ``forward(params, batch)``, its gradient, and an optimizer step (``updates, state = optimizer.update(grads,
    state, params)``, ``params + updates``); then the activations once more. Each activation's scale is
    ``mean(abs(x))`` (in float32), as microsoft/mup's coordinate check records it. Under muP the scales stay where
    the narrowest model has them at every step, while under the standard parametrization they grow with the
    width after the first step (Tensor Programs V, Figure 5); `CoordCheck.slope` measures it and
    `CoordCheck.plot` draws it.

    Args:
      model: a function of the width that returns ``(params, forward, optimizer)``: the initialized parameters
        (e.g. ``jinit.init_tree(key, jinit.mup(base, target).specs)``), the forward pass ``forward(params, batch)
        -> (loss, activations)`` with a scalar loss and a dict (any pytree) of the activations to record, and an
        optax ``GradientTransformation`` (or anything with its ``init`` and ``update``), e.g. `mu_adam`'s.
      widths: the widths, an increasing sequence of positive ints (any size works: depths for Depth-muP).
      batch: the batch given to `forward` at every step (any pytree).
      steps: how many optimizer steps to take, a non-negative int.

    Returns:
      A `CoordCheck`.

    Raises:
      TypeError: `model` is not callable, or does not return ``(params, forward, optimizer)``; `forward` does
        not return a scalar loss and a pytree of arrays.
      ValueError: `widths` is empty or not increasing, `steps` is negative, or the activations' names differ
        between widths.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jinit
      >>> def model(width):
      ...     params = jinit.init_tree(jax.random.key(0), {"w": jinit.ParamSpec((4, width), jinit.lecun_normal())})
      ...     def forward(params, x):
      ...         h = x @ params["w"]
      ...         return jnp.mean(h**2), {"h": h}
      ...     return params, forward, optax.sgd(0.1)
      >>> check = jinit.coord_check(model, [8, 16], jnp.ones((2, 4)), steps=2)
      >>> check.names, check.scales.shape
      (('h',), (2, 3, 1))
    """
    if not callable(model):
        raise TypeError(f"Argument `model` must be a function of the width. {checks.received('model', model)}")
    widths = _widths(widths)
    steps = checks.integer("steps", steps, minimum="nonnegative")
    names, scales, losses = None, [], []
    for width in widths:
        params, forward, optimizer = _built(model, width)
        width_names = _names(forward, params, batch, width)
        if names is not None and width_names != names:
            raise ValueError(
                f"The forward pass must return the same activations at every width; at width {width} they are "
                f"{width_names}, at width {widths[0]} {names}. Received: widths={widths}"
            )
        names = width_names
        step, measure = _programs(forward, optimizer, batch)
        state = optimizer.init(params)
        rows, row_losses = [], []
        for _ in range(steps):
            params, state, loss, row = step(params, state)
            rows.append(row)
            row_losses.append(loss)
        loss, row = measure(params)
        rows.append(row)
        row_losses.append(loss)
        scales.append(np.asarray(jax.device_get(rows), np.float64))
        losses.append(np.asarray(jax.device_get(row_losses), np.float64))
    return CoordCheck(widths, tuple(names or ()), np.stack(scales), np.stack(losses))


def _widths(value: Any) -> tuple[int, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise TypeError(
            f"Argument `widths` must be a non-empty sequence of positive ints. {checks.received('widths', value)}"
        )
    widths = tuple(checks.integer("widths", w, minimum="positive") for w in value)
    if any(a >= b for a, b in itertools.pairwise(widths)):
        raise ValueError(f"Argument `widths` must be increasing. {checks.received('widths', value)}")
    return widths


def _built(model: Callable[..., Any], width: int) -> tuple[Any, Any, Any]:
    built = model(width)
    if not (isinstance(built, tuple) and len(built) == 3):
        raise TypeError(
            f"Argument `model` must return `(params, forward, optimizer)`; at width {width} it returned "
            f"{checks.show(built)}"
        )
    params, forward, optimizer = built
    if not callable(forward) or not (callable(getattr(optimizer, "init", None)) and callable(optimizer.update)):
        raise TypeError(
            f"Argument `model` must return `(params, forward, optimizer)` with a callable forward pass and an optax "
            f"GradientTransformation; at width {width} it returned forward={checks.show(forward)}, "
            f"optimizer={checks.show(optimizer)}"
        )
    return params, forward, optimizer


def _names(forward: Callable[..., Any], params: Any, batch: Any, width: int) -> tuple[str, ...]:
    """The activations' names, from the forward pass's abstract output (nothing is computed)."""
    out = jax.eval_shape(forward, params, batch)
    ok = isinstance(out, tuple) and len(out) == 2 and getattr(out[0], "shape", None) == ()
    leaves = jax.tree_util.tree_leaves_with_path(out[1]) if ok else []
    if not ok or not leaves or not all(hasattr(x, "shape") for _, x in leaves):
        raise TypeError(
            f"The forward pass must return `(loss, activations)`: a scalar loss and a pytree of arrays; at width "
            f"{width} it returns {checks.show(out)}"
        )
    return tuple(jax.tree_util.keystr(keys, simple=True, separator="/") for keys, _ in leaves)


def _programs(forward: Callable[..., Any], optimizer: Any, batch: Any) -> tuple[Callable, Callable]:
    """The compiled step (loss, scales, then an update) and measure (loss, scales) of one width."""

    def scales(activations: Any) -> jax.Array:
        return jnp.stack([jnp.mean(jnp.abs(x.astype(jnp.float32))) for x in jax.tree.leaves(activations)])

    @jax.jit
    def step(params: Any, state: Any) -> tuple[Any, Any, jax.Array, jax.Array]:
        (loss, activations), grads = jax.value_and_grad(forward, has_aux=True)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        params = jax.tree.map(
            lambda p, u: p if u is None else (p + u).astype(p.dtype), params, updates, is_leaf=lambda x: x is None
        )
        return params, state, loss, scales(activations)

    @jax.jit
    def measure(params: Any) -> tuple[jax.Array, jax.Array]:
        loss, activations = forward(params, batch)
        return loss, scales(activations)

    return step, measure
