"""A framework's initialization as a program: traced once, with the calls of jinit's initializers recorded.

`trace` runs a model's initialization (a linen ``module.init``, a Haiku ``f.init``, an NNX or Equinox constructor)
under `jax.make_jaxpr`, on the abstract values of its array arguments, while every call of a jinit initializer
appends itself to `base.CALLS` (initializer, key, shape, dtype, sharding, result): a `Program` is the closed jaxpr
of the output's leaves, what each leaf is (its path, shape, sharding) and those calls, whose key and result are
tracers of the jaxpr (or of a scan's body in it, wrapped by `vmap`'s tracers). `jinit._src.sites` finds the
leaves those calls make; `jinit._src.plan` draws them and evaluates the rest with `evaluate`.

While tracing, an initializer whose elements follow a law (`jinit.Initializer.law`) does not draw: it returns a
stand-in (`stand_in`), an equation of the draw's shape and dtype computed from its key, batched as its key is,
with no implementation. The engine draws every site from the call's key alone, and removing the sites from the
program removes their stand-ins; tracing the draws themselves was most of a stacked model's trace (0.03 s of an
NNX stack's 0.05 s). Where a stand-in is still in the program that computes the other leaves (a value the model
computes from a parameter, a site `jinit._src.sites` could not find) or where the trace with stand-ins raises,
`jinit._src.plan` traces the model again, drawing (`stand_ins=False`): the values are the framework's either
way, and a stand-in is never evaluated (it would raise, having no implementation).

`evaluate` runs a jaxpr operation by operation, only the operations its outputs need, each as JAX runs it eagerly
(its own cached primitives and jitted functions), and drops each value after its last use, so the framework's own
parameters and state cost their own memory and no more. What the host computes exactly is not compiled: the keys
(`jinit._src.host_keys`), those a scan's layers take included (`_handed_keys`), and arrays filled with a literal
(`_filled`); a body is compiled without the outputs nobody reads (`_needed`). Their values are the eager
initialization's: a program is compiled whole only where compiling cannot change a value (`evaluator`: keys,
integers, constants). The key operations of an implementation whose bits come from XLA's RngBitGenerator
(``unsafe_rbg``) are compiled one by one (`_key_op`): bound eagerly, JAX runs their dozen integer operations one
at a time, each compiled on first use (0.4 s for ``unsafe_rbg``'s ``fold_in``), where compiled together they cost
one compilation and give the same integers.

JAX internals relied on, and how a change is survived: a primitive of `jax.extend.core` batched by a rule in
``jax.interpreters.batching.primitive_batchers`` (the stand-ins; where either is missing, initializers draw
while tracing, as before); ``eqn.primitive.bind`` with ``get_bind_params`` (the way JAX's own ``eval_jaxpr``
evaluates); ``partial_eval.dce_jaxpr_consts`` (without it, bodies are compiled whole); a ``broadcast_in_dim``
literal's ``val``. `evaluation_works` checks once per process, on a program shaped like an initialization, that
`evaluate` gives what the program gives eagerly, and `filling_works` that a fill is what ``jnp.full`` gives (the
one check made where fills are all that is left to evaluate: it compiles nothing); if not (or if anything raises)
the program is run by `jax.extend.core.jaxpr_as_fun`, eagerly: every operation computed, the same values.
The ``sharding`` and ``device`` properties of ``jax.core.Tracer``, replaced while tracing on a JAX before 0.12
(`cheap_attribute_probes`): only where they are properties whose code calls ``_origin_msg``, by properties that
raise the same AttributeError; on any other JAX they are left alone, and tracing is as fast or as slow as JAX's.
"""

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.core import ShapedArray, Tracer
from jax.extend import core as jex_core
from jax.sharding import Mesh

from jinit._src import base, checks, engine, host_keys, kernel, tree

try:  # dead-code elimination into bodies (`_needed`); see the module docstring
    from jax._src.interpreters import partial_eval as _pe
