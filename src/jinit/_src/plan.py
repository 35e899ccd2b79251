"""A framework's model initialized by jinit's engine: trace once, then draw each parameter, as often as asked.

A `Plan` is a model's initialization traced once (`jinit._src.program.trace`) with its sites found
(`jinit._src.sites.find`): calling it evaluates the rewritten program, which computes the sites' keys (a
``fold_in`` or ``split`` per layer, and a scan of them for stacked layers; in NumPy where
`jinit._src.host_keys` can, with nothing to compile) and the leaves no jinit call makes (other libraries'
initializers, state), and draws each site by the engine:

- a parameter made at the top of the program, unbatched, is drawn as `jinit.init_tree` draws a tree: grouped by
  (initializer, shape, dtype, sharding), small ones from the engine's stream, a large group by its shape's own
  kernel, each created with its sharding;
- a stacked or batched one (``nn.scan``, ``nnx.vmap``, ``hk.layer_stack``, ``eqx.filter_vmap``, nested, under
  ``remat``), or one the program reshapes or transposes, by one compiled kernel per distinct site: the draws of
  its keys, batched and moved as the program does it (`jinit._src.sites.Step`), written in place, laid out as its
  sharding says, each device generating only its own shard. Compilation is that of the distinct sites, whatever
  the depth. A stacked model's few top parameters (`TOP_IN_KERNEL`) are drawn in that kernel too. (Each draw
  that calls LAPACK, an orthogonal one, past the first has a program of its own: `_programs`.)
- but eagerly, on one CPU device, for JAX's partitionable threefry, an unsharded site of either kind whose
  layers lie one after another in memory (stacked along axis 0, reshaped at most: `_rowable`) is drawn by the
  rows (`jinit._src.rows`): one program for all of them, a loop per distribution, compiled per row count and
  never per site or shape (a scanned ViT-L's first call in 0.8 s rather than 1.3 s, GPT-2 medium's second call
  in 0.98 s rather than 1.19 s); jinit's zeros and ones are made on the host.

A plan is reusable: a second call (another key, new inputs of the same shapes) traces nothing and compiles
nothing new; it is what the integrations' ``initializer`` objects hold (`jinit.flax.initializer`). It works under
a user's trace too (``jax.vmap`` over keys draws an ensemble by the same kernels, batched).

Where `jinit._src.sites.find` fails (a JAX whose jaxprs it does not understand), a plan has no sites and its
program computes every leaf, as the framework does: slower, the same values.
"""

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from jinit._src import base, checks, constant, engine, host_keys, kernel, partial, rows, sites, tree
from jinit._src import program as program_module
from jinit._src.program import Program, evaluator


@dataclasses.dataclass(frozen=True)
class Draw:
    """A site's kernel, as a static value: its initializer, shape and dtype, and the steps to its leaf."""

    init: Any
    shape: tuple[int, ...]
    dtype: str
    steps: tuple[sites.Step, ...]
    per_key: bool

    def function(self) -> Callable[[Any], Any]:
        """The leaf as a function of the site's keys (see `jinit._src.sites`)."""
        init, shape, dtype = self.init, self.shape, self.dtype

        def draw(key: Any) -> Any:
            return init(key, shape, dtype)

        f = draw
        for step in self.steps:
            if not (isinstance(step, sites.Op) and step.primitive.name in sites.LAYOUTS):
                f = _wrap(step, f, self.per_key)  # a layout is not a value: the kernel lays out the leaf itself
        return f


def _wrap(step: sites.Step, f: Callable, per_key: bool) -> Callable:
    if isinstance(step, sites.Vmap):
        return jax.vmap(f, in_axes=step.key_axis, out_axes=step.out_axis, axis_size=step.size)
    if isinstance(step, sites.Op):
        return lambda keys: step(f(keys))
    if step.broadcast:  # a scan's layers share the key from outside it: each layer the same draw

        def broadcast(key: Any) -> Any:
            value = f(key)
            return jnp.broadcast_to(value, (step.length, *value.shape))

        return broadcast
    if per_key:
        return lambda keys: _side_by_side(f, keys)
    return jax.vmap(f)


