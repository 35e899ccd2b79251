"""Where a traced initialization's parameters come from: the jinit calls behind its output leaves, at any depth.

A `Program` (`jinit._src.program`) records each call of a jinit initializer with its key and result, which are
variables of the program's jaxpr or of a body inside it (a ``scan``'s, a ``jit``'s, a ``remat``'s), possibly wrapped
by `vmap`'s tracers; to those, `jinit._src.jax_draws` adds the draws of JAX's own initializers that it finds in
those jaxprs, whose key and result are the jaxprs' own variables. `find` turns them into `Site` records: for an
output leaf that is such a result, reached only through operations that move data (``reshape``, ``transpose``, a
sharding constraint, a copy), through the stacking of a ``scan``'s outputs (`nn.scan`, `nnx.scan`,
``hk.layer_stack``) and through `vmap`'s batching (`nn.vmap`, `nnx.vmap`, ``eqx.filter_vmap``), the leaf is the
initializer's draw for each of its keys, put in place by those `Step`s. Its keys are read from the program itself:
`find` rewrites the jaxpr so that each site's key variable is also an output, stacked by every ``scan`` it is inside
of (``scan`` bodies and ``jit``/``remat`` bodies gain outputs), and drops every output that a site makes; dead-code
elimination then removes the draws, and the forward pass, from the program, which computes only the keys and the
other leaves. A call whose draw that program still reads (a value the model computes from a parameter, kept as
state) makes no site: the program computes its leaves and that value as the framework does. (Drawn apart, the draw
would no longer be an output of its scan's body, and XLA could fuse it into that computation and round it
differently: a sum of squares kept as state in an ``nn.scan`` came out a unit in the last place away from
``module.init``'s.)

The site's leaf is then drawn by `jinit._src.plan` in one compiled kernel per distinct site: each key's draw,
batched as the program batched it, its data moved as the program moved it, in place and laid out as the leaf's
sharding says. Its values are the framework's because a jinit initializer's values do not depend on the mode it
runs in (eagerly, under ``jit``, in a ``scan`` or a ``vmap``: the drop-in contract), with one care: where JAX's
``vmap`` of a PRNG implementation is not its per-key values (``rbg``, ``unsafe_rbg``), the keys of a ``scan``'s
layers are drawn one by one (``lax.map``), as the scan drew them (`per_key`, checked once per implementation).

JAX internals relied on, and how a change of them is survived:
- a recorded tracer's variable (``DynamicJaxprTracer.val``) and `vmap`'s tracers (``BatchTracer.val`` and
  ``.batch_dim``), to tell where a call's key and result are in the jaxpr; a call whose variables are not found
  is no site (its leaf is computed by the program, as the framework computes it);
- the parameters of ``scan``, ``jit``, ``closed_call`` and ``remat`` (their bodies; ``num_carry``, ``length``,
  ``out_shardings``, ``out_layouts``), to add outputs; anything else is not looked into;
- ``partial_eval.dce_jaxpr_consts``, to remove what the sites make from the program; without it, the program
  is evaluated whole.
Each site is checked as it is found, without compiling anything: the result's abstract value must be the call's
shape and dtype batched by its `vmap` levels, the result must be computed from the key in the jaxpr, and its
steps must give the leaf's shape and dtype. A site that fails is no site, and where anything here raises there
are none (the program computes those leaves, as the framework does): slower, the same values. The values
themselves rest on JAX's public semantics of ``scan``, ``vmap`` and the moves, and on jinit's own contract, one
value in every mode, which the tests check against each framework.
"""

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

from jinit._src import base, jax_draws
from jinit._src.program import Program, bodies

try:  # see the module docstring
    from jax._src.interpreters import batching as _batching
    from jax._src.interpreters import partial_eval as _pe
except ImportError:  # pragma: no cover - a JAX that moved them: no sites
    _batching = _pe = None

SCAN = frozenset({"scan"})
CALLS = frozenset({"jit", "pjit", "closed_call", "remat2", "checkpoint", "remat"})
"""The primitives whose bodies are looked into: the scan, and calls whose outputs are their body's outputs."""
MOVES = frozenset(
    {"reshape", "transpose", "sharding_constraint", "copy", "copy_p", "squeeze", "reshard", "broadcast_in_dim"}
)
"""Operations that only move (or repeat) a value's data, through which a site reaches its leaf."""
LAYOUTS = frozenset({"sharding_constraint", "reshard"})
"""Of `MOVES`, those that change only where the data lives."""