except ImportError:  # pragma: no cover - a JAX that moved it: bodies computed whole, the same values
    _pe = None


@dataclasses.dataclass
class Program:
    """A traced initialization: its jaxpr, the leaves of its output, and the jinit calls made while tracing it.

    Attributes:
      closed: the closed jaxpr; its inputs are the array leaves of the arguments (`dynamic` of `leaves`), its
        outputs the output's leaves, each constrained to its sharding where it has one.
      treedef: the output's structure.
      paths, shapes, shardings: each leaf's path (as `jinit.path_key` takes it), shape and resolved sharding.
      calls: the recorded calls of jinit initializers, in the order they were made.
      leaves, structure, dynamic: the flattened arguments, their structure, and which of them are arrays.
    """

    closed: Any
    treedef: Any
    paths: list[str]
    shapes: list[tuple[int, ...]]
    shardings: list[Any]
    calls: list[base.Call]
    leaves: list[Any]
    structure: Any
    dynamic: list[int]

    def arguments(self, args: tuple, kwargs: dict) -> list:
        """The array leaves of `args` and `kwargs` (of this program's structure), the program's inputs."""
        leaves, structure = jax.tree_util.tree_flatten((args, kwargs))
        if structure != self.structure:
            raise ValueError(
                "The arguments do not have the structure of those the initialization was traced with. "
                f"Received: {checks.show(structure)}, traced with {checks.show(self.structure)}"
            )
        return [leaves[i] for i in self.dynamic]


def is_array(leaf: Any) -> bool:
    """Whether an argument's leaf is traced (an array), rather than passed to the model as it is."""
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | Tracer)


def trace(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    mesh: Mesh | None,
    boxed: Callable[[Any], bool],
    spec_of: Callable[[Any], Any],
    what: str,
    strip: int = 0,
    spec_at: Callable[[str], Any] | None = None,
    stand_ins: bool = True,
) -> Program:
    """Traces ``fn(*args, **kwargs)`` on the abstract values of the arguments' arrays (see the module docstring).

    Args:
      fn: the initialization; its output is a pytree of arrays (boxes of metadata allowed).
      args, kwargs: its arguments; their arrays are traced, everything else is passed as is.
      mesh: the mesh of the parameters' partition specs (None: the current mesh, if any).
      boxed: whether an output node is a metadata box around one parameter (its path is the box's path).
      spec_of: a box's partition spec (a `PartitionSpec`, a `Sharding` or None).
      what: how error messages name `fn`'s output.
      strip: how many leading components of the output's paths are not part of a parameter's path (1 for
        Haiku's ``(params, state)``).
      spec_at: the partition spec of an unboxed leaf, by its path (an Equinox model's, from the user's rules).
      stand_ins: whether the draws of initializers with a law are traced as stand-ins (`stand_in`), not drawn.
    """
    leaves, structure = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = [i for i, leaf in enumerate(leaves) if is_array(leaf)]
    # without a mesh, partitioning metadata is only metadata, as for the framework's own initialization
    context = checks.current_mesh()
    meshed = mesh is not None or not context.empty
    spec_mesh = mesh if mesh is not None else context if meshed else None  # concrete: inside the trace it is not
    calls: list[base.Call] = []
    survey: dict[str, Any] = {}

    def program(arrays: list) -> list:
        filled = list(leaves)
        for i, array in zip(dynamic, arrays, strict=True):
            filled[i] = array
        call_args, call_kwargs = jax.tree_util.tree_unflatten(structure, filled)
        token = base.CALLS.set(base.Recording(calls, stand_in if stand_ins and _STAND_IN is not None else None))
        try:
            out = fn(*call_args, **call_kwargs)
        finally:
            base.CALLS.reset(token)
        specs = (spec_of, spec_at) if meshed else (None, None)
        survey.update(_survey(out, calls, spec_mesh, mesh is not None, boxed, specs, what, strip))
        return [
            leaf if sharding is None else engine.constrain(leaf, sharding)
            for leaf, sharding in zip(jax.tree.leaves(out), survey["shardings"], strict=True)
        ]

    abstract = [_abstract(leaves[i]) for i in dynamic]
    with concrete_shapes(what), cheap_attribute_probes():
        closed = jax.make_jaxpr(program)(abstract)
    return Program(closed, survey["treedef"], survey["paths"], survey["shapes"], survey["shardings"], calls,
                   leaves, structure, dynamic)  # fmt: skip


