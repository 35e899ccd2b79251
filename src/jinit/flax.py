"""Flax models initialized by jinit's engine, unchanged: `init` for linen modules, `build` for NNX constructors.

Both trace the model's initialization once (never running its forward pass's arithmetic) and draw every
parameter that a jinit initializer makes with jinit's engine, as `jinit.init_tree` draws a tree: bitwise the
values that ``module.init`` or the eager constructor gives, compiled once per distinct (initializer, shape,
dtype, sharding) rather than per layer, each parameter created already sharded when its metadata and a mesh say
so. Layers stacked by ``nn.scan``, ``nn.vmap``, ``nnx.vmap`` or ``nnx.scan`` (nested, under ``nn.remat`` too)
are drawn the same way, one compiled kernel per distinct stacked parameter whatever the depth, with the
stacked axis where Flax puts it. So are the draws of JAX's own random initializers (``jax.nn.initializers``,
Flax's default ``lecun_normal``: `jinit._src.jax_draws`), bitwise their eager values; parameters that other
initializers make are computed as JAX computes them, with the model's other state.

`initializer` and `builder` return reusable objects that trace once per input signature and draw on each call,
as ``jax.jit(module.init)`` does: a second initialization (another key, an ensemble under ``jax.vmap``) traces
and compiles nothing. Flax is imported when these are called, never by ``import jinit``
(``pip install 'jinit[flax]'``).

One Flax internal is relied on: NNX's ordering of a state's leaves for ``nnx.merge``
(``graphlib._merge_to_flat_state``), so that a built module is merged from a list rather than a `State`, whose
flattening leaves a reference cycle holding the parameters (`_in_merge_order`). It is checked once per process
on a small module (`_merge_order_works`); a Flax that moved or changed it merges the state, as before: the
model is the same, and freed at the next garbage collection.
"""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from jinit._src import checks, plan
from jinit._src.tree import Progress


class ModelInit:
    """A linen module's ``init``, traced once per input signature and drawn by jinit's engine on every call.

    Made by `initializer`; call it as ``module.init``: ``init(rngs, *args, progress=None, **kwargs)``. It keeps
    the plans of at most `jinit._src.plan.MAX_PLANS` input signatures (shapes, dtypes, static arguments), in the
    object itself.
    """

    def __init__(self, module: Any, mesh: Mesh | None, path_keys: bool) -> None:
        import flax.linen as nn

        if not isinstance(module, nn.Module):
            raise TypeError(
                f"Argument `module` must be a `flax.linen.Module` (for NNX, see `jinit.flax.build`). "
                f"{checks.received('module', module)}"
            )
        self.module, self.path_keys = module, checks.boolean("path_keys", path_keys)
        self.planned = plan.Planned(
            module.init,
            mesh=checks.mesh(mesh),
            boxed=lambda x: isinstance(x, nn.meta.AxisMetadata),
            spec_of=_linen_spec,
            what=f"{type(module).__name__}'s variables",
        )

    def __call__(
        self,
        rngs: Any,
        *args: Any,
        progress: Callable[[Progress], None] | None = None,
        existing: Any = None,
        **kwargs: Any,
    ) -> Any:
        root = _params_key(rngs) if self.path_keys else None
        return self.planned((rngs, *args), kwargs, root=root, progress=progress, existing=existing)

    def drawn(self, rngs: Any, *args: Any, **kwargs: Any) -> list[str]:
        """The paths of the variables that the engine draws for these arguments (the others are computed as
        Flax computes them)."""
        return self.planned.plan((rngs, *args), kwargs).drawn


def initializer(module: Any, *, mesh: Mesh | None = None, path_keys: bool = False) -> ModelInit:
    """A reusable ``module.init`` drawn by jinit's engine: traced once per input signature, like ``jax.jit``.

    ``init = jinit.flax.initializer(module)`` then ``init(rngs, *args, **kwargs)`` as often as needed: the
    first call with given input shapes traces the module and plans its parameters, later calls (another key,
    ``jax.vmap`` over keys for an ensemble) only derive the keys and draw. See `init` for the values and the
    arguments.

    Args:
      module: a `flax.linen.Module`.
      mesh: the mesh of the partitioned parameters, as in `init`.
      path_keys: as in `init`.

    Returns:
      A `ModelInit`, called as ``module.init``.

    Raises:
      TypeError: `module` is not a linen module.

    Examples:
      >>> import flax.linen as nn, jax, jax.numpy as jnp, jinit, jinit.flax
      >>> init = jinit.flax.initializer(nn.Dense(3, kernel_init=jinit.glorot_uniform()))
      >>> x = jnp.ones((2, 4))
      >>> a, b = init(jax.random.key(0), x), init(jax.random.key(1), x)  # traced once
      >>> ensemble = jax.vmap(init, in_axes=(0, None))(jax.random.split(jax.random.key(2), 5), x)
      >>> ensemble["params"]["kernel"].shape
      (5, 4, 3)
    """
    return ModelInit(module, mesh, path_keys)