@dataclasses.dataclass(frozen=True)
class Vmap:
    """The draws of a key array batched along `key_axis`, stacked along `out_axis` (a `vmap` of the model), `size`
    of them (a key not batched, None, gives each the same draw)."""

    key_axis: int | None
    out_axis: int
    size: int


@dataclasses.dataclass(frozen=True)
class Stack:
    """A ``scan``'s stacking of its `length` layers' values along a new leading axis; `broadcast`: its layers
    share one key (a key from outside the scan), and so one value."""

    length: int
    broadcast: bool = False


@dataclasses.dataclass(frozen=True)
class Op:
    """An operation that moves data, applied as the program applies it."""

    primitive: Any
    params: tuple[tuple[str, Any], ...]

    def __call__(self, x: Any) -> Any:
        return self.primitive.bind(x, **dict(self.params))


Step = Vmap | Stack | Op


@dataclasses.dataclass(frozen=True)
class Site:
    """An output leaf that is the draw of a jinit call for each of its keys, put in place by `steps`.

    Attributes:
      leaf: the leaf's position among the program's outputs.
      call: the recorded call (its initializer, shape, dtype, sharding).
      key: the position of the site's keys among the keys `find` adds to the program's outputs; None for an
        initializer that uses no key.
      steps: what the program does with a draw, from the innermost: `vmap` levels, data moves, scan stacking.
      top: whether the draw is the leaf itself, but for data moves (no `Vmap` or `Stack` step).
    """

    leaf: int
    call: base.Call
    key: int | None
    steps: tuple[Step, ...]

    @property
    def top(self) -> bool:
        return all(isinstance(step, Op) for step in self.steps)


@dataclasses.dataclass
class Found:
    """What `find` found: the sites, and the program that computes their keys and the other leaves.

    `jaxpr` and `consts` are the rewritten program (dead code removed); its inputs are those of the original
    program for which `used` is True, its outputs the leaves in `rest` (positions among the original outputs),
    then the keys, one array per entry of `keys` (its avals).
    """

    sites: list[Site]
    jaxpr: Any
    consts: list[Any]
    used: list[bool]
    rest: list[int]
    keys: list[Any]


@dataclasses.dataclass
class _Place:
    """A jaxpr in the program: the top one, or the body of an equation of its parent's jaxpr."""

    jaxpr: Any
    parent: "_Place | None" = None
    eqn: int = -1  # the equation of `parent.jaxpr` whose body this is
    kind: str = "top"  # "top", "scan", "call", or "other" (not looked into by `_export`)
    shared: bool = False  # the same jaxpr object is the body of several equations: ambiguous

    def ancestors(self) -> Iterator["_Place"]:
        place: _Place | None = self
        while place is not None:
            yield place
            place = place.parent


class _Index:
    """Every jaxpr of the program, and where each variable is defined."""

    def __init__(self, top: Any) -> None:
        self.top = _Place(top)
        self.places: dict[int, _Place] = {}
        self.defined: dict[int, _Place] = {}
        self._consumers: dict[int, dict[Any, list[int]]] = {}
        self._producers: dict[int, dict[Any, Any]] = {}
        self._visit(self.top)

    def _visit(self, place: _Place) -> None:
        jaxpr = place.jaxpr
        if id(jaxpr) in self.places:
            self.places[id(jaxpr)].shared = True
            return
        self.places[id(jaxpr)] = place
        for v in (*jaxpr.constvars, *jaxpr.invars):
            self.defined[id(v)] = place
        for i, eqn in enumerate(jaxpr.eqns):
            for v in eqn.outvars:
                self.defined[id(v)] = place
            for body in bodies(eqn):
                name = eqn.primitive.name
                kind = "scan" if name in SCAN else "call" if name in CALLS else "other"
                self._visit(_Place(body, place, i, kind))

    def consumers(self, place: _Place, var: Any) -> list[int]:
        table = self._consumers.get(id(place.jaxpr))
        if table is None:
            table = {}
            for i, eqn in enumerate(place.jaxpr.eqns):
                for v in eqn.invars:
                    if isinstance(v, jex_core.Var):
                        table.setdefault(v, []).append(i)
            self._consumers[id(place.jaxpr)] = table
        return table.get(var, [])

    def producers(self, jaxpr: Any) -> dict[Any, Any]:
        """The equation that defines each variable of `jaxpr` (built once per jaxpr, not once per site)."""
        table = self._producers.get(id(jaxpr))
        if table is None:
            table = {v: eqn for eqn in jaxpr.eqns for v in eqn.outvars}
            self._producers[id(jaxpr)] = table
        return table