def stand_in(key: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """While tracing, what an initializer with a law returns for its draw from `key` (see the module docstring):
    a value of the draw's shape and dtype, computed from `key` and batched as `key` is, with no values."""
    assert _STAND_IN is not None
    return _STAND_IN.bind(key, shape=tuple(shape), dtype=np.dtype(dtype))


def needs_draws(jaxpr: Any) -> bool:
    """Whether `jaxpr` (or a body in it) still has a stand-in: then the draw's values are needed."""
    return any(
        (_STAND_IN is not None and eqn.primitive is _STAND_IN) or any(needs_draws(body) for body in bodies(eqn))
        for eqn in jaxpr.eqns
    )


def _stand_in_primitive() -> Any:
    """The stand-ins' primitive: its abstract value is the draw's, and `vmap` batches it as it batches the key."""
    try:
        from jax.interpreters import batching

        primitive = jex_core.Primitive("jinit_stand_in")

        def abstract(key: Any, *, shape: tuple[int, ...], dtype: np.dtype) -> Any:
            return ShapedArray(shape, dtype)

        def batched(args: Sequence[Any], dims: Sequence[Any], *, shape: tuple[int, ...], dtype: np.dtype) -> Any:
            (key,), (dim,) = args, dims
            key = jax.numpy.moveaxis(key, dim, 0)
            return primitive.bind(key, shape=(key.shape[0], *shape), dtype=dtype), 0

        primitive.def_abstract_eval(abstract)
        batching.primitive_batchers[primitive] = batched
        return primitive
    except Exception:  # pragma: no cover - a JAX without these: initializers are traced drawing, as before
        return None


_STAND_IN = _stand_in_primitive()


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    """An array argument as the program is traced with it: its shape, dtype and weak type."""
    aval = jax.typeof(leaf)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=getattr(aval, "weak_type", False))


def _survey(
    out: Any,
    calls: list[base.Call],
    mesh: Mesh | None,
    replicate: bool,
    boxed: Callable[[Any], bool],
    specs: tuple[Callable[[Any], Any] | None, Callable[[str], Any] | None],
    what: str,
    strip: int,
) -> dict[str, Any]:
    """Each leaf of the traced output: its path, shape and sharding (`replicate`: over `mesh` when it has none).

    `specs` are a box's partition spec (`spec_of`) and an unboxed leaf's by its path (`spec_at`), or None."""
    spec_of, spec_at = specs
    entries, _ = tree._flatten(out, what, is_leaf=boxed)
    made = {id(call.result): call for call in calls}  # a call given `out_sharding` carries its sharding
    paths, shapes, shardings = [], [], []
    for path, node in entries:
        spec = spec_of(node) if spec_of is not None and boxed(node) else None
        if spec is None and spec_at is not None and not boxed(node):
            spec = spec_at("/".join(path.split("/")[strip:]))
        inner = jax.tree_util.tree_flatten_with_path(node)[0]
        for sub, leaf in inner:
            leaf_path = path if len(inner) == 1 else f"{path}/{jax.tree_util.keystr(sub, simple=True, separator='/')}"
            leaf_path = "/".join(leaf_path.split("/")[strip:])
            shape = tuple(getattr(leaf, "shape", ()))
            call = made.get(id(leaf))
            sharding = call.sharding if call is not None and call.result is leaf and call.sharding is not None else spec
            unsharded = sharding is None and not replicate
            paths.append(leaf_path)
            shapes.append(shape)
            shardings.append(None if unsharded else tree.resolve(leaf_path, sharding, shape, mesh))
    return {"treedef": jax.tree.structure(out), "paths": paths, "shapes": shapes, "shardings": shardings}