def init(
    module: Any,
    rngs: Any,
    *args: Any,
    mesh: Mesh | None = None,
    path_keys: bool = False,
    progress: Callable[[Progress], None] | None = None,
    existing: Any = None,
    **kwargs: Any,
) -> Any:
    """The variables of ``module.init(rngs, *args, **kwargs)``, with jinit's initializers drawn by its engine.

    The result has the structure of ``module.init``'s, boxes (``nn.Partitioned``, ``nn.LogicallyPartitioned``)
    included, and bitwise its values: every parameter made by a jinit initializer, or by a random initializer of
    ``jax.nn.initializers``, is drawn by the engine from the key Flax gave it, stacked layers (``nn.scan``,
    ``nn.vmap``) included; the others, and every other collection, are computed as Flax computes them, without
    the forward pass's arithmetic. Works under `jax.jit` and `jax.eval_shape`. For repeated initialization,
    `initializer` keeps the trace.

    With a mesh (`mesh=` or the mesh set by `jax.set_mesh`), a parameter boxed by `nn.with_partitioning` (or
    `nn.with_logical_partitioning`, with the logical axis rules in effect at the call; a scanned one with the
    axis name of ``metadata_params``) is created with its sharding, each device generating only its own shard;
    with `mesh=`, the others are replicated over it.

    Args:
      module: a `flax.linen.Module`.
      rngs: its PRNG key, or a dict of keys by stream name, as ``module.init`` takes them.
      *args: what ``module.init`` takes after `rngs` (the inputs).
      **kwargs: its keyword arguments (``method=``, ``mutable=``, inputs by name, ...).
      mesh: the mesh of the partitioned parameters.
      path_keys: draw each jinit parameter from ``jinit.path_key(key, path)`` (`key` the ``"params"`` key,
        `path` such as ``"params/Dense_0/kernel"``; a stacked parameter's layer ``i`` from that key folded with
        ``i``) instead of the key Flax derives from the module's structure, so that adding a layer leaves every
        other layer's values unchanged. The values then differ from ``module.init``'s.
      progress: as in `jinit.init_tree`.
      existing: None, or the variables that already exist (restored from a checkpoint), as ``module.init``
        returns them (``{"params": ...}``, boxed or not): a variable is missing where it is None or its dict
        key is absent. Only the missing ones are drawn or computed, bitwise as without `existing`; the given
        arrays are passed through, after their shape, dtype and sharding are checked. See
        `jinit.init_tree`.

    Returns:
      The variables, as ``module.init`` returns them.

    Raises:
      TypeError: `module` is not a linen module.
      ValueError: a partition spec does not fit its parameter, or names an axis the mesh lacks; a parameter's
        shape depends on the values of the inputs.

    Examples:
      >>> import flax.linen as nn, jax, jax.numpy as jnp, jinit, jinit.flax
      >>> model = nn.Dense(3, kernel_init=jinit.glorot_uniform())
      >>> x = jnp.ones((2, 4))
      >>> variables = jinit.flax.init(model, jax.random.key(0), x)
      >>> same = jax.tree.map(jnp.array_equal, variables, model.init(jax.random.key(0), x))
      >>> all(jax.tree.leaves(same))
      True
    """
    return initializer(module, mesh=mesh, path_keys=path_keys)(
        rngs, *args, progress=progress, existing=existing, **kwargs
    )