def _unwrap(tracer: Any) -> tuple[Any, list[tuple[Any, Any, int | None]]]:
    """A recorded value's variable, and the `vmap` levels around it (innermost first): (trace, batch axis, size)."""
    if isinstance(tracer, jex_core.Var):  # a call found in the jaxpr itself (`jinit._src.jax_draws`)
        return tracer, []
    if isinstance(tracer, jax_draws.Batched):  # the same, in a `vmap`: its one level
        return tracer.var, [(tracer.level, tracer.axis, tracer.size)]
    levels = []
    while _batching is not None and isinstance(tracer, _batching.BatchTracer):
        axis = tracer.batch_dim
        size = tracer.val.shape[axis] if isinstance(axis, int) else None
        levels.append((tracer._trace, axis, size))
        tracer = tracer.val
    var = getattr(tracer, "val", None)
    return (var if isinstance(var, jex_core.Var) else None), levels


def find(program: Program) -> Found:
    """The sites of `program`, and the program that computes their keys and the other leaves (see the module
    docstring)."""
    index = _Index(program.closed.jaxpr)
    places = [(p.jaxpr, p.kind != "top") for p in index.places.values() if not p.shared and p.kind != "other"]
    calls = [*program.calls, *jax_draws.calls(places)]  # (JAX's own initializers' draws, found in the jaxprs)
    found = [(call, site, key) for call in calls for site, key in _sites_of(call, index)]
    while True:
        out = _rewrite(program, index, [(site, key) for _, site, key in found])
        read = _read(out.jaxpr)
        needed = {id(call) for call, _, _ in found if id(_unwrap(call.result)[0]) in read}
        if not needed:
            return out
        found = [entry for entry in found if id(entry[0]) not in needed]  # (module docstring: no site)


def _read(jaxpr: Any) -> set[int]:
    """The ids of the variables that `jaxpr`'s equations (and those of the bodies in them) read."""
    out: set[int] = set()
    for eqn in jaxpr.eqns:
        out.update(id(v) for v in eqn.invars if isinstance(v, jex_core.Var))
        for body in bodies(eqn):
            out |= _read(body)
    return out


def _rewrite(program: Program, index: "_Index", candidates: list[tuple[Site, Any]]) -> Found:
    """The sites among `candidates` (one per leaf) and the program that computes their keys and the other leaves."""
    top = program.closed.jaxpr
    sites: list[Site] = []
    wanted: dict[tuple[int, int], tuple[_Place, Any]] = {}  # the keys to read: (place, var) by their ids
    claimed: set[int] = set()
    positions: dict[tuple[int, int], int] = {}
    for site, key in candidates:
        if site.leaf in claimed:
            continue
        claimed.add(site.leaf)
        if key is not None:
            ident = (id(key[0].jaxpr), id(key[1]))
            if ident not in positions:
                positions[ident] = len(wanted)
                wanted[ident] = key
            site = dataclasses.replace(site, key=positions[ident])
        sites.append(site)
    if not sites or _pe is None:  # see the module docstring: without dead-code elimination, no sites
        return none(program)
    new_top, key_vars = _export(index.top, list(wanted.values()))
    rest = [i for i in range(len(top.outvars)) if i not in claimed]
    outvars = [top.outvars[i] for i in rest] + key_vars
    jaxpr = new_top.replace(outvars=outvars, debug_info=_unnamed(new_top.debug_info))
    jaxpr, used_consts, used = _pe.dce_jaxpr_consts(jaxpr, [True] * len(outvars))
    consts = [c for c, u in zip(program.closed.consts, used_consts, strict=True) if u]
    return Found(sites, jaxpr, consts, list(used), rest, [v.aval for v in key_vars])


def none(program: Program) -> Found:
    """No sites: the program, unchanged, computes every leaf."""
    closed = program.closed
    n_in, n_out = len(closed.jaxpr.invars), len(closed.jaxpr.outvars)
    return Found([], closed.jaxpr, list(closed.consts), [True] * n_in, list(range(n_out)), [])