_PROBED = ("sharding", "device")  # the attributes of a concrete array that code probes with `getattr`/`hasattr`


@contextlib.contextmanager
def cheap_attribute_probes() -> Iterator[None]:
    """While tracing, a traced value's ``sharding`` and ``device`` raise their AttributeError at once.

    Before JAX 0.12, the message of that AttributeError describes where the value came from, by walking every
    operation traced so far; code that probes the attribute once per operation (``getattr(value, "sharding",
    None)`` in Flax NNX's `Variable.set_value`, for every key an `nnx.Rngs` gives) then traces in quadratic time:
    about 3 s of a GPT-2-medium NNX constructor's trace. JAX 0.12 dropped that part of the message; here the two
    properties do as JAX 0.12's do, for the duration of the trace and only on a JAX whose properties call
    ``_origin_msg``, and are restored after it. The same AttributeError is raised, so ``hasattr`` and ``getattr``
    answer as before; only its message is shorter (for any thread tracing meanwhile too).
    """
    saved = {name: Tracer.__dict__.get(name) for name in _PROBED}
    walks = all(
        isinstance(prop, property)
        and prop.fget is not None
        and {"_origin_msg", "_error_repr"} <= set(prop.fget.__code__.co_names)
        for prop in saved.values()
    )
    if not walks:
        yield
        return
    for name in _PROBED:
        setattr(Tracer, name, property(functools.partial(_unavailable, name=name)))
    try:
        yield
    finally:
        for name, prop in saved.items():
            setattr(Tracer, name, prop)


def _unavailable(tracer: Any, name: str) -> Any:
    """A traced value's concrete-array attribute `name`: unavailable, as JAX 0.12 says it."""
    raise AttributeError(f"The '{name}' attribute is not available on {tracer._error_repr()}.")


@contextlib.contextmanager
def concrete_shapes(what: str) -> Iterator[None]:
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


# ------------------------------------------------------------------------------------------------ evaluation


WHOLE = 64
"""A program of at most this many equations is compiled whole (`evaluator`) if its values are exact (`_exact`): a
scanned model's few key derivations compile faster as one program than one by one; an unrolled model's hundreds
of alike ``fold_in`` compile once each when bound one by one, and would take long as one program."""

MOVES = frozenset({
    "broadcast_in_dim", "concatenate", "copy", "device_put", "dynamic_slice", "dynamic_update_slice",
    "expand_dims", "gather", "iota", "optimization_barrier", "reshape", "reshard", "rev", "select_n",
    "sharding_constraint", "slice", "squeeze", "transpose",
})  # fmt: skip
"""Primitives that move or select values without arithmetic: compiled, they give what they give eagerly."""


