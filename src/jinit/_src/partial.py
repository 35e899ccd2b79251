"""Initializing only what a checkpoint lacks: the ``existing=`` of `jinit.init_tree` and of the integrations.

`existing` is a pytree of the arrays a model already has (restored from a checkpoint, or taken from a smaller
model). Its leaves are matched to the model's parameters by path, the path `jinit.path_key` takes
(``"h0/attn/kernel"``, ``"params/Dense_0/kernel"``): a parameter is missing where `existing` has None or lacks
the key, whatever its containers (a dict restored from a checkpoint, a `flax.nnx.State`, an Equinox module with
None leaves). Every array of `existing` is checked (an array, the parameter's shape, dtype and sharding), and
every path of `existing` must be one of the model's, before anything is drawn; then only the missing parameters
are drawn, each bitwise what a full initialization with the same key gives it (a parameter's values depend on
its key alone), and the present arrays are passed through as they are (not copied, not moved).

`jinit.init_tree` draws the missing parameters as it draws a tree, present ones never traced, compiled for or
allocated. A framework's plan (`jinit._src.plan`) is pruned (`pruned`): the present leaves' sites are not drawn,
and the present leaves the program computes (other libraries' initializers, state) are removed from its outputs,
so that dead-code elimination removes their computation, and the key derivations only they needed.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.core import Tracer

from jinit._src import checks, program, sites, tree
from jinit._src.base import Initializer

MAX_PRUNED = 8
"""The most pruned plans a `Plan` keeps (one per set of present leaves): the oldest is dropped first."""

Expected = tuple[tuple[int, ...], Any, Any]
"""A leaf's shape, dtype and sharding (None: any placement)."""


def _given(existing: Any, boxed: Callable[[Any], bool]) -> list[tuple[str, list[Any]]]:
    """`(path, arrays)` of `existing`: a box's leaves (a linen box, an NNX variable) or the leaf itself."""
    flat, _ = tree._flatten(existing, "existing", is_leaf=boxed)
    return [(path, jax.tree.leaves(node) if boxed(node) else [node]) for path, node in flat]


def _match(
    given: Sequence[tuple[str, list[Any]]],
    where: dict[str, list[int]],
    expected: Callable[[int], Expected],
    what: str,
) -> dict[int, Any]:
    """The present arrays by position, checked; an error for a path of `existing` that the model lacks."""
    extra = [path for path, _ in given if path not in where]
    if extra:
        shown = ", ".join(map(repr, extra[:8])) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        near = [path for path in where if path.endswith(f"/{extra[0]}") or path.startswith(f"{extra[0]}/")]
        example = near[0] if near else next(iter(where), None)  # one level too few or too many, often
        raise ValueError(
            f"Argument `existing` has paths that are not parameters of {what} (a parameter is matched by its path, "
            f"such as {example!r}); remove them. Received: {len(extra)} path(s) {shown}"
        )
    present: dict[int, Any] = {}
    for path, arrays in given:
        positions = where[path]
        if not arrays:  # a box around None: missing
            continue
        if len(arrays) != len(positions):
            raise ValueError(
                f"Parameter {checks.show(path)}: `existing` has {len(arrays)} array(s) there, {what} {len(positions)}. "
                f"{checks.received(path, arrays)}"
            )
        for position, array in zip(positions, arrays, strict=True):
            check(path, array, *expected(position))
            present[position] = array
    return present


def check(path: str, array: Any, shape: tuple[int, ...], dtype: Any, sharding: Any) -> None:
    """Checks an array of `existing` against its parameter: an array, of its shape and dtype, laid out as its
    sharding says (not checked under a trace, nor where `sharding` is None)."""
    if not isinstance(array, jax.Array | np.ndarray):
        raise TypeError(
            "Argument `existing` must have arrays as leaves (None, or no entry, where a parameter is missing); "
            f"the leaf at {checks.show(path)} is not. {checks.received(path, array)}"
        )
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"Parameter {checks.show(path)}: `existing` has shape {tuple(array.shape)}, the parameter {tuple(shape)}. "
            f"Received: shape={tuple(array.shape)}, expected shape={tuple(shape)}"
        )
    if array.dtype != dtype:
        raise TypeError(
            f"Parameter {checks.show(path)}: `existing` has dtype {array.dtype}, the parameter {dtype}; convert it "
            f"with `.astype`. Received: dtype={array.dtype}, expected dtype={dtype}"
        )
    if sharding is None or isinstance(array, Tracer):
        return
    actual = array.sharding if isinstance(array, jax.Array) else None
    if actual is None or not actual.is_equivalent_to(sharding, len(shape)):
        where = "a NumPy array" if actual is None else f"laid out as {actual}"
        raise ValueError(
            f"Parameter {checks.show(path)}: `existing` is {where}, the parameter is laid out as {sharding}; place it "
            f"with `jax.device_put(x, sharding)`. Received: sharding={actual}, expected sharding={sharding}"
        )


# ------------------------------------------------------------------------------------------------ init_tree