def _sites_of(call: base.Call, index: _Index) -> Iterator[tuple[Site, tuple[_Place, Any] | None]]:
    """The sites that `call` makes (one per leaf its result reaches), with its key's place and variable."""
    result, levels = _unwrap(call.result)
    place = index.defined.get(id(result)) if result is not None else None
    if place is None or any(p.shared or p.kind == "other" for p in place.ancestors()):
        return
    if call.key is None:  # drawn once, repeated by the stacking (a keyless result is not batched by a vmap)
        if levels:
            return
        key, steps, containing = None, [], set()
    else:
        key_var, key_levels = _unwrap(call.key)
        key_place = index.defined.get(id(key_var)) if key_var is not None else None
        if key_place is None or not any(p is key_place for p in place.ancestors()):
            return
        vmaps = _vmaps(levels, key_levels)
        if vmaps is None:
            return
        key, steps = (key_place, key_var), vmaps
        containing = {id(p.jaxpr) for p in key_place.ancestors()}  # the scans whose layers have their own keys
    if not _consistent(call, result, steps, key, place, index):
        return
    for leaf, moves in _follow(index, place, result, (), 0):
        stacked = [_stack(m, containing) if isinstance(m, _Exit) else m for m in moves]
        site = Site(leaf, call, None, (*steps, *stacked))
        if _leaf_aval(site) == _plain_aval(index.top.jaxpr.outvars[leaf].aval):
            yield site, key


def _consistent(call: base.Call, result: Any, vmaps: list, key: tuple | None, place: _Place, index: _Index) -> bool:
    """Whether the variables found for a call are its own: the result's abstract value is the call's shape and
    dtype batched by its `vmap` levels, and (in one jaxpr) the result is computed from the key. A JAX whose
    tracers no longer lead to their variables fails here, and the call is no site."""
    shape = list(call.shape)
    for step in vmaps:
        shape.insert(step.out_axis, step.size)
    if tuple(result.aval.shape) != tuple(shape) or result.aval.dtype != call.dtype:
        return False
    return key is None or key[0] is not place or _reaches(index.producers(place.jaxpr), key[1], result)


def _reaches(producer: dict[Any, Any], source: Any, target: Any) -> bool:
    """Whether `target` is computed from `source` in the jaxpr whose equations `producer` gives by the variable
    each defines (an equation with a body counts as one step)."""
    seen, stack = set(), [target]
    while stack:
        var = stack.pop()
        if var is source:
            return True
        eqn = producer.get(var)
        if eqn is None or id(eqn) in seen:
            continue
        seen.add(id(eqn))
        stack.extend(v for v in eqn.invars if isinstance(v, jex_core.Var))
    return False


def _plain_aval(aval: Any) -> tuple:
    return tuple(aval.shape), np.dtype(aval.dtype)


def _leaf_aval(site: Site) -> tuple:
    """The shape and dtype that the site's steps give its draw (abstractly, without compiling)."""
    shape = list(site.call.shape)
    value = None
    for step in site.steps:
        if isinstance(step, Vmap):
            shape.insert(step.out_axis, step.size)
            continue
        if value is None:
            value = jax.ShapeDtypeStruct(tuple(shape), site.call.dtype)
        if isinstance(step, Stack):
            value = jax.ShapeDtypeStruct((step.length, *value.shape), value.dtype)
        else:
            value = jax.eval_shape(step, value)
    if value is None:
        value = jax.ShapeDtypeStruct(tuple(shape), site.call.dtype)
    return tuple(value.shape), np.dtype(value.dtype)


def _vmaps(levels: list, key_levels: list) -> list[Step] | None:
    """The `Vmap` steps of a call's result and key levels (innermost first); None where they do not line up."""
    if len(levels) != len(key_levels):
        return None
    steps: list[Step] = []
    for (trace, axis, size), (key_trace, key_axis, _) in zip(levels, key_levels, strict=True):
        if trace is not key_trace or not isinstance(axis, int) or not (key_axis is None or isinstance(key_axis, int)):
            return None
        steps.append(Vmap(key_axis, axis, size))
    return steps


@dataclasses.dataclass(frozen=True)
class _Exit:
    """`_follow`'s mark of a value leaving the body `place` of a ``scan`` (a `Stack` step once the key is known)."""

    place: Any


def _stack(exit: "_Exit", containing: set[int]) -> Stack:
    """The `Stack` step of a value leaving a scan's body: broadcast when the key comes from outside the scan."""
    eqn = exit.place.parent.jaxpr.eqns[exit.place.eqn]
    return Stack(eqn.params["length"], broadcast=id(exit.place.jaxpr) not in containing)