def evaluator(jaxpr: Any, consts: Sequence[Any]) -> Callable[[Sequence[Any]], list]:
    """A function of the inputs of `jaxpr` (open, its constants `consts`) that returns its outputs: its keys in
    NumPy where `jinit._src.host_keys` runs them (concrete inputs), the rest one jitted program for a small jaxpr
    (`WHOLE`) of threefry2x32's keys or RngBitGenerator's (`_compilable_keys`) that computes no floating-point
    value (`_exact`), else `evaluate`. Made once per plan, so that its compilation is kept.

    Floating-point arithmetic is evaluated as the framework evaluates it eagerly, operation by operation: compiled
    as one program, XLA fuses, simplifies and folds it, and rounds it its own way (a Haiku batch norm's moving
    averages came out 1 ulp off). Keys of other implementations are evaluated eagerly too: jax 0.10.2's compiled
    ``threefry4x32`` ``fold_in`` of a batch of keys never returns on CPU."""
    on_jax = _jax_evaluator(jaxpr, consts)
    host = host_keys.compile(jaxpr, consts)
    if host is not None:
        return lambda args: on_jax(args) if any(isinstance(a, Tracer) for a in args) else host(args)
    keys = [i for i, v in enumerate(jaxpr.outvars) if _is_key(v)]
    if not keys or len(keys) == len(jaxpr.outvars):
        return on_jax
    # the keys on the host, the rest (a framework's own initializers, its state) by JAX
    rest = [i for i in range(len(jaxpr.outvars)) if i not in set(keys)]
    program = jaxpr.replace(outvars=[jaxpr.outvars[i] for i in rest])
    handed = _handed_keys(program)
    key_vars = [jaxpr.outvars[i] for i in keys]
    host = host_keys.compile(jaxpr.replace(outvars=key_vars + handed), consts) if handed else None
    if host is None:
        handed, host = [], host_keys.compile(jaxpr.replace(outvars=key_vars), consts)
        if host is None:
            return on_jax
    given = _needed(_given(program, handed), consts) if handed else None
    others = functools.cache(lambda: _needed(program, consts))

    def split(args: Sequence[Any]) -> list:
        if any(isinstance(a, Tracer) for a in args):
            return on_jax(args)
        computed = host(args)
        # (under a mesh, JAX lays out the keys it computes as it does eagerly)
        values = given([*args, *computed[len(keys) :]]) if given and checks.no_mesh() else others()(args)
        out: list[Any] = [None] * len(jaxpr.outvars)
        for positions, part in ((keys, computed[: len(keys)]), (rest, values)):
            for i, value in zip(positions, part, strict=True):
                out[i] = value
        return out

    return split


def _key_only(eqn: Any) -> bool:
    """Whether `eqn` makes typed keys alone, from keys or key data, with no body (a split, a fold-in, a slice)."""
    return not bodies(eqn) and all(_typed_key(v) for v in eqn.outvars)


def _typed_key(v: Any) -> bool:
    return host_keys._key_impl(getattr(v, "aval", None)) is not None


def _handed_keys(jaxpr: Any) -> list[Any]:
    """The typed keys that `jaxpr`'s key operations make at its top level for the operations it needs that are not
    key operations (a scan's layers' keys, split from the model's): where the host computes them with the sites'
    keys, JAX compiles no split of its own (0.2 s of a scanned ViT's first call)."""
    handed: dict[Any, None] = {}  # (ordered)
    for eqn in _kept(jaxpr):
        if not _key_only(eqn):
            handed.update((v, None) for v in eqn.invars if isinstance(v, jex_core.Var) and _typed_key(v))
    made = {v for eqn in jaxpr.eqns if _key_only(eqn) for v in eqn.outvars}
    return [v for v in handed if v in made]


def _given(jaxpr: Any, handed: list[Any]) -> Any:
    """`jaxpr` taking the `handed` keys as inputs after its own, without the key operations that made them."""
    made = set(handed)
    eqns = [eqn for eqn in jaxpr.eqns if not (_key_only(eqn) and any(v in made for v in eqn.outvars))]
    return jaxpr.replace(invars=[*jaxpr.invars, *handed], eqns=eqns)


def _needed(jaxpr: Any, consts: Sequence[Any]) -> Callable[[Sequence[Any]], list]:
    """`_jax_evaluator` of what `jaxpr`'s outputs need, inside bodies too: a ``scan`` whose body also computes the
    keys that the host computes (the sites' keys of a stacked model) is compiled without them (0.2 s of a ViT-L's
    first call). What is left is the same operations on the same inputs, each output still one of its body's."""
    if _pe is None:
        return _jax_evaluator(jaxpr, consts)
    try:
        jaxpr, used_consts, used = _pe.dce_jaxpr_consts(jaxpr, [True] * len(jaxpr.outvars))
    except Exception:  # (a JAX whose elimination fails on this program: computed whole, the same values)
        return _jax_evaluator(jaxpr, consts)
    run = _jax_evaluator(jaxpr, [c for c, u in zip(consts, used_consts, strict=True) if u])
    return lambda args: run([a for a, u in zip(args, used, strict=True) if u])