def init_missing(
    key: Any,
    leaves: list[Any],
    treedef: Any,
    existing: Any,
    mesh: Any,
    progress: Callable[[tree.Progress], None] | None,
) -> Any:
    """`jinit.init_tree` of the `leaves` (resolved, in `treedef`'s order) that `existing` lacks, the others
    passed through. The missing ones are drawn by `init_tree` of ``{path: spec}``: the same paths, so the same
    keys and values."""
    where = {leaf.path: [i] for i, leaf in enumerate(leaves)}
    dtypes: dict[tuple, Any] = {}

    def expected(i: int) -> Expected:
        leaf = leaves[i]
        if leaf.group not in dtypes:
            dtypes[leaf.group] = _dtype(leaf, key)
        return leaf.spec.shape, dtypes[leaf.group], leaf.sharding

    present = _match(_given(existing, lambda x: False), where, expected, "`specs`")
    missing = {leaf.path: leaf.spec for i, leaf in enumerate(leaves) if i not in present}
    drawn = tree.init_tree(key, missing, mesh=mesh, progress=progress)
    arrays = [present[i] if i in present else drawn[leaf.path] for i, leaf in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, arrays)


def _dtype(leaf: Any, key: Any) -> Any:
    """The dtype a spec's parameter would have: a jinit initializer's resolved dtype, else its call's (traced
    abstractly: nothing is computed or compiled)."""
    try:
        if isinstance(leaf.spec.init, Initializer):
            return checks.resolve_dtype(leaf.spec.init, leaf.spec.dtype)
        return jax.eval_shape(leaf, key).dtype
    except (TypeError, ValueError) as err:  # the initializer's own check: name the parameter
        raise type(err)(f"Parameter {checks.show(leaf.path)}: {err}") from None


# ------------------------------------------------------------------------------------------------ frameworks


def present(program: Any, existing: Any, boxed: Callable[[Any], bool]) -> dict[int, Any]:
    """The arrays of `existing` by position among `program`'s output leaves, checked against them. Paths are the
    output's own (``"params/Dense_0/kernel"``, Haiku's ``(params, state)`` as ``"0/linear/w"``), a box's path for
    the leaf in it, so `existing` may hold boxes or bare arrays."""
    skeleton = jax.tree_util.tree_unflatten(program.treedef, list(range(len(program.paths))))
    where = {path: jax.tree.leaves(node) for path, node in tree._flatten(skeleton, "variables", is_leaf=boxed)[0]}
    avals = program.closed.out_avals

    def expected(i: int) -> Expected:
        return program.shapes[i], avals[i].dtype, program.shardings[i]

    return _match(_given(existing, boxed), where, expected, "the model")


def call(
    plan: Any,
    boxed: Callable[[Any], bool],
    args: tuple,
    kwargs: dict,
    existing: Any,
    *,
    root: Any = None,
    progress: Callable[[tree.Progress], None] | None = None,
) -> Any:
    """A plan's output for `args` and `kwargs` with the leaves of `existing` passed through, the others drawn or
    computed by the plan pruned of them."""
    arrays = present(plan.program, existing, boxed)
    return pruned(plan, frozenset(arrays))(args, kwargs, root=root, progress=progress, present=arrays)


def pruned(plan: Any, present: frozenset[int]) -> Any:
    """`plan` without the leaves at the positions `present`: their sites are not drawn, and the program no longer
    outputs them (nor the keys that only they need), so that dead-code elimination removes their computation.
    Kept in the plan (at most `MAX_PRUNED`), so that a reused initializer compiles it once."""
    kept = plan.partial.get(present)
    if kept is not None:
        return kept
    found = plan.found
    drawn = [site for site in found.sites if site.leaf not in present]
    keys = sorted({site.key for site in drawn if site.key is not None})
    if sites._pe is None:  # pragma: no cover - no dead-code elimination: the program computes every leaf
        jaxpr, consts, used, rest, key_avals = found.jaxpr, found.consts, found.used, found.rest, found.keys
        keys = list(range(len(found.keys)))
    else:
        outputs = [p not in present for p in found.rest] + [k in keys for k in range(len(found.keys))]
        jaxpr, used_consts, used_inputs = sites._pe.dce_jaxpr_consts(found.jaxpr, outputs)
        consts = [c for c, u in zip(found.consts, used_consts, strict=True) if u]
        inputs = iter(used_inputs)
        used = [bool(u and next(inputs)) for u in found.used]  # of the program's inputs, those still read
        rest = [p for p in found.rest if p not in present]
        key_avals = [found.keys[k] for k in keys]
    renumber = {k: n for n, k in enumerate(keys)}
    drawn = [dataclasses.replace(s, key=None if s.key is None else renumber[s.key]) for s in drawn]
    new = type(plan)(plan.program, sites.Found(drawn, jaxpr, list(consts), used, rest, key_avals))
    if len(found.jaxpr.eqns) > program.WHOLE:  # `plan` evaluates its program op by op: so does this one, the
        new.run = lambda args: program.evaluate(jaxpr, consts, args)  # same operations, the same values
    new.side = plan.side
    if len(plan.partial) >= MAX_PRUNED:
        plan.partial.pop(next(iter(plan.partial)))
    plan.partial[present] = new
    return new
