"""Equinox models built by jinit's engine: `build` calls a constructor that takes keys, `builder` keeps its trace.

An Equinox module is a pytree whose array leaves are its parameters. A constructor that makes them with jinit
initializers from the keys it is given (``self.weight = jinit.he_normal()(key, (n_in, n_out))``, stacks of layers
made by ``eqx.filter_vmap`` of a constructor included) is traced once, as ``eqx.filter_eval_shape`` traces it
(nothing of the model is allocated while tracing); then every array a jinit initializer made is drawn by jinit's
engine from the key the constructor gave it, bitwise what calling the constructor eagerly gives, each one
created with the sharding the user's rules give its path, and so is every array a random initializer of
``jax.nn.initializers`` made, or that is JAX's draw itself (an ``eqx.nn.Linear``'s own uniform weight and bias:
`jinit._src.jax_draws`). Arrays made otherwise are computed as the constructor computes them. Equinox is
imported when these are called, never by
``import jinit`` (``pip install 'jinit[equinox]'``).
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh

from jinit._src import checks, plan
from jinit._src.tree import Progress


class ModuleBuild:
    """An Equinox constructor, traced once per input signature and drawn by jinit's engine on every call.

    Made by `builder`; call it as the constructor: ``build(*args, progress=None, **kwargs)`` returns the module
    (or what the constructor returns: a model and its state from ``eqx.nn.make_with_state``).
    """

    def __init__(self, constructor: Callable[..., Any], mesh: Mesh | None, shardings: Sequence[tuple]) -> None:
        import equinox as eqx

        if not callable(constructor):
            raise TypeError(f"Argument `constructor` must be callable. {checks.received('constructor', constructor)}")
        rules = checks.rules(shardings, "shardings", "PartitionSpec", checks.partition)
        statics: list[Any] = []  # the module's non-array part, as each trace made it

        def is_module(x: Any) -> bool:
            return isinstance(x, eqx.Module)

        def arrays(*args: Any, **kwargs: Any) -> Any:
            module = constructor(*args, **kwargs)
            if not any(map(is_module, jax.tree.leaves(module, is_leaf=is_module))):
                raise TypeError(
                    "Argument `constructor` must return an `eqx.Module`, or a pytree holding one (a model and its "
                    f"state, as `eqx.nn.make_with_state` makes them). {checks.received('constructor()', module)}"
                )
            params, static = eqx.partition(module, eqx.is_array)
            statics.append(static)
            return params

        def spec_at(path: str) -> Any:
            return next((spec for pattern, spec in rules if pattern.fullmatch(path)), None)

        self.planned = plan.Planned(
            arrays,
            mesh=checks.mesh(mesh),
            boxed=lambda x: False,
            spec_of=lambda x: None,
            what="the module's arrays",
            side=lambda: statics.pop(),
            spec_at=spec_at,
        )

    def __call__(
        self, *args: Any, progress: Callable[[Progress], None] | None = None, existing: Any = None, **kwargs: Any
    ) -> Any:
        import equinox as eqx

        planned, params = self.planned.run(args, kwargs, progress=progress, existing=existing)
        return eqx.combine(params, planned.side)

    def drawn(self, *args: Any, **kwargs: Any) -> list[str]:
        """The paths of the arrays that the engine draws for these arguments."""
        return self.planned.plan(args, kwargs).drawn


def builder(
    constructor: Callable[..., Any], *, mesh: Mesh | None = None, shardings: Sequence[tuple] = ()
) -> ModuleBuild:
    """A reusable Equinox constructor drawn by jinit's engine: traced once per input signature; see `build`.

    Pass the keys as arrays (``build(jax.random.key(1))``): a new key then traces nothing again.

    Args:
      constructor: a callable that returns an `eqx.Module` (a module class, or a function), or a pytree holding
        modules, such as ``eqx.nn.make_with_state(Model)``'s model and state.
      mesh: as in `build`.
      shardings: as in `build`.

    Returns:
      A `ModuleBuild`, called as the constructor.
    """
    return ModuleBuild(constructor, mesh, shardings)


def build(
    constructor: Callable[..., Any],
    *args: Any,
    mesh: Mesh | None = None,
    shardings: Sequence[tuple] = (),
    progress: Callable[[Progress], None] | None = None,
    existing: Any = None,
    **kwargs: Any,
) -> Any:
    """The Equinox module ``constructor(*args, **kwargs)``, its jinit arrays drawn by jinit's engine.

    The constructor is traced once (its arrays are never computed while tracing); every array a jinit initializer
    made from a key given to the constructor is then drawn by the engine, stacked layers (``eqx.filter_vmap``
    of a constructor over keys) by one compiled kernel each, and the other arrays are computed as the constructor
    computes them. The module is bitwise what ``constructor(*args, **kwargs)`` returns. For repeated
    construction, `builder` keeps the trace.

    With a mesh (`mesh=` or the mesh set by `jax.set_mesh`), each array is created with the sharding of the first
    of `shardings` whose regex matches its whole path (``"layers/0/weight"``, as `jinit.path_key` takes it), each
    device generating only its own shard; with `mesh=`, the arrays no rule matches are replicated over it.

    Args:
      constructor: a callable that returns an `eqx.Module`, or a pytree holding modules (such as
        ``eqx.nn.make_with_state(Model)``, whose ``(model, state)`` is then returned).
      *args: its positional arguments (its keys among them).
      **kwargs: its keyword arguments.
      mesh: the mesh of the partition specs.
      shardings: a sequence of ``(regex, PartitionSpec)`` pairs (a `Sharding` or None in place of a spec).
      progress: as in `jinit.init_tree`.
      existing: None, or the arrays that already exist (restored from a checkpoint): a module of this
        constructor's with None where an array is missing, or a nested dict of them, matched by path
        (``"layers/weight"``). Only the missing arrays are drawn or computed, bitwise as without `existing`;
        the given ones are used as they are, after their shape, dtype and sharding are checked.

    Returns:
      The module (or the pytree the constructor returns).

    Raises:
      TypeError: `constructor` is not callable or returns no `eqx.Module`; a rule is not a
        ``(regex, PartitionSpec)`` pair.
      ValueError: a rule's regex does not compile, or a spec does not fit its array.

    Examples:
      >>> import equinox as eqx, jax, jax.numpy as jnp, jinit, jinit.equinox
      >>> class Linear(eqx.Module):
      ...     weight: jax.Array
      ...     def __init__(self, key):
      ...         self.weight = jinit.glorot_uniform()(key, (4, 3))
      >>> model = jinit.equinox.build(Linear, jax.random.key(0))
      >>> bool(jnp.array_equal(model.weight, Linear(jax.random.key(0)).weight))
      True
    """
    return builder(constructor, mesh=mesh, shardings=shardings)(*args, progress=progress, existing=existing, **kwargs)