def _jax_evaluator(jaxpr: Any, consts: Sequence[Any]) -> Callable[[Sequence[Any]], list]:
    """A small exact program compiled whole, but one of fills alone evaluated (in NumPy, compiling nothing) where
    `_on_host`; any other program evaluated."""
    if len(jaxpr.eqns) <= WHOLE and _compilable_keys(jaxpr) and _exact(jaxpr):  # (no `evaluation_works` to check)
        run = kernel.jit(jex_core.jaxpr_as_fun(jex_core.ClosedJaxpr(jaxpr, list(consts))))  # integers only
        if all(_filled(eqn) for eqn in _kept(jaxpr)):
            return lambda args: evaluate(jaxpr, consts, args) if _on_host(consts, args) else list(run(*args))
        return lambda args: list(run(*args))
    return lambda args: evaluate(jaxpr, consts, args)


def _is_key(v: Any) -> bool:
    """Whether a program's output is a key (typed, or a legacy ``uint32`` key's data)."""
    return _typed_key(v) or getattr(getattr(v, "aval", None), "dtype", None) == np.uint32


def _exact(jaxpr: Any) -> bool:
    """Whether `jaxpr` (its calls' and loops' bodies included) computes no floating-point value other than by
    moving values (`MOVES`): its keys, integers and moved values are the same compiled and eager."""
    for eqn in jaxpr.eqns:
        inner = bodies(eqn)
        if inner:
            if not all(_exact(body) for body in inner):
                return False
        elif eqn.primitive.name not in MOVES and any(_inexact(v) for v in eqn.outvars):
            return False
    return True


def _inexact(v: Any) -> bool:
    dtype = getattr(getattr(v, "aval", None), "dtype", None)
    return dtype is not None and jax.numpy.issubdtype(dtype, jax.numpy.inexact)


def bodies(eqn: Any) -> list[Any]:
    """The open jaxprs in an equation's parameters (a ``scan``'s or a call's body)."""
    out = []
    for value in eqn.params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, jex_core.ClosedJaxpr):
                out.append(item.jaxpr)
            elif isinstance(item, jex_core.Jaxpr):
                out.append(item)
    return out


def _compilable_keys(jaxpr: Any) -> bool:
    """Whether every key in `jaxpr`'s equations is threefry2x32's, or of an implementation whose bits come from
    XLA's RngBitGenerator (`_generated_keys`): compiled, their operations give what they give eagerly."""
    for eqn in jaxpr.eqns:
        for v in (*eqn.invars, *eqn.outvars):
            impl = host_keys._key_impl(getattr(v, "aval", None))
            if impl is not None and impl.name != "threefry2x32" and not engine._bit_generator(impl):
                return False
    return True


KEY_OPS = frozenset({"random_seed", "random_split", "random_fold_in", "random_bits", "random_wrap", "random_unwrap"})


def _generated_keys(eqn: Any) -> bool:
    """Whether `eqn` is a key operation of implementations whose bits come from XLA's RngBitGenerator only: compiled
    by `_key_op` rather than bound (not threefry's: jax 0.10.2's compiled ``threefry4x32`` ``fold_in`` of a batch
    of keys never returns on CPU)."""
    if eqn.primitive.name not in KEY_OPS:
        return False
    avals = [getattr(v, "aval", None) for v in (*eqn.invars, *eqn.outvars)]
    impls = [impl for impl in map(host_keys._key_impl, avals) if impl is not None]
    return bool(impls) and all(engine._bit_generator(impl) for impl in impls)