def _follow(index: _Index, place: _Place, var: Any, moves: tuple, depth: int) -> Iterator[tuple[int, tuple]]:
    """The output leaves that `var` (of `place`'s jaxpr) reaches through data moves and exits, with the moves."""
    if depth > 64:
        return
    jaxpr = place.jaxpr
    for i in index.consumers(place, var):
        eqn = jaxpr.eqns[i]
        if eqn.primitive.name in MOVES and eqn.invars[0] is var and len(eqn.outvars) == 1:
            try:
                op = Op(eqn.primitive, tuple(sorted(eqn.params.items())))
                hash(op)
            except TypeError:
                continue
            yield from _follow(index, place, eqn.outvars[0], (*moves, op), depth + 1)
    for position, out in enumerate(jaxpr.outvars):
        if out is not var:
            continue
        if place.parent is None:
            yield position, moves
            continue
        eqn = place.parent.jaxpr.eqns[place.eqn]
        if place.kind == "scan":
            if position < eqn.params["num_carry"]:
                continue  # a carry, not a stacked output
            yield from _follow(index, place.parent, eqn.outvars[position], (*moves, _Exit(place)), depth + 1)
        elif place.kind == "call":
            yield from _follow(index, place.parent, eqn.outvars[position], moves, depth + 1)


def _unnamed(debug_info: Any) -> Any:
    """Debug information for a jaxpr whose outputs changed: the same, without result names."""
    return debug_info.with_unknown_names() if debug_info is not None else None


def _export(top: _Place, wanted: list[tuple[_Place, Any]]) -> tuple[Any, list[Any]]:
    """The top jaxpr rewritten so that each wanted variable (in any body) is available in it: every equation on the
    way out returns it too (a ``scan`` stacked along a new leading axis). Returns the new top jaxpr (its outputs
    unchanged) and, per wanted variable, its variable in it."""
    below: dict[int, list[int]] = {}  # for each place, the indices (into `wanted`) of variables at or below it
    for n, (place, _) in enumerate(wanted):
        for p in place.ancestors():
            below.setdefault(id(p.jaxpr), []).append(n)
    places = {id(p.jaxpr): p for p, _ in wanted for p in p.ancestors()}

    @functools.cache
    def children(place_id: int) -> dict[int, _Place]:
        return {p.eqn: p for p in places.values() if p.parent is not None and id(p.parent.jaxpr) == place_id}

    def lift(place: _Place) -> tuple[Any, dict[int, Any]]:
        jaxpr = place.jaxpr
        found: dict[int, Any] = {n: var for n in below[id(jaxpr)] if wanted[n][0] is place for var in [wanted[n][1]]}
        eqns = list(jaxpr.eqns)
        for i, child in children(id(jaxpr)).items():
            body, inner = lift(child)
            order = sorted(inner)
            eqn = eqns[i]
            body = body.replace(
                outvars=[*body.outvars, *(inner[n] for n in order)], debug_info=_unnamed(body.debug_info)
            )
            if child.kind == "scan":
                length = eqn.params["length"]
                avals = [inner[n].aval.update(shape=(length, *inner[n].aval.shape)) for n in order]
            else:
                avals = [inner[n].aval for n in order]
            outer = [jex_core.Var(aval) for aval in avals]
            eqns[i] = eqn.replace(params=_with_body(eqn, body, len(order)), outvars=[*eqn.outvars, *outer])
            found.update(zip(order, outer, strict=True))
        return jaxpr.replace(eqns=eqns), found

    new_top, found = lift(top)
    return new_top, [found[n] for n in range(len(wanted))]


def _with_body(eqn: Any, body: Any, added: int) -> dict[str, Any]:
    """`eqn`'s parameters with its body replaced by `body`, which has `added` more outputs."""
    params = dict(eqn.params)
    for name, value in eqn.params.items():
        if isinstance(value, jex_core.ClosedJaxpr):
            params[name] = jex_core.ClosedJaxpr(body, value.consts)
        elif isinstance(value, jex_core.Jaxpr):
            params[name] = body
    for name in ("out_shardings", "out_layouts"):  # a jit's, one per output
        if name in params:
            fill = _unspecified() if name == "out_shardings" else None
            params[name] = (*params[name], *(fill,) * added)
    return params


@functools.cache
def _unspecified() -> Any:
    """JAX's "no sharding given" value, for a jit's added outputs."""
    from jax._src.named_sharding import UNSPECIFIED  # a JAX that moved it: `find` raises, and there are no sites

    return UNSPECIFIED


def key_avals_are_keys(found: Found) -> bool:
    """Whether every added output is a PRNG key array (what `find` meant to export)."""
    return all(jax.numpy.issubdtype(aval.dtype, jax.dtypes.prng_key) or aval.dtype == np.uint32 for aval in found.keys)
