"""A framework's own model initialized by jinit's engine: its initialization traced once, its parameters drawn.

`initialize` runs a model's initialization (a linen ``module.init``, a Haiku ``f.init``, an NNX constructor)
as one `jax.jit` trace in which every call of a jinit initializer records itself (`base.CALLS`): initializer,
key, shape, dtype, sharding and result. An output leaf that *is* such a result (the parameter exactly as its
initializer made it, boxed in metadata or not) is drawn afterwards by the engine from the recorded key, as
`jinit.init_tree` draws a tree: bitwise what the call gives, grouped by (initializer, shape, dtype, sharding),
each parameter created with its sharding. The traced program returns only those keys and the other leaves
(other libraries' initializers, state, a parameter computed from an initializer's result), so XLA drops the
forward pass's arithmetic, and what it compiles grows with the parameters only by their key derivations.

Recording changes no value: a call made where it is not recorded (inside a `scan` or `vmap` of the model,
whose results are not output leaves) is simply part of the program, computed as JAX computes it.
"""

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.core import Tracer
from jax.extend import core as jex_core
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jinit._src import base, checks, tree


@dataclasses.dataclass
class _Plan:
    """What the trace found: the output's structure, and for each leaf its path, sharding and recorded call."""

    treedef: Any = None
    paths: list[str] = dataclasses.field(default_factory=list)
    shardings: list[Any] = dataclasses.field(default_factory=list)
    calls: list[base.Call | None] = dataclasses.field(default_factory=list)
    shapes: list[tuple[int, ...]] = dataclasses.field(default_factory=list)
    others: list[base.Call] = dataclasses.field(default_factory=list)
    flat: dict[int, Any] = dataclasses.field(default_factory=dict)
    """The sharding a claimed reshaped leaf is drawn with, in its call's shape (`_flat_sharding`), by leaf index."""


def initialize(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    mesh: Mesh | None,
    boxed: Callable[[Any], bool],
    spec_of: Callable[[Any], Any],
    root: Any = None,
    progress: Callable[[tree.Progress], None] | None = None,
    what: str = "the model",
    strip: int = 0,
) -> Any:
    """``fn(*args, **kwargs)``, with every output leaf that a jinit initializer made drawn by the engine.

    Args:
      fn: the initialization; its output is a pytree of arrays (boxes of metadata allowed).
      args, kwargs: its arguments; their arrays are traced, everything else is passed as is.
      mesh: the mesh of the parameters' partition specs (None: the current mesh, if any).
      boxed: whether an output node is a metadata box around one parameter (its path is the box's path).
      spec_of: a box's partition spec (a `PartitionSpec`, a `Sharding` or None).
      root: None, or a key: then each drawn parameter's key is ``jinit.path_key(root, path)`` instead of the
        key the framework gave it.
      progress: as in `jinit.init_tree`.
      what: how error messages name `fn`'s output.
      strip: how many leading components of the output's paths are not part of a parameter's path (1 for
        Haiku's ``(params, state)``).
    """
    mesh = checks.mesh(mesh)
    progress = checks.callback("progress", progress)
    leaves, structure = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = [i for i, leaf in enumerate(leaves) if isinstance(leaf, (jax.Array, np.ndarray, np.generic))]
    # without a mesh, partitioning metadata is only metadata, as for the framework's own initialization
    context = checks.current_mesh()
    meshed = mesh is not None or not context.empty
    # resolved here: inside the trace, the mesh set by `jax.set_mesh` is abstract
    spec_mesh = mesh if mesh is not None else context if meshed else None
    plan = _Plan()

    def program(arrays: list) -> tuple[list, list, list, list]:
        filled = list(leaves)
        for i, array in zip(dynamic, arrays[: len(dynamic)], strict=True):
            filled[i] = array
        call_args, call_kwargs = jax.tree_util.tree_unflatten(structure, filled)
        calls: list[base.Call] = []
        token = base.CALLS.set(calls)
        try:
            out = fn(*call_args, **call_kwargs)
        finally:
            base.CALLS.reset(token)
        _survey(plan, out, calls, spec_mesh, mesh is not None, boxed, spec_of if meshed else None, what, strip)
        kept = []
        for leaf, call, sharding in zip(jax.tree.leaves(out), plan.calls, plan.shardings, strict=True):
            if call is None:
                kept.append(leaf if sharding is None else jax.lax.with_sharding_constraint(leaf, sharding))
        keys = [call.key for call in plan.calls if call is not None] if root is None else []
        # Given a probe (a last argument), the program also returns the results of the calls no output leaf is,
        # and their keys: a leaf that the framework reshaped from one of them (`nn.DenseGeneral`'s kernel) is then
        # drawn by the engine too (`_reshaped`).
        probed = len(arrays) > len(dynamic)
        plan.others = _others(calls, plan.calls, arrays[-1]) if probed else []
        other_keys = [c.key for c in plan.others if c.key is not None] if root is None else []
        return kept, keys, [c.result for c in plan.others], other_keys

    arrays = [leaves[i] for i in dynamic]
    traced = any(isinstance(array, Tracer) for array in arrays) or isinstance(root, Tracer)
    if traced:  # under the user's trace: the program is part of theirs
        kept, keys, _, _ = program(arrays)
    elif not _evaluation_works():
        with _concrete_shapes(what):
            kept, keys, _, _ = jax.jit(program)(arrays)
    else:
        probe = [np.zeros((), np.float32)]  # a tracer of the program's own trace, to tell its calls' results
        with _concrete_shapes(what):
            closed = jax.make_jaxpr(program)(arrays + probe)
        kept, keys = _reshaped(plan, closed, arrays + probe, root is None)

    drawn = [(i, call) for i, call in enumerate(plan.calls) if call is not None]  # the parameters that the engine draws
    specs = [
        tree._Leaf(
            plan.paths[i],
            tree.ParamSpec(call.shape, call.init, call.dtype.name, None),
            plan.flat.get(i, plan.shardings[i]),
        )
        for i, call in drawn
    ]
    if root is not None:
        words = np.array([tree._words(checks.path(leaf.path)) for leaf in specs], np.uint32).reshape(-1, 2)
        if traced:
            values = tree.traced(specs, tree._derive(root, words)) if specs else []
        else:
            values = tree._eager(root, specs, words, progress) if specs else []
    else:
        values = tree.traced(specs, keys) if traced else tree.draw(specs, keys, progress)
    values, rest = iter(values), iter(kept)
    out = []
    for i, (call, shape) in enumerate(zip(plan.calls, plan.shapes, strict=True)):
        if call is None:
            out.append(next(rest))
            continue
        value = next(values).reshape(shape)
        if i in plan.flat and value.sharding != plan.shardings[i]:
            value = jax.device_put(value, plan.shardings[i])  # each device holds its block already (`_flat_sharding`)
        out.append(value)
    return jax.tree_util.tree_unflatten(plan.treedef, out)


