"""jinit initializers as Haiku initializers: ``hk.Linear(3, w_init=jinit.haiku.to_haiku(jinit.he_normal()))``.

Haiku calls an initializer as ``init(shape, dtype)`` and supplies randomness through ``hk.next_rng_key()``;
`to_haiku` adapts a jinit initializer (or any ``init(key, shape, dtype)``) to that. `init` initializes a
transformed function's parameters with jinit's engine (`initializer` keeps its trace for repeated calls). Haiku
is imported when an adapted initializer is first called, never by ``import jinit``
(``pip install 'jinit[haiku]'``).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jinit._src import checks, plan
from jinit._src.base import Initializer
from jinit._src.tree import Progress
from jinit._src.typing import DTypeLike, InitializerLike, Shape


@dataclasses.dataclass(frozen=True)
class HaikuInitializer:
    """A jinit initializer called as Haiku calls initializers: ``init(shape, dtype)``.

    A value like the initializer it wraps: equal, hashable, printable and picklable. The key is
    ``hk.next_rng_key()``, so it must run inside a function transformed by ``hk.transform`` or
    ``hk.transform_with_state``; initializers that use no randomness (zeros, ones, constant, identity, ...)
    take no key, and so also work when ``init`` is given ``rng=None``.
    """

    init: InitializerLike

    def __call__(self, shape: Shape, dtype: DTypeLike = jnp.float32) -> jax.Array:
        import haiku as hk

        init = self.init
        if isinstance(init, Initializer) and init.keyless:
            return init(None, shape, dtype)
        try:
            key = hk.next_rng_key()
        except ValueError as err:  # outside a transform, or init given rng=None
            raise ValueError(
                f"{self!r} draws its key from `hk.next_rng_key()`: call it inside a function transformed by "
                f"`hk.transform` or `hk.transform_with_state`, and pass a key to `init` ({err})"
            ) from None
        return self.init(key, shape, dtype)


def to_haiku(init: InitializerLike) -> HaikuInitializer:
    """Adapts an initializer to Haiku: the result is called as ``init(shape, dtype)``, with ``hk.next_rng_key()``.

    Args:
      init: a jinit initializer, or any callable ``init(key, shape, dtype)`` such as `jax.nn.initializers`'.

    Returns:
      A `HaikuInitializer`, for ``w_init``/``b_init`` of Haiku's modules or ``hk.get_parameter``.

    Raises:
      TypeError: `init` is not callable.

    Examples:
      >>> import haiku as hk, jax, jax.numpy as jnp, jinit
      >>> from jinit.haiku import to_haiku
      >>> def forward(x):
      ...     return hk.Linear(3, w_init=to_haiku(jinit.glorot_uniform()), b_init=to_haiku(jinit.zeros))(x)
      >>> params = hk.transform(forward).init(jax.random.key(0), jnp.ones((2, 4)))
      >>> jax.tree.map(jnp.shape, params)
      {'linear': {'b': (3,), 'w': (4, 3)}}
    """
    return HaikuInitializer(checks.initializer("init", init))


class TransformedInit:
    """A transformed function's ``init``, traced once per input signature and drawn by jinit's engine on every
    call. Made by `initializer`; call it as ``f.init``: ``init(key, *args, progress=None, **kwargs)``."""

    def __init__(self, f: Any, mesh: jax.sharding.Mesh | None, path_keys: bool) -> None:
        if not callable(getattr(f, "init", None)):
            raise TypeError(
                "Argument `f` must be a transformed function (`hk.transform` or `hk.transform_with_state`). "
                f"{checks.received('f', f)}"
            )
        self.path_keys = checks.boolean("path_keys", path_keys)
        self.planned = plan.Planned(
            f.init,
            mesh=checks.mesh(mesh),
            boxed=lambda x: False,
            spec_of=lambda x: None,
            what="the parameters",
            strip=1 if type(f).__name__ == "TransformedWithState" else 0,  # (params, state): paths within each
        )

    def __call__(
        self,
        key: Any,
        *args: Any,
        progress: Callable[[Progress], None] | None = None,
        existing: Any = None,
        **kwargs: Any,
    ) -> Any:
        root = checks.key(key) if self.path_keys else None
        return self.planned((key, *args), kwargs, root=root, progress=progress, existing=existing)

    def drawn(self, key: Any, *args: Any, **kwargs: Any) -> list[str]:
        """The paths of the parameters that the engine draws for these arguments."""
        return self.planned.plan((key, *args), kwargs).drawn


def initializer(f: Any, *, mesh: jax.sharding.Mesh | None = None, path_keys: bool = False) -> TransformedInit:
    """A reusable ``f.init`` drawn by jinit's engine: traced once per input signature, like ``jax.jit(f.init)``.

    See `init` for the values and the arguments.

    Args:
      f: an ``hk.Transformed`` or ``hk.TransformedWithState``.
      mesh: as in `init`.
      path_keys: as in `init`.

    Returns:
      A `TransformedInit`, called as ``f.init``.

    Examples:
      >>> import haiku as hk, jax, jax.numpy as jnp, jinit, jinit.haiku
      >>> f = hk.transform(lambda x: hk.Linear(3, w_init=jinit.haiku.to_haiku(jinit.he_normal()))(x))
      >>> init = jinit.haiku.initializer(f)
      >>> a, b = init(jax.random.key(0), jnp.ones((2, 4))), init(jax.random.key(1), jnp.ones((2, 4)))
      >>> a["linear"]["w"].shape
      (4, 3)
    """
    return TransformedInit(f, mesh, path_keys)


def init(
    f: Any,
    key: Any,
    *args: Any,
    mesh: jax.sharding.Mesh | None = None,
    path_keys: bool = False,
    progress: Callable[[Progress], None] | None = None,
    existing: Any = None,
    **kwargs: Any,
) -> Any:
    """What ``f.init(key, *args, **kwargs)`` returns, with the parameters of jinit's initializers drawn by its engine.

    For ``hk.transform`` and ``hk.transform_with_state``: the function is traced once (its forward pass's
    arithmetic is never run); every parameter made by a `to_haiku` initializer is drawn by jinit's engine from
    the key ``hk.next_rng_key()`` gave it, bitwise as ``f.init`` makes it, compiled once per distinct
    (initializer, shape, dtype) rather than per layer, ``hk.layer_stack``'s stacked layers included (one kernel
    per stacked parameter, whatever the depth). So is a parameter of Haiku's own random initializers (its
    defaults, ``TruncatedNormal``, ``RandomNormal`` and ``RandomUniform`` without a mean, ``VarianceScaling``:
    `jinit._src.jax_draws`), bitwise their values (but a normal in ``hk.layer_stack``'s compiled body); the other
    parameters and the state are computed as Haiku computes them. Works under `jax.jit` and `jax.eval_shape`.
    For repeated initialization, `initializer` keeps the trace.

    Args:
      f: an ``hk.Transformed`` or ``hk.TransformedWithState``.
      key: the PRNG key ``f.init`` takes.
      *args: the inputs ``f.init`` takes after the key.
      **kwargs: its keyword inputs.
      mesh: a mesh over which every parameter is created replicated (Haiku's parameters carry no partitioning).
      path_keys: draw each jinit parameter from ``jinit.path_key(key, path)`` (`path` such as
        ``"mlp/~/linear_0/w"``; a stacked parameter's layer ``i`` from that key folded with ``i``) instead of
        Haiku's key sequence, so that adding a layer leaves every other layer's values unchanged. The values then
        differ from ``f.init``'s.
      progress: as in `jinit.init_tree`.
      existing: None, or the parameters that already exist (restored from a checkpoint), as ``f.init`` returns
        them (for ``transform_with_state``, a ``(params, state)`` pair): a parameter is missing where it is
        None or its dict key is absent. Only the missing ones are drawn or computed, bitwise as without
        `existing`; the given arrays are passed through, after their shape, dtype and sharding are checked.

    Returns:
      The parameters (and, for ``transform_with_state``, the state), as ``f.init`` returns them.

    Raises:
      TypeError: `f` has no ``init``.

    Examples:
      >>> import haiku as hk, jax, jax.numpy as jnp, jinit, jinit.haiku
      >>> f = hk.transform(lambda x: hk.Linear(3, w_init=jinit.haiku.to_haiku(jinit.he_normal()))(x))
      >>> x = jnp.ones((2, 4))
      >>> params = jinit.haiku.init(f, jax.random.key(0), x)
      >>> bool(jnp.array_equal(params["linear"]["w"], f.init(jax.random.key(0), x)["linear"]["w"]))
      True
    """
    return initializer(f, mesh=mesh, path_keys=path_keys)(key, *args, progress=progress, existing=existing, **kwargs)