def _side_by_side(f: Callable, keys: Any) -> Any:
    """``lax.map(f, keys)``, `engine.SIDE_BY_SIDE` keys per iteration, so that XLA runs their draws side by side
    (each draw's own values: no `vmap`). The last iteration ends at the last key, rewriting the keys before it."""
    n, count = keys.shape[0], min(engine.SIDE_BY_SIDE, keys.shape[0])
    one = jax.eval_shape(f, keys[0])
    out = jnp.zeros((n, *one.shape), one.dtype)

    def body(i: Any, out: Any) -> Any:
        start = jnp.minimum(i * count, n - count)
        for j in range(count):
            out = jax.lax.dynamic_update_index_in_dim(out, f(keys[start + j]), start + j, 0)
        return out

    return jax.lax.fori_loop(0, -(-n // count), body, out)


TOP_IN_KERNEL = 32
"""A plan with stacked sites draws its top ones in the same kernel when they are this many or fewer (a scanned
model's embeddings, head and final norm): one compilation rather than the tree engine's kernels of their own
beside the stacked kernel (0.2 s of a scanned ViT's 1.6 s first call). Many top sites (an unrolled model with a
stacked part) are drawn by the tree engine, whose kernels are shared by parameters of the same shape."""


@kernel.jit(static_argnames=("plan", "which"), older=engine.bit_generated)
def _kernel(keys: tuple, *, plan: "Plan", which: tuple[int, ...]) -> list:
    """The sites `which` (positions in `Plan.others`: all but those the tree engine or the rows draw) of `plan`,
    in one program: compiled once per plan, whatever the depth."""
    return plan._drawn([plan.others[i] for i in which], list(keys))


class Plan:
    """A traced initialization and its sites, drawn by the engine each time it is called (module docstring)."""

    def __init__(self, program: Program, found: sites.Found) -> None:
        self.program = program
        self.found = found
        self.side: Any = None
        self.run = evaluator(found.jaxpr, found.consts)
        self.mesh = _explicit_mesh(program.shardings)  # its program is compiled inside it (`_inside`)
        self.top = [s for s in found.sites if _is_top(s)]
        self.others = [s for s in found.sites if not _is_top(s)]
        if self.others and len(self.top) <= TOP_IN_KERNEL:  # one compilation for all: see `TOP_IN_KERNEL`
            self.top, self.others = [], [*self.top, *self.others]
        self.partial: dict[frozenset[int], Plan] = {}  # this plan without given leaves (`partial.pruned`)
        # how each site may be drawn without a kernel of its own (`_rowable`; under an explicit mesh, by none)
        self.rowable = [None if self.mesh is not None else _rowable(program, found, s) for s in self.others]
        self.top_rowable = [None if self.mesh is not None else _rowable(program, found, s) for s in self.top]
        self.others_top = [_is_top(s) for s in self.others]  # (drawn in the kernel with the stacked ones)
        self.lapack = [base.calls_lapack(s.call.init) for s in self.others]  # (at most one per program: `_programs`)

    def _drawn(self, others: list[sites.Site], site_keys: list) -> list:
        """The stacked sites' leaves from their keys, traced (in `_kernel`)."""
        program = self.program
        return [
            engine.lay_out(
                Draw(s.call.init, s.call.shape, s.call.dtype.name, s.steps, per_key(k)).function(),
                program.shardings[s.leaf],
                k,
            )
            for s, k in zip(others, site_keys, strict=True)
        ]

    @property
    def drawn(self) -> list[str]:
        """The paths of the leaves the engine draws."""
        return [self.program.paths[site.leaf] for site in self.found.sites]

    def __call__(
        self,
        args: tuple,
        kwargs: dict,
        *,
        root: Any = None,
        progress: Callable[[tree.Progress], None] | None = None,
        present: dict[int, Any] | None = None,
    ) -> Any:
        """The initialization's output for `args` and `kwargs` (arrays of the traced shapes).

        With `root` (a key), each site's key is ``jinit.path_key(root, path)`` of its leaf's path (for a stacked
        leaf, that key folded with each layer's index) instead of the key the framework gave it. `present`: the
        leaves given (by position), which a plan pruned of them (`partial.pruned`) neither draws nor computes.
        """
        program, found, top, others = self.program, self.found, self.top, self.others
        inputs = program.arguments(args, kwargs)
        used = [x for x, u in zip(inputs, found.used, strict=True) if u]
        traced = any(isinstance(x, Tracer) for x in (*inputs, root))
        report = None
        if progress is not None and not traced:  # one count over every drawn parameter, top ones first
            avals = program.closed.out_avals
            sizes = [_size(avals[s.leaf]) for s in (*top, *others)]
            report = tree.Reporter(progress, sizes)
        with _inside(self.mesh):  # the program and the kernels (a JAX before 0.10 compiles those only inside it)
            values = self.run(used)
            keys = values[len(found.rest) :]
            drawn_top = self._top(top, keys, root, traced, report)
            drawn_others = self._stacked(others, keys, root, traced)
        out: list[Any] = [None] * len(program.paths)
        for position, value in zip(found.rest, values[: len(found.rest)], strict=True):
            out[position] = value
        for site, value in zip(top, drawn_top, strict=True):
            out[site.leaf] = value
        for site, value in zip(others, drawn_others, strict=True):
            out[site.leaf] = value
            if report is not None:
                report(program.paths[site.leaf], *_size(program.closed.out_avals[site.leaf]), value)
        for position, value in (present or {}).items():
            out[position] = value
        return jax.tree_util.tree_unflatten(program.treedef, out)

    def _top(self, top: list[sites.Site], keys: list, root: Any, traced: bool, report: Any) -> list:
        """The top sites: from the program's keys, eagerly, those `_rowable` says by the rows (one kernel for all,
        one loop per distribution); the others, and all of them under a trace or with path keys, as
        `jinit.init_tree` draws a tree (grouped; the stream, or a per-shape kernel)."""
        if not top:
            return []
        program = self.program
        leaves = [
            tree._Leaf(
                program.paths[s.leaf],
                tree.ParamSpec(s.call.shape, s.call.init, s.call.dtype.name, None),
                program.shardings[s.leaf],
            )
            for s in top
        ]
        if root is not None:
            words = np.array([tree._words(checks.path(leaf.path)) for leaf in leaves], np.uint32).reshape(-1, 2)
            if traced:
                return tree.traced(leaves, tree._derive(root, words))
            return tree._eager(root, leaves, words, None, report)
        site_keys = [None if s.key is None else keys[s.key] for s in top]
        if traced:
            return tree.traced(leaves, site_keys)
        out = self._by_rows(self.top_rowable, site_keys, [True] * len(top))
        if report is not None:
            for leaf, value in zip(leaves, out, strict=True):
                if value is not None:
                    report(leaf.path, *tree.size(leaf), value)
        which = [i for i, value in enumerate(out) if value is None]
        drawn = tree.draw([leaves[i] for i in which], [site_keys[i] for i in which], report=report) if which else []
        for i, value in zip(which, drawn, strict=True):
            out[i] = value
        return out

    def _by_rows(self, hows: list, site_keys: list, eager: list[bool]) -> list:
        """The sites `hows` says (`_rowable`) by the rows or on the host, where `_on_cpu` and `_uncommitted`
        allow; None for the others. `eager`: which sites are the framework's eager calls (top ones, not in a scan
        or a vmap), whose zeros and ones JAX makes uncommitted on the default device whatever their keys' device:
        the host makes those wherever `_on_cpu` allows, keys committed to a device too."""
        out: list[Any] = [None] * len(hows)
        if not any(how is not None for how in hows) or not _on_cpu(site_keys):
            return out
        drawn = _uncommitted(site_keys)  # (else the rows' results would not be where JAX puts the framework's draws)
        requests, places = [], []
        for i, (how, k) in enumerate(zip(hows, site_keys, strict=True)):
            if isinstance(how, tree._Leaf):  # jinit's zeros or ones, made on the host
                if drawn or eager[i]:
                    out[i] = how.host_constant()
            elif how is not None and drawn and engine.positioned(k, how.n):
                requests.append(rows.Request(how.law, rows.key_words(k), how.n, how.shape, how.dtype))
                places.append(i)
        for i, value in zip(places, rows.draw(requests) if requests else [], strict=True):
            out[i] = value
        return out

    def _stacked(self, others: list[sites.Site], keys: list, root: Any, traced: bool) -> list:
        """The stacked, batched or moved sites, from the program's keys or path keys: those `_rowable` says by the
        rows (`jinit._src.rows`), eagerly on one CPU device, the others by one kernel (`_kernel`)."""
        if not others:
            return []
        program, found = self.program, self.found
        site_keys = []
        for site in others:
            if site.key is None:
                site_keys.append(None)
            elif root is not None:
                site_keys.append(_path_keys(root, program.paths[site.leaf], found.keys[site.key]))
            else:
                site_keys.append(keys[site.key])
        out = [None] * len(others) if traced else self._by_rows(self.rowable, site_keys, self.others_top)
        which = tuple(i for i, value in enumerate(out) if value is None)
        for part in _programs(which, [self.lapack[i] for i in which], traced):
            drawn = _kernel(tuple(site_keys[i] for i in part), plan=self, which=part)
            for i, value in zip(part, drawn, strict=True):
                out[i] = value
        return out


def _programs(which: tuple[int, ...], lapack: list[bool], traced: bool) -> list[tuple[int, ...]]:
    """The sites `which` split into the programs of `_kernel`: one, but at most one site that calls LAPACK
    (`base.calls_lapack`) in each where it runs eagerly. Under jaxlib 0.10.2 on CPU, a program with two LAPACK QRs
    of drawn matrices (two stacked `orthogonal` kernels, called again and again) hung in about 1 of 300 runs, every
    thread waiting; of 24,000 runs of programs with one each, none hung (tests/test_stacked.py checks the split).
    Under a user's trace the sites join the user's program, whatever the split: one program."""
    if traced or sum(lapack) <= 1:
        return [which] if which else []
    solo = [i for i, calls in zip(which, lapack, strict=True) if calls]
    first = tuple(i for i, calls in zip(which, lapack, strict=True) if not calls or i == solo[0])
    return [first, *((i,) for i in solo[1:])]


def find(program: Program) -> sites.Found:
    """The sites of a traced program (none where `sites.find` fails: the program computes all)."""
    try:
        return sites.find(program)
    except Exception:  # a JAX whose jaxprs `find` does not understand: the program computes everything
        return sites.none(program)


MAX_PLANS = 8
"""The most plans a `Planned` keeps (one per input signature): the oldest is dropped first."""


class Planned:
    """An initialization function traced once per input signature and drawn by the engine on every call.

    The signature of a call is what its trace depends on: the structure of the arguments, the abstract value
    (shape, dtype, weak type, sharding type) of each array among them, every other argument's value, the mesh
    in effect, and the JAX flags that change tracing (``jax_enable_x64``, the default PRNG implementation,
    ``jax_threefry_partitionable``). A call with a new signature traces and plans again; at most `MAX_PLANS`
    plans are kept, in the object itself (no global state: drop the object, and they are gone). Arguments that
    cannot be hashed are traced again on every call.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        mesh: Any,
        boxed: Callable[[Any], bool],
        spec_of: Callable[[Any], Any],
        what: str,
        strip: int = 0,
        side: Callable[[], Any] | None = None,
        spec_at: Callable[[str], Any] | None = None,
    ) -> None:
        self.fn, self.mesh, self.boxed, self.spec_of, self.what, self.strip = fn, mesh, boxed, spec_of, what, strip
        self.side, self.spec_at = side, spec_at
        self.plans: dict[Any, Plan] = {}

    def plan(self, args: tuple, kwargs: dict) -> Plan:
        """The plan of a call with `args` and `kwargs`: the kept one of their signature, or a new one."""
        signature = _signature(args, kwargs, self.mesh)
        found = self.plans.get(signature) if signature is not None else None
        if found is not None:
            return found
        host_keys.prepare()  # (checked outside the trace to come, where checking compiles faster)
        new = self._traced(args, kwargs, stand_ins=True) or self._traced(args, kwargs, stand_ins=False)
        assert new is not None
        new.side = self.side() if self.side is not None else None  # what the trace left aside (an NNX graphdef)
        if signature is not None:
            if len(self.plans) >= MAX_PLANS:
                self.plans.pop(next(iter(self.plans)))
            self.plans[signature] = new
        return new

    def _traced(self, args: tuple, kwargs: dict, *, stand_ins: bool) -> Plan | None:
        """The plan of a new trace, its draws traced as stand-ins (`program.stand_in`) or not. With stand-ins, None
        where the program still needs one (a value computed from a draw, or no sites found), or where the trace
        raised: traced again with the draws, it computes that value, or raises what the model raises."""
        try:
            traced = program_module.trace(
                self.fn, args, kwargs, mesh=self.mesh, boxed=self.boxed, spec_of=self.spec_of, what=self.what,
                strip=self.strip, spec_at=self.spec_at, stand_ins=stand_ins,
            )  # fmt: skip
        except Exception:
            if stand_ins:
                return None
            raise
        found = find(traced)
        if stand_ins and program_module.needs_draws(found.jaxpr):
            return None
        return Plan(traced, found)

    def __call__(
        self, args: tuple, kwargs: dict, *, root: Any = None, progress: Any = None, existing: Any = None
    ) -> Any:
        return self.run(args, kwargs, root=root, progress=progress, existing=existing)[1]

    def run(
        self, args: tuple, kwargs: dict, *, root: Any = None, progress: Any = None, existing: Any = None
    ) -> tuple[Plan, Any]:
        """The plan for `args` and `kwargs` and its output (all of it, or what `existing` lacks: see
        `jinit._src.partial`); the plan too, for what it traced besides the leaves (`Plan.side`)."""
        progress = checks.callback("progress", progress)
        plan = self.plan(args, kwargs)
        if existing is not None:
            return plan, partial.call(plan, self.boxed, args, kwargs, existing, root=root, progress=progress)
        return plan, plan(args, kwargs, root=root, progress=progress)


def _signature(args: tuple, kwargs: dict, mesh: Any) -> Any:
    """What a trace of these arguments depends on (see `Planned`), hashable; None if an argument is not."""
    leaves, structure = jax.tree_util.tree_flatten((args, kwargs))
    parts: list[Any] = []
    for leaf in leaves:
        if program_module.is_array(leaf):
            parts.append(jax.typeof(leaf))
        else:
            parts.append((type(leaf), leaf))
    flags = tuple(
        checks.flag(name) for name in ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable")
    )
    signature = (structure, tuple(parts), flags, mesh, checks.current_mesh())
    try:
        hash(signature)
    except TypeError:
        return None
    return signature


def _explicit_mesh(shardings: list[Any]) -> Any:
    """The mesh of the leaves' shardings if it has explicit axes (the program's values are then typed with it), else
    None."""
    for sharding in shardings:
        mesh = getattr(sharding, "mesh", None)
        if getattr(mesh, "explicit_axes", ()):
            return mesh
    return None


def _inside(mesh: Any) -> Any:
    """``jax.set_mesh(mesh)`` where no mesh is set and no trace runs: outside `jit`, JAX compiles a program whose
    values are typed with a mesh's explicit axes only inside that mesh (a plain ``jax.make_mesh``'s axes are
    explicit). A user's mesh or trace is left as it is, as the framework's own initialization would find it."""
    if mesh is None or not base._outside_any_mesh():
        return contextlib.nullcontext()
    return jax.set_mesh(mesh)


_FLAT_MOVES = frozenset({"reshape", "squeeze", "copy", "copy_p"})
"""Moves that keep a value's elements in row-major order (a reshape without ``dimensions``): the rows' order."""


@dataclasses.dataclass(frozen=True)
class _Rows:
    """How the rows draw a site (`jinit._src.rows`): its law, each draw's size, the leaf's shape and dtype."""

    law: Any
    n: int
    shape: tuple[int, ...]
    dtype: np.dtype


def _rowable(program: Program, found: sites.Found, site: sites.Site) -> "_Rows | tree._Leaf | None":
    """How an eager call may draw `site` without compiling it a kernel: `_Rows` for an elementwise family's
    draws stacked along the leaf's leading axes in their keys' order (scans and vmaps along axis 0, reshapes
    that keep the row-major order); for jinit's zeros and ones, the leaf as `jinit.init_tree` makes them on
    the host (`tree._Leaf`); else None (the plan's kernel). Only for an unsharded leaf; the call still checks
    its keys and devices (`_on_cpu`, `_uncommitted`)."""
    call, aval = site.call, program.closed.out_avals[site.leaf]
    if program.shardings[site.leaf] is not None or call.sharding is not None:
        return None
    if type(call.init) in (constant.Zeros, constant.Ones):
        spec = tree.ParamSpec(tuple(aval.shape), call.init, np.dtype(aval.dtype).name, None)
        return tree._Leaf(program.paths[site.leaf], spec, None)
    stacked = all(
        (isinstance(s, sites.Vmap) and s.key_axis == 0 and s.out_axis == 0)
        or (isinstance(s, sites.Stack) and not s.broadcast)
        or (isinstance(s, sites.Op) and s.primitive.name in _FLAT_MOVES and dict(s.params).get("dimensions") is None)
        for s in site.steps
    )
    if site.key is None or not stacked or not isinstance(call.init, base.Initializer):
        return None
    try:
        law = call.init.law(call.shape, call.dtype)
    except Exception:  # (a trace checked it; anything else: the kernel draws it as the trace did)
        return None
    n = math.prod(call.shape)
    if law is None or not rows.drawable(law, n, call.dtype):
        return None
    key = found.keys[site.key]
    draws = key.shape if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key.shape[:-1]
    if math.prod(aval.shape) != math.prod(draws) * n or np.dtype(aval.dtype) != call.dtype:
        return None
    return _Rows(law, n, tuple(aval.shape), call.dtype)


def _on_cpu(keys: list) -> bool:
    """Whether `keys` are concrete, on CPU, with no mesh in effect: where the host may make a site's leaf."""
    if jax.default_backend() != "cpu" or not checks.current_mesh().empty:
        return False
    if not jax.sharding.get_abstract_mesh().empty:
        return False
    return not any(isinstance(k, Tracer) for k in keys)


def _uncommitted(keys: list) -> bool:
    """Whether the rows may draw from `keys` (besides `_on_cpu`): uncommitted, so that results go to the default
    device, as JAX's own draws from them, and each on one device."""
    return not any(isinstance(k, jax.Array) and (k.committed or len(k.devices()) != 1) for k in keys)


def _is_top(site: sites.Site) -> bool:
    """Whether `site` is a top one: its leaf is the call's result, moved to its sharding at most (an eager call
    of the framework, not one in a scan or a vmap)."""
    return site.top and _constraints_only(site.steps)


def _constraints_only(steps: tuple) -> bool:
    return all(isinstance(s, sites.Op) and s.primitive.name in sites.LAYOUTS for s in steps)


def _path_keys(root: Any, path: str, aval: Any) -> Any:
    """The keys of a leaf at `path` with `root`'s path keys: ``path_key(root, path)``, for a stacked leaf folded
    with each layer's index (row-major over the stacked key array's shape `aval`), so adding layers at the end
    changes no other layer."""
    base_key = tree.path_key(root, path)
    legacy = not jnp.issubdtype(aval.dtype, jax.dtypes.prng_key)
    shape = aval.shape[:-1] if legacy else aval.shape
    if not shape:  # a leaf of one draw (not stacked): its path key, as `jinit.init_tree` gives it
        return base_key
    flat = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(jnp.arange(math.prod(shape), dtype=jnp.uint32))
    return flat.reshape((*shape, *flat.shape[1:]))


PER_KEY_BATCHING = frozenset({"threefry2x32", "threefry4x32", "philox2x32", "philox4x32"})
"""The PRNG implementations whose `vmap` over keys draws each key's own bits (their hash is elementwise in the
key); a scan's layers under any other (``rbg``, ``unsafe_rbg``, an implementation registered later) are drawn
key by key, as the scan drew them. tests/test_stacked.py checks every implementation JAX registers."""


def per_key(keys: Any) -> bool:
    """Whether the layers of a scan over `keys` must be drawn key by key (``lax.map``) rather than by `vmap`."""
    if keys is None:
        return False
    return checks.impl_of(keys) not in PER_KEY_BATCHING


def _size(aval: Any) -> tuple[int, int]:
    """A leaf's elements and bytes, from its abstract value."""
    n = math.prod(aval.shape)
    return n, n * np.dtype(aval.dtype).itemsize