def _flat_sharding(sharding: Any, shape: tuple[int, ...], flat: tuple[int, ...]) -> Any:
    """The sharding of an array of shape `flat` whose reshape to `shape` is laid out as `sharding` with the same
    shards on the same devices; None where there is none (a reshaped group of axes sharded past its first).

    A reshape groups axes whose sizes have equal products (``(d, n * h)`` and ``(d, n, h)``: ``{d}``, ``{n*h} ->
    {n, h}``). Sharding a group's first axis into ``k`` cuts the group's flattened elements into ``k`` contiguous
    blocks, as does sharding the other side's first axis of that group (when ``k`` divides it); any other axis
    of a group cuts it into strided pieces.
    """
    if not isinstance(sharding, NamedSharding) or math.prod(shape) != math.prod(flat) or 0 in shape:
        return None
    spec = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
    sizes = dict(zip(sharding.mesh.axis_names, sharding.mesh.axis_sizes, strict=True))
    out: list[Any] = []
    i = j = 0
    while i < len(shape) or j < len(flat):
        gi, gj = [i], [j]  # the next group: the fewest leading axes of each side with equal products
        a, b = shape[i] if i < len(shape) else 1, flat[j] if j < len(flat) else 1
        while a != b:
            if a < b and i + 1 < len(shape):
                i += 1
                gi.append(i)
                a *= shape[i]
            elif b < a and j + 1 < len(flat):
                j += 1
                gj.append(j)
                b *= flat[j]
            else:
                return None
        i, j = i + 1, j + 1
        gi, gj = [k for k in gi if k < len(shape)], [k for k in gj if k < len(flat)]
        if any(spec[k] is not None for k in gi[1:]):
            return None
        first = spec[gi[0]] if gi else None
        names = () if first is None else (first,) if isinstance(first, str) else tuple(first)
        parts = math.prod(sizes[name] for name in names)
        if gj and first is not None and flat[gj[0]] % parts:
            return None
        out.extend([first if gj and k == gj[0] else None for k in gj])
    return NamedSharding(sharding.mesh, PartitionSpec(*out))