@kernel.jit(static_argnames=("primitive", "params"))
def _key_op(*args: Any, primitive: Any, params: tuple) -> Any:
    """A key operation, compiled (once per operation, parameters and shapes): integers, as eager."""
    return primitive.bind(*args, **dict(params))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list:
    """The outputs of `jaxpr` (open, its constants `consts`) for `args`, from the operations they need only, bound
    one by one as JAX evaluates eagerly, each value dropped after its last use (see the module docstring); those
    that no operation computes, new arrays (`_fresh`)."""
    if _evaluable(jaxpr, consts, args):
        out = _bind_each(jaxpr, consts, args)
    else:
        out = list(jex_core.jaxpr_as_fun(jex_core.ClosedJaxpr(jaxpr, list(consts)))(*args))
    constants = set(jaxpr.constvars)
    pairs = zip(jaxpr.outvars, out, strict=True)
    return [_fresh(x) if isinstance(v, jex_core.Literal) or v in constants else x for v, x in pairs]


def _evaluable(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> bool:
    """Whether `_bind_each` gives the eager results here (`evaluation_works`), or needs no check that compiles: where
    all it would run are fills made in NumPy (`_filled`), checked without compiling (`filling_works`). That is all
    that is left of a model whose keys the host computes (its constant parameters and state), and there the check's
    own compilations (0.08 s) would be every compilation of its first call but the draws'."""
    if _on_host(consts, args) and all(_filled(eqn) for eqn in _kept(jaxpr)):
        return filling_works()
    return evaluation_works()


def _on_host(consts: Sequence[Any], args: Sequence[Any]) -> bool:
    """Whether `_bind_each` makes fills in NumPy (`_full`): concrete inputs, and no mesh set."""
    return not any(isinstance(a, Tracer) for a in (*consts, *args)) and checks.no_mesh()


def _kept(jaxpr: Any) -> list[Any]:
    """The equations that `jaxpr`'s outputs need (or that have effects), in order."""
    needed = {v for v in jaxpr.outvars if isinstance(v, jex_core.Var)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in needed for v in eqn.outvars):
            kept.append(eqn)
            needed.update(v for v in eqn.invars if isinstance(v, jex_core.Var))
    kept.reverse()
    return kept


def _bind_each(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list:
    kept = _kept(jaxpr)
    last: dict[Any, int] = {}  # each variable's last reader among the kept equations
    for i, eqn in enumerate(kept):
        for v in eqn.invars:
            if isinstance(v, jex_core.Var):
                last[v] = i
    outputs = {v for v in jaxpr.outvars if isinstance(v, jex_core.Var)}
    env = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    on_host = _on_host(consts, args)
    for i, eqn in enumerate(kept):
        bound = eqn.primitive.get_bind_params(eqn.params)  # (subfuns, params) before JAX 0.7, params since
        subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
        static = tuple(sorted(params.items())) if not subfuns and _generated_keys(eqn) else None
        if on_host and _filled(eqn):
            out = _full(eqn.outvars[0].aval, eqn.invars[0].val)
        elif static is not None and _hashable(static):
            out = _key_op(*map(read, eqn.invars), primitive=eqn.primitive, params=static)
        else:
            out = eqn.primitive.bind(*subfuns, *map(read, eqn.invars), **params)
        env.update(zip(eqn.outvars, out if eqn.primitive.multiple_results else [out], strict=True))
        for v in eqn.invars:  # freed as soon as nothing reads it again: memory at the size of what is kept
            if isinstance(v, jex_core.Var) and last.get(v) == i and v not in outputs:
                env.pop(v, None)
    return [read(v) for v in jaxpr.outvars]


def _filled(eqn: Any) -> bool:
    """Whether `eqn` fills an array with a literal (``jnp.zeros``, ``jnp.ones``, ``jnp.full``: a framework's
    constant parameters and state), which `_bind_each` makes in NumPy: eagerly, JAX compiles a program for each
    shape (0.04 s each, four of them in a ViT's first call), for the same bits in a new array on the default
    device. Not where the result is laid out on devices, or weakly typed (as NumPy makes no array)."""
    if eqn.primitive.name != "broadcast_in_dim" or not isinstance(eqn.invars[0], jex_core.Literal):
        return False
    weak = getattr(eqn.outvars[0].aval, "weak_type", False)
    return eqn.params.get("sharding") is None and not weak and np.ndim(eqn.invars[0].val) == 0


def _full(aval: Any, value: Any) -> jax.Array:
    """A new array of `aval`'s shape and dtype filled with `value`, on the default device: a large one in memory
    that JAX adopts (no second copy), a small one copied there."""
    dtype = np.dtype(aval.dtype)
    n = int(np.prod(aval.shape, dtype=np.int64))
    if n * dtype.itemsize < LARGE:
        return jax.device_put(np.full(aval.shape, value, dtype))
    host = engine._aligned_empty(n, dtype).reshape(aval.shape)  # (zeroed: a zero fill touches no page)
    if np.asarray(value, dtype).tobytes() != bytes(dtype.itemsize):
        host[...] = value
    return jax.device_put(host, may_alias=True)


LARGE = 1 << 20
"""The bytes from which `_full` fills memory that JAX adopts rather than copies (a page-aligned mapping each)."""


def _fresh(x: Any) -> Any:
    """An output that no operation computed (a literal or a constant of the program) as a new array on each call,
    as an eager call makes it: a literal as JAX's array, not its literal type (placed as `jnp.asarray` places it,
    without compiling where no mesh is set), then copied, as a constant array is; so that a model's state never
    shares a buffer with the plan or with another call's state (donated once, it would be deleted in both).
    (A literal put on the device may alias its own memory, the same on every call: hence the copy after.)"""
    if isinstance(x, Tracer):
        return x
    if not isinstance(x, jax.Array):
        x = jax.device_put(x) if checks.no_mesh() else jax.numpy.asarray(x)
    return jax.device_put(x, may_alias=False)


@functools.cache
def evaluation_works() -> bool:
    """Whether `_bind_each` gives the eager results of a program like a model's initialization, fills included
    (`filling_works`): checked once per process (a JAX that changes its jaxprs makes jinit slower, never
    different)."""

    def program(data: Any, x: Any) -> Any:
        unused = x * 3  # (not needed: never computed)
        del unused
        keys = jax.random.wrap_key_data(data, impl="threefry2x32")
        return [jax.random.key_data(keys), jax.random.key_data(keys[1])], x * 2

    # keys wrapped, sliced and unwrapped, a float computed, one not: every operation a parameterized bind, and
    # cheap to run eagerly (0.1 s of first compilations, where hashing keys would compile threefry: 0.3 s)
    args = (np.array([[1, 2], [3, 4]], np.uint32), jax.device_put(np.arange(6.0, dtype=np.float32).reshape(2, 3)))
    try:
        closed = jax.make_jaxpr(program)(*args)
        ours = _bind_each(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        theirs = jax.tree.leaves(program(*args))  # eagerly, as the framework's own initialization runs
        ours = [_plain(x) for x in ours]
        theirs = [_plain(x) for x in theirs]
        same = len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    except Exception:
        return False
    return same and filling_works()


@functools.cache
def filling_works() -> bool:
    """Whether `_bind_each` fills a literal in NumPy (`_filled`) as ``jnp.full`` is documented to (checked once per
    process, without compiling)."""
    try:
        eqns = jax.make_jaxpr(lambda: jax.numpy.full((2, 3), -1.5, jax.numpy.bfloat16))().jaxpr.eqns
        if len(eqns) != 1 or not _filled(eqns[0]):
            return False
        full = _full(eqns[0].outvars[0].aval, eqns[0].invars[0].val)
        expected = np.full((2, 3), -1.5, jax.numpy.bfloat16)
        return full.dtype == expected.dtype and np.asarray(full).tobytes() == expected.tobytes()
    except Exception:
        return False


def _plain(x: Any) -> np.ndarray:
    return np.asarray(jax.random.key_data(x) if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