class ModelBuild:
    """An NNX constructor, traced once per input signature and drawn by jinit's engine on every call.

    Made by `builder`; call it as the constructor: ``build(*args, progress=None, **kwargs)`` returns the module.
    """

    def __init__(self, constructor: Callable[..., Any], mesh: Mesh | None) -> None:
        from flax import nnx

        if not callable(constructor):
            raise TypeError(f"Argument `constructor` must be callable. {checks.received('constructor', constructor)}")
        mesh = checks.mesh(mesh)
        traced: list[Any] = []  # the graph definition of the module each trace made, read after the trace

        def state(*args: Any, **kwargs: Any) -> Any:
            meshed = mesh is not None or not checks.current_mesh().empty
            # on a mesh, the engine creates each variable with its sharding (Flax's eager sharding would constrain
            # the traced value, which then is no longer what the initializer made)
            with nnx.use_eager_sharding(nnx.using_eager_sharding() and not meshed):
                module = constructor(*args, **kwargs)
            if not isinstance(module, nnx.Module):
                raise TypeError(
                    f"Argument `constructor` must return an `nnx.Module`. {checks.received('constructor()', module)}"
                )
            graphdef, variables = nnx.split(module)
            traced.append(graphdef)
            return variables

        self.planned = plan.Planned(
            state,
            mesh=mesh,
            boxed=lambda x: isinstance(x, nnx.Variable),
            spec_of=_nnx_spec,
            what="the module's variables",
            side=lambda: traced.pop(),
        )

    def __call__(
        self, *args: Any, progress: Callable[[Progress], None] | None = None, existing: Any = None, **kwargs: Any
    ) -> Any:
        from flax import nnx

        planned, variables = self.planned.run(args, kwargs, progress=progress, existing=existing)
        return nnx.merge(planned.side, _in_merge_order(variables) if _merge_order_works() else variables)

    def drawn(self, *args: Any, **kwargs: Any) -> list[str]:
        """The paths of the variables that the engine draws for these arguments."""
        return self.planned.plan(args, kwargs).drawn


def builder(constructor: Callable[..., Any], *, mesh: Mesh | None = None) -> ModelBuild:
    """A reusable NNX constructor drawn by jinit's engine: traced once per input signature, like ``nnx.jit``.

    ``build = jinit.flax.builder(Model)`` then ``build(*args)`` as often as needed; see `build`. Pass what
    varies between calls as arrays (a key, or ``jnp.int32(seed)``): a Python number is part of the signature,
    so a new one traces again.

    Args:
      constructor: a callable that returns an `nnx.Module`.
      mesh: the mesh of the partitioned variables, as in `build`.

    Returns:
      A `ModelBuild`, called as the constructor.

    Examples:
      >>> import jax, jinit, jinit.flax
      >>> from flax import nnx
      >>> build = jinit.flax.builder(lambda key: nnx.Linear(4, 3, kernel_init=jinit.he_normal(),
      ...                                                     rngs=nnx.Rngs(key)))
      >>> a, b = build(jax.random.key(0)), build(jax.random.key(1))  # traced once
      >>> a.kernel.shape
      (4, 3)
    """
    return ModelBuild(constructor, mesh)


def build(
    constructor: Callable[..., Any],
    *args: Any,
    mesh: Mesh | None = None,
    progress: Callable[[Progress], None] | None = None,
    existing: Any = None,
    **kwargs: Any,
) -> Any:
    """The NNX module ``constructor(*args, **kwargs)``, its jinit parameters drawn by jinit's engine.

    The constructor is traced once, as `nnx.eval_shape` traces it (nothing of the model is allocated while
    tracing); then every variable made by a jinit initializer, or by a random initializer of
    ``jax.nn.initializers`` (NNX's defaults), is drawn by the engine from the key the constructor's ``nnx.Rngs``
    gave it, layers stacked by ``nnx.vmap`` or ``nnx.scan`` included, and the other variables are computed as the
    constructor computes them. The values are bitwise those of calling the
    constructor eagerly. For models too large to build eagerly: no device holds more than the model's own
    parameters. For repeated construction, `builder` keeps the trace.

    Create the `nnx.Rngs` inside the constructor (``lambda: Model(rngs=nnx.Rngs(0))``), as with
    `nnx.eval_shape`: an `nnx.Rngs` passed in is not advanced.

    With a mesh (`mesh=` or the mesh set by `jax.set_mesh`), a variable whose initializer carries partitioning
    metadata (`nnx.with_partitioning`, ``out_sharding``) is created with its sharding, each device generating
    only its own shard; with `mesh=`, the others are replicated over it. The variables' metadata is the
    constructor's, except that on a mesh ``eager_sharding`` is False (the engine applied the sharding).

    Args:
      constructor: a callable that returns an `nnx.Module` (a module class, or a function).
      *args: its positional arguments.
      **kwargs: its keyword arguments.
      mesh: the mesh of the partitioned variables.
      progress: as in `jinit.init_tree`.
      existing: None, or the variables that already exist (restored from a checkpoint): an `nnx.State`
        (``nnx.state(model, nnx.Param)``) or its pure dict (``nnx.to_pure_dict``), matched by path
        (``"embed/embedding"``); a variable is missing where it is None or absent (the RNG state, a new head).
        Only the missing ones are drawn or computed, bitwise as without `existing`; the given arrays are used
        as they are, after their shape, dtype and sharding are checked. See `jinit.init_tree`.

    Returns:
      The module.

    Examples:
      >>> import jax, jax.numpy as jnp, jinit, jinit.flax
      >>> from flax import nnx
      >>> make = lambda: nnx.Linear(4, 3, kernel_init=jinit.glorot_uniform(), rngs=nnx.Rngs(0))
      >>> model = jinit.flax.build(make)
      >>> bool(jnp.array_equal(model.kernel[...], make().kernel[...]))
      True
    """
    return builder(constructor, mesh=mesh)(*args, progress=progress, existing=existing, **kwargs)