@contextlib.contextmanager
def _concrete_shapes(what: str) -> Iterator[None]:
    """Turns JAX's error for a value needed concretely while tracing (a parameter shape computed from the inputs'
    values) into a ValueError naming the module where it happened."""
    try:
        yield
    except jax.errors.ConcretizationTypeError as err:
        where = _module_of(err.__traceback__)
        raise ValueError(
            f"{what} cannot be initialized by tracing: {where} uses the value of an input (or of an array "
            "computed from one) where Python needs a concrete value, such as a parameter's shape. Initialize it "
            "with the framework's own eager `init`, or make the shapes depend on static arguments only. "
            f"Received: {type(err).__name__}: {str(err).splitlines()[0]}"
        ) from err


def _module_of(traceback: Any) -> str:
    """The innermost module (a method's `self` with a Flax scope path, a Haiku module name, or an NNX module) in
    a traceback, as text: ``module `Block_0/Dense_1```, else "the model"."""
    where = "the model"
    while traceback is not None:
        owner = traceback.tb_frame.f_locals.get("self")
        scope_path = getattr(getattr(owner, "scope", None), "path", None)
        if isinstance(scope_path, tuple) and scope_path:
            where = f"module `{'/'.join(map(str, scope_path))}` ({type(owner).__name__})"
        elif isinstance(getattr(owner, "module_name", None), str):
            where = f"module `{owner.module_name}` ({type(owner).__name__})"
        elif type(owner).__module__.startswith("flax.nnx") or hasattr(owner, "__nnx_repr__"):
            where = f"module {type(owner).__name__}"
        traceback = traceback.tb_next
    return where


def _others(calls: list[base.Call], claimed: list[base.Call | None], probe: Any) -> list[base.Call]:
    """The recorded calls that no output leaf is, made in the trace of the tracer `probe` (not inside a `scan` or
    `vmap` of the model, whose tracers cannot leave it), and unsharded."""
    mine = {id(c) for c in claimed if c is not None}
    trace = getattr(probe, "_trace", None)
    return [
        c for c in calls
        if id(c) not in mine and c.sharding is None
        and trace is not None and getattr(c.result, "_trace", None) is trace
    ]  # fmt: skip


def _reshaped(plan: _Plan, closed: Any, arrays: list, framework_keys: bool) -> tuple[list, list]:
    """Evaluates the traced program's needed operations (`_evaluate`), first claiming for the engine each kept
    leaf that the framework computed as ``reshape(result of a recorded call)`` and that has no sharding: the
    leaf's entry in `plan` becomes that call, drawn with the call's shape and reshaped."""
    jaxpr = closed.jaxpr
    outs = jaxpr.outvars
    n_kept = sum(call is None for call in plan.calls)
    n_keys = sum(call is not None and call.key is not None for call in plan.calls) if framework_keys else 0
    n_others = len(plan.others)
    kept_vars, key_vars = outs[:n_kept], outs[n_kept : n_kept + n_keys]
    result_vars = outs[n_kept + n_keys : n_kept + n_keys + n_others]
    other_keys = outs[n_kept + n_keys + n_others :]
    of_result = {v: j for j, v in enumerate(result_vars) if isinstance(v, jex_core.Var)}
    producer = {v: eqn for eqn in jaxpr.eqns for v in eqn.outvars}
    kept_leaves = [i for i, call in enumerate(plan.calls) if call is None]
    claimed: dict[int, int] = {}  # position among the kept leaves -> the call whose result it reshapes
    taken: set[int] = set()
    for k, (i, v) in enumerate(zip(kept_leaves, kept_vars, strict=True)):
        eqn = producer.get(v) if isinstance(v, jex_core.Var) else None
        if eqn is not None and eqn.primitive.name == "sharding_constraint":  # the program's own, on a sharded leaf
            eqn = producer.get(eqn.invars[0]) if isinstance(eqn.invars[0], jex_core.Var) else None
        source = eqn.invars[0] if eqn is not None and eqn.primitive.name == "reshape" else None
        if isinstance(source, jex_core.Var) and source in of_result and of_result[source] not in taken:
            call = plan.others[of_result[source]]
            flat = None if plan.shardings[i] is None else _flat_sharding(plan.shardings[i], plan.shapes[i], call.shape)
            if plan.shardings[i] is None or flat is not None:
                claimed[k] = of_result[source]
                taken.add(of_result[source])
                if flat is not None:
                    plan.flat[i] = flat
    wanted = [v for k, v in enumerate(kept_vars) if k not in claimed] + list(key_vars)
    # the keys of the others that have one (a keyless initializer's is None), by their index among the others
    if framework_keys:
        key_of = dict(zip((j for j, c in enumerate(plan.others) if c.key is not None), other_keys, strict=True))
        wanted += [key_of[j] for j in claimed.values() if j in key_of]
    values = _evaluate(closed, jax.tree.leaves(arrays), wanted)
    kept = values[: n_kept - len(claimed)]
    keys = values[n_kept - len(claimed) :]
    # the claimed leaves join the drawn ones, in leaf order; their keys are merged into that order
    drawn_keys = iter(keys[:n_keys])
    claimed_keys = iter(keys[n_keys:])
    claimed_at = {kept_leaves[k]: plan.others[j] for k, j in claimed.items()}
    merged = []
    for i, call in enumerate(plan.calls):
        if call is not None:  # a keyless initializer's key is None, which is no output of the program
            merged.append(next(drawn_keys) if framework_keys and call.key is not None else None)
        elif i in claimed_at:
            plan.calls[i] = claimed_at[i]
            keyed = framework_keys and claimed_at[i].key is not None
            merged.append(next(claimed_keys) if keyed else None)
    return kept, merged if framework_keys else []


def _survey(
    plan: _Plan,
    out: Any,
    calls: list[base.Call],
    mesh: Mesh | None,
    replicate: bool,
    boxed: Callable[[Any], bool],
    spec_of: Callable[[Any], Any] | None,
    what: str,
    strip: int,
) -> None:
    """Fills `plan` from the traced output: each leaf's path and sharding (`replicate`: over `mesh` when it has
    none), and the call that made it, if any."""
    made = {id(call.result): call for call in calls}
    entries, _ = tree._flatten(out, what, is_leaf=boxed)
    plan.treedef = jax.tree.structure(out)
    for path, node in entries:
        spec = spec_of(node) if spec_of is not None and boxed(node) else None
        inner = jax.tree_util.tree_flatten_with_path(node)[0]
        for sub, leaf in inner:
            leaf_path = path if len(inner) == 1 else f"{path}/{jax.tree_util.keystr(sub, simple=True, separator='/')}"
            leaf_path = "/".join(leaf_path.split("/")[strip:])
            call = made.get(id(leaf))
            if call is not None and call.result is not leaf:
                call = None
            shape = tuple(getattr(leaf, "shape", ()))
            sharding = call.sharding if call is not None and call.sharding is not None else spec
            plan.paths.append(leaf_path)
            plan.shapes.append(shape)
            unsharded = sharding is None and not replicate
            plan.shardings.append(None if unsharded else tree.resolve(leaf_path, sharding, shape, mesh))
            plan.calls.append(call)


def _evaluate(closed: Any, args: list, outvars: list | None = None) -> list:
    """The outputs of a closed jaxpr (or those of `outvars`), from the equations they need only, bound one by one.

    The traced initialization holds the whole forward pass and every initializer's arithmetic, and what is
    needed (the keys: a `fold_in` or `split` per parameter) compiles slowly as one program, about 20 ms per
    key on CPU. So the jaxpr is evaluated operation by operation, skipping those whose results no output needs:
    the keys by JAX's own cached primitives, the other leaves as the framework's eager initialization computes
    them. Where this evaluation is unavailable or differs from eager execution (`_evaluation_works`, checked
    once per process), the program runs as ``jax.jit(program)``.
    """
    jaxpr = closed.jaxpr
    wanted: list = jaxpr.outvars if outvars is None else outvars
    needed = {v for v in wanted if isinstance(v, jex_core.Var)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in needed for v in eqn.outvars):
            kept.append(eqn)
            needed.update(v for v in eqn.invars if isinstance(v, jex_core.Var))
    env = dict(zip(jaxpr.constvars, closed.consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    for eqn in reversed(kept):
        bound = eqn.primitive.get_bind_params(eqn.params)  # (subfuns, params) before JAX 0.7, params since
        subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
        out = eqn.primitive.bind(*subfuns, *map(read, eqn.invars), **params)
        env.update(zip(eqn.outvars, out if eqn.primitive.multiple_results else [out], strict=True))
    return [read(v) for v in wanted]


@functools.cache
def _evaluation_works() -> bool:
    """Whether `_evaluate` gives the eager results of a program like a model's initialization (checked once per
    process: a JAX that changes its jaxprs makes jinit slower, never different)."""

    def program(key: Any, x: Any) -> Any:
        unused = jax.numpy.sin(x)
        del unused
        keys = [jax.random.fold_in(key, i) for i in (3, 7)]
        return [jax.random.key_data(k) for k in keys], jax.random.split(keys[0])[1], x * 2

    args = (jax.random.key(1), jax.numpy.arange(6.0).reshape(2, 3))
    try:
        closed = jax.make_jaxpr(program)(*args)
        ours = _evaluate(closed, jax.tree.leaves(args))
        theirs = jax.tree.leaves(program(*args))  # eagerly, as the framework's own initialization runs
        ours = [jax.random.key_data(x) if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in ours]
        theirs = [jax.random.key_data(x) if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in theirs]
        return len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    except Exception:
        return False