def _in_merge_order(state: Any) -> list:
    """`state`'s leaves as the list that `nnx.merge` takes in its place, in the order Flax gives them (its own
    ordering, run on the state's structure with each leaf's index in its place).

    `nnx.merge` of a `State` flattens it with `nnx.traversals.flatten_to_sequence`, whose recursive closure is a
    reference cycle that holds every leaf: each model built would stay in memory after its last reference went,
    until Python's next garbage collection (a seed sweep's previous model with the next one, and its freeing
    counted in the next build's time). Of the list, Flax keeps no reference; the cycle holds only the indices.
    """
    from flax.nnx import graphlib

    leaves: list[Any] = []
    order = graphlib._merge_to_flat_state([_skeleton(state, leaves)])
    return [leaves[i] for i in order]


def _skeleton(mapping: Any, leaves: list[Any]) -> dict:
    """`mapping` as nested dicts of the same keys, each leaf replaced by its index in `leaves` (appended there)."""
    out = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out[key] = _skeleton(value, leaves)
        else:
            out[key] = len(leaves)
            leaves.append(value)
    return out


@functools.cache
def _merge_order_works() -> bool:
    """Whether `_in_merge_order` gives `nnx.merge` what the state gives it (checked once per process on a small
    module of nested modules, a list and attributes out of order; a Flax that changed merges the state, as
    before)."""
    try:
        from flax import nnx

        class Inner(nnx.Module):
            def __init__(self, n: int) -> None:
                self.z, self.a = nnx.Param(np.full(n, 1.0)), nnx.BatchStat(np.full(n, 2.0))

        class Outer(nnx.Module):
            def __init__(self) -> None:
                self.layers = nnx.List([Inner(n) for n in range(1, 12)])
                self.b, self.a = nnx.Param(np.zeros(3)), Inner(20)

        graphdef, state = nnx.split(Outer())
        built = [nnx.merge(graphdef, _in_merge_order(state)), nnx.merge(graphdef, state)]
        ours, theirs = (jax.tree.leaves(nnx.state(m), is_leaf=lambda x: isinstance(x, nnx.Variable)) for m in built)
        return len(ours) == 11 * 2 + 1 + 2 and all(a is b for a, b in zip(ours, theirs, strict=True))
    except Exception:  # a Flax without these: `nnx.merge` of the state
        return False


def _linen_spec(box: Any) -> Any:
    """A linen box's partition spec, logical axis names resolved by its rules or those in effect."""
    from flax.linen import spmd

    if isinstance(box, spmd.LogicallyPartitioned):
        return spmd.logical_to_mesh_axes(box.names, box.rules)
    return box.get_partition_spec() if hasattr(box, "get_partition_spec") else None


def _nnx_spec(variable: Any) -> Any:
    """A variable's partition spec from its ``out_sharding`` metadata (logical names resolved by its rules)."""
    names = variable.get_metadata().get("out_sharding")
    if names is None or isinstance(names, (PartitionSpec, jax.sharding.Sharding)):
        return names
    rules = variable.get_metadata().get("sharding_rules")
    if rules is not None:
        from flax.linen.spmd import logical_to_mesh_axes

        return logical_to_mesh_axes(names, rules)
    return PartitionSpec(*names)


def _params_key(rngs: Any) -> Any:
    """The ``"params"`` key of linen's `rngs`."""
    if isinstance(rngs, dict):
        if "params" not in rngs:
            raise ValueError(
                "With `path_keys=True`, `rngs` must have a 'params' key (the root of the parameters' keys). "
                f"{checks.received('rngs', rngs)}"
            )
        rngs = rngs["params"]
    return checks.key(rngs)
