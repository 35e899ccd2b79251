"""A model's key program run on the host, in NumPy: its keys without compiling anything.

What a plan's program computes (`jinit._src.plan`) is, for a model whose initializers are all jinit's, only keys:
a ``fold_in`` per parameter and a ``split`` per stack of layers, perhaps inside a ``scan`` of a ``remat``. Compiled
by XLA on CPU, that program takes longer to compile (a third of a second for a scanned ViT) than the rest of the
initialization's own work, although it hashes a few hundred words. `compile` turns such a program into a Python
function of NumPy arrays: integer operations only, each written with XLA's semantics (wrapping arithmetic, shifts
past the width giving zero), the threefry hash (`jinit._src.threefry.hash_host`), and the key operations
(``random_seed``, ``random_split``, ``random_fold_in``, ``random_wrap``, ``random_unwrap``, ``random_clone``)
expanded through the key's own implementation, traced once per operation into the same integer operations (the
fold-ins that do not read each other's keys, a model's one per parameter, batched into one: `_schedule`). It
works for every implementation whose functions are built of those operations: ``threefry2x32`` (partitionable
or not) and ``rbg`` (whose key derivation is threefry's); any other (``unsafe_rbg`` derives keys with XLA's bit
generator) and any program with another operation (a float, a random draw) is left to `jinit._src.program`.

JAX internals relied on, and how a change is survived: a key array's ``dtype._impl`` (the implementation's
``seed``, ``split`` and ``fold_in`` on raw key data, which JAX's own key primitives apply) and the parameters of
the primitives listed in `_OPS`. `verified` checks once per process and per implementation, on a program shaped
like a model's (seeds, splits and fold-ins, batched and in a scan), that `compile`'s function gives what JAX's
compiled program gives; where it does not, or where anything is missing or raises, `compile` returns None and
the program is run by JAX as before: slower, the same values. Under a (jax, jaxlib) release listed in `CHECKED`,
on CPU, what JAX's compiled program gives is known (`KNOWN`, which tests/test_host_keys.py derives from JAX
again under each listed release), and the host's keys are compared with it without compiling it: a release's
key derivation is its code's, and a host that computes other keys still fails. Any other release or platform
compiles JAX's program, so a new JAX may make the check slower, never its answer wrong.
"""

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.extend import core as jex_core
from jax.extend import random as jex_random

from jinit._src import checks, kernel, threefry

Env = dict[Any, np.ndarray]


class Unsupported(Exception):
    """An operation `compile` does not run on the host (the program is then JAX's to run)."""


def _int(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "uib":
        raise Unsupported(dtype)
    return dtype


def _shift(x: np.ndarray, s: np.ndarray, op: Callable) -> np.ndarray:
    """A shift with XLA's semantics: by the width or more (or a negative amount), logical shifts give zero."""
    bits = x.dtype.itemsize * 8
    s = np.asarray(s).astype(np.int64)
    inside = (s >= 0) & (s < bits)
    return np.where(inside, op(x, np.where(inside, s, 0).astype(x.dtype)), np.zeros((), x.dtype))


def _shift_arithmetic(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """XLA's arithmetic shift: the word as signed (unsigned ones too), the sign filling it past the width."""
    bits = x.dtype.itemsize * 8
    signed = np.dtype(f"int{bits}")
    s = np.asarray(s).astype(np.int64)
    s = np.where((s < 0) | (s >= bits), bits - 1, s)
    return np.right_shift(x.view(signed), s.astype(signed)).view(x.dtype)


_ELEMENTWISE: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "and": np.bitwise_and, "or": np.bitwise_or,
    "xor": np.bitwise_xor, "not": np.invert, "max": np.maximum, "min": np.minimum, "neg": np.negative,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal,
    "shift_left": lambda x, s: _shift(x, s, np.left_shift),
    "shift_right_logical": lambda x, s: _shift(x.view(_unsigned(x.dtype)), s, np.right_shift).view(x.dtype),
    "shift_right_arithmetic": _shift_arithmetic,
    "select_n": lambda which, *cases: np.choose(which.astype(np.int64), cases),
}  # fmt: skip


def _unsigned(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"uint{dtype.itemsize * 8}") if dtype.kind == "i" else dtype


def _iota(*, dtype: Any, shape: tuple, dimension: int, **_: Any) -> np.ndarray:
    index = np.arange(shape[dimension], dtype=_int(dtype))
    index = index.reshape([-1 if d == dimension else 1 for d in range(len(shape))])
    return np.broadcast_to(index, shape).copy()


def _iota_2x32(*, shape: tuple) -> list[np.ndarray]:
    """The row-major index of each element of `shape`, as 64 bits: its high and its low 32-bit words."""
    flat = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    return [(flat >> np.uint64(32)).astype(np.uint32), flat.astype(np.uint32)]


def _broadcast_in_dim(x: np.ndarray, *, shape: tuple, broadcast_dimensions: tuple, **_: Any) -> np.ndarray:
    expanded = np.reshape(x, [x.shape[broadcast_dimensions.index(d)] if d in broadcast_dimensions else 1
                              for d in range(len(shape))])  # fmt: skip
    return np.broadcast_to(expanded, shape).copy()


def _slice(x: np.ndarray, *, start_indices: tuple, limit_indices: tuple, strides: tuple | None) -> np.ndarray:
    strides = strides or (1,) * len(start_indices)  # (a key array's data has its trailing axes besides)
    return x[tuple(slice(a, b, s) for a, b, s in zip(start_indices, limit_indices, strides, strict=True))]


def _split(x: np.ndarray, *, sizes: tuple, axis: int) -> list[np.ndarray]:
    return np.split(x, np.cumsum([int(s) for s in sizes])[:-1], axis=axis)


def _convert(x: np.ndarray, *, new_dtype: Any, **_: Any) -> np.ndarray:
    _int(x.dtype)
    return x.astype(_int(new_dtype))


def _threefry(k1: np.ndarray, k2: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> list[np.ndarray]:
    shape = np.broadcast_shapes(k1.shape, k2.shape, x0.shape, x1.shape)
    return list(threefry.hash_host(*(np.broadcast_to(a, shape) for a in (k1, k2, x0, x1))))


_OPS: dict[str, Callable[..., Any]] = {
    "iota": lambda **p: _iota(**p),
    "iota_2x32_shape": lambda **p: _iota_2x32(**p),
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": lambda x, *, new_sizes, dimensions=None, **_: np.reshape(x, new_sizes).copy(),
    "squeeze": lambda x, *, dimensions: np.squeeze(x, axis=tuple(dimensions)),
    "transpose": lambda x, *, permutation: np.transpose(x, permutation).copy(),
    "rev": lambda x, *, dimensions: np.flip(x, tuple(dimensions)).copy(),
    "concatenate": lambda *xs, dimension: np.concatenate(xs, axis=dimension),
    "stack": lambda *xs, axis: np.stack(xs, axis=axis),
    "slice": _slice,
    "split": _split,
    "convert_element_type": _convert,
    "copy": lambda x: x.copy(),
    "copy_p": lambda x: x.copy(),
    "sharding_constraint": lambda x, **_: x,
    "optimization_barrier": lambda *xs: list(xs),
    "threefry2x32": _threefry,
}
"""The operations other than calls and keys, by primitive name: each a function of NumPy arrays and parameters."""

_KEY_MOVES: dict[str, Callable[..., Any]] = {
    "reshape": lambda x, *, new_sizes, key_shape, dimensions=None, **_: np.reshape(x, (*new_sizes, *key_shape)).copy(),
    "transpose": lambda x, *, permutation, key_shape: np.transpose(
        x, (*permutation, *range(len(permutation), len(permutation) + len(key_shape)))
    ).copy(),
    "broadcast_in_dim": lambda x, *, shape, broadcast_dimensions, key_shape, **p: _broadcast_in_dim(
        x,
        shape=(*shape, *key_shape),
        broadcast_dimensions=(*broadcast_dimensions, *range(len(shape), len(shape) + len(key_shape))),
    ),
    **{name: (lambda op: lambda *xs, key_shape, **p: op(*xs, **p))(_OPS[name])
       for name in ("squeeze", "rev", "concatenate", "stack", "slice", "split", "copy", "copy_p",
                    "sharding_constraint", "optimization_barrier")},
}  # fmt: skip
"""The operations that move key arrays' elements, on their data (which has the keys' trailing axes): those whose
parameters name only leading axes as they are, the others with the trailing axes added."""

_MULTIPLE = frozenset({"iota_2x32_shape", "split", "optimization_barrier", "threefry2x32"})
_IDENTITY_KEYS = frozenset({"random_wrap", "random_unwrap", "random_clone"})


def compile(jaxpr: Any, consts: Sequence[Any]) -> Callable[[Sequence[Any]], list] | None:
    """`jaxpr`'s outputs as a function of its inputs, run in NumPy (module docstring); None if it cannot be.

    The function takes and returns what JAX's evaluation of the program would (typed or raw key arrays, integer
    arrays); its inputs must be concrete.
    """
    try:
        run = _Compiled(jaxpr)
        if not all(verified(impl) for impl in run.impls):
            return None
        host_consts = [_host(c) for c in consts]
    except Exception:  # `Unsupported`, or parameters of a JAX this module does not know: JAX runs the program
        return None
    key_outputs = [_key_impl(getattr(v, "aval", None)) for v in jaxpr.outvars]

    def evaluate(args: Sequence[Any]) -> list:
        device = _committed_device(args)
        with np.errstate(over="ignore"):
            out = run(host_consts, [_host(a) for a in args])
        return [
            _device_array(x, device) if impl is None else jax.random.wrap_key_data(_device_array(x, device), impl=impl)
            for x, impl in zip(out, key_outputs, strict=True)
        ]

    return evaluate


def _committed_device(args: Sequence[Any]) -> Any:
    """The one device the arrays among `args` are committed to, where JAX's own evaluation puts its results
    (committed there too); None if none is committed, or if they span several devices."""
    devices = {d for a in args if isinstance(a, jax.Array) and a.committed for d in a.devices()}
    return devices.pop() if len(devices) == 1 else None


def _device_array(x: np.ndarray, device: Any = None) -> jax.Array:
    """`x` where JAX's own evaluation would put it: with no mesh in effect by `jax.device_put`, committed to
    `device` if it is one, else uncommitted on the default device as `jnp.asarray` makes it (`jnp.asarray`
    compiles a ``stage`` for each new shape first, 0.01 s each); under a mesh, by `jnp.asarray`, which lays it
    out on the mesh's devices."""
    if checks.no_mesh():
        return jax.device_put(x, device)
    return jnp.asarray(x)


def _host(x: Any) -> np.ndarray:
    if jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _key_impl(aval: Any) -> Any:
    dtype = getattr(aval, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return dtype._impl
    return None


class _Compiled:
    """A jaxpr prepared for the host: each equation it needs a step over an environment of NumPy arrays.

    Only what the wanted outputs need is prepared, down into calls' and scans' bodies: a float that nothing
    wanted reads (a framework's own zeros beside the keys, in a layer stack's body) is never computed.
    """

    def __init__(self, jaxpr: Any, wanted: Sequence[bool] | None = None) -> None:
        self.jaxpr = jaxpr
        self.outvars = [v for i, v in enumerate(jaxpr.outvars) if wanted is None or wanted[i]]
        self.impls: set[Any] = set()  # the key implementations whose operations it runs (`verified` by `compile`)
        live = {v for v in self.outvars if isinstance(v, jex_core.Var)}
        steps = []
        for eqn in reversed(jaxpr.eqns):
            wanted_out = [v in live for v in eqn.outvars]
            if not any(wanted_out):
                continue
            step, used = self._step(eqn, wanted_out)
            steps.append((eqn, step))
            live.update(v for v, u in zip(eqn.invars, used, strict=True) if u and isinstance(v, jex_core.Var))
        steps.reverse()
        self.steps = _schedule(steps)
        self.used = [v in live for v in jaxpr.invars]  # the inputs read

    def __call__(self, consts: Sequence[np.ndarray], args: Sequence[Any]) -> list[np.ndarray]:
        jaxpr = self.jaxpr
        env: Env = dict(zip(jaxpr.constvars, consts, strict=True))
        env.update(zip(jaxpr.invars, args, strict=True))
        for step in self.steps:
            step(env)
        return [_read(env, v) for v in self.outvars]

    def _step(self, eqn: Any, wanted: list[bool]) -> tuple[Callable[[Env], None], list[bool]]:
        """The step of `eqn` computing its `wanted` outputs, and which of its inputs it reads."""
        name, params = eqn.primitive.name, eqn.params
        if eqn.effects:
            raise Unsupported(name)
        if name in ("pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call"):
            closed = params.get("jaxpr", params.get("call_jaxpr", params.get("fun_jaxpr")))
            body = closed.jaxpr if isinstance(closed, jex_core.ClosedJaxpr) else closed
            consts = [_host(c) for c in getattr(closed, "consts", ())]
            return self._call(eqn, self._body(body, wanted), consts, wanted)
        if name in ("checkpoint", "remat", "remat2"):
            return self._call(eqn, self._body(params["jaxpr"], wanted), [], wanted)
        if name == "scan":
            return self._scan(eqn, wanted)
        for v in (*eqn.invars, *eqn.outvars):
            aval = getattr(v, "aval", None)
            if _key_impl(aval) is None and aval is not None and hasattr(aval, "dtype"):
                _int(aval.dtype)  # keys and integers only: a float is JAX's to compute
        every = [True] * len(eqn.invars)
        if name in _IDENTITY_KEYS:
            return self._apply(eqn, lambda x: x), every
        if name in ("random_seed", "random_split", "random_fold_in"):
            step = self._key_op(eqn)
            self.impls.add(_key_impl((eqn.outvars if name == "random_seed" else eqn.invars)[0].aval))
            return step, every
        key_shape = _key_data_shape(eqn)
        if key_shape:  # a key array's data has its key's trailing axes: moves see them, other operations may not
            if name not in _KEY_MOVES:
                raise Unsupported(f"{name} of keys")
            op = _KEY_MOVES[name]
            return self._apply(eqn, lambda *xs: op(*xs, key_shape=key_shape, **params), name in _MULTIPLE), every
        if name in _ELEMENTWISE:
            f = _ELEMENTWISE[name]
            return self._apply(eqn, lambda *xs: np.asarray(f(*xs))), every
        if name not in _OPS:
            raise Unsupported(name)
        op, multiple = _OPS[name], name in _MULTIPLE
        return self._apply(eqn, lambda *xs: op(*xs, **params), multiple), every

    def _body(self, jaxpr: Any, wanted: Sequence[bool]) -> "_Compiled":
        body = _Compiled(jaxpr, wanted)
        self.impls |= body.impls
        return body

    @staticmethod
    def _apply(eqn: Any, f: Callable[..., Any], multiple: bool = False) -> Callable[[Env], None]:
        invars, outvars = eqn.invars, eqn.outvars
        dtypes = [np.dtype(v.aval.dtype) if _key_impl(v.aval) is None else np.dtype(np.uint32) for v in outvars]

        def step(env: Env) -> None:
            out = f(*(_read(env, v) for v in invars))
            for v, x, dtype in zip(outvars, out if multiple else [out], dtypes, strict=True):
                env[v] = np.asarray(x, dtype)

        return step

    @staticmethod
    def _call(
        eqn: Any, body: "_Compiled", consts: list[np.ndarray], wanted: list[bool]
    ) -> tuple[Callable[[Env], None], list[bool]]:
        outvars = [v for v, w in zip(eqn.outvars, wanted, strict=True) if w]
        reads = list(zip(eqn.invars, body.used, strict=True))

        def step(env: Env) -> None:
            out = body(consts, [_read(env, v) if used else None for v, used in reads])
            env.update(zip(outvars, out, strict=True))

        return step, body.used

    def _scan(self, eqn: Any, wanted: list[bool]) -> tuple[Callable[[Env], None], list[bool]]:
        p = eqn.params
        closed = p["jaxpr"]
        n_consts, n_carry, length, reverse = p["num_consts"], p["num_carry"], p["length"], p["reverse"]
        wanted_ys = wanted[n_carry:]
        body = self._body(closed.jaxpr, [True] * n_carry + wanted_ys)  # (every carry: the loop needs it)
        consts = [_host(c) for c in closed.consts]
        used = [*body.used[:n_consts], *[True] * n_carry, *body.used[n_consts + n_carry :]]
        reads = list(zip(eqn.invars, used, strict=True))
        outvars = [*eqn.outvars[:n_carry], *(v for v, w in zip(eqn.outvars[n_carry:], wanted_ys, strict=True) if w)]
        n_ys = len(outvars) - n_carry
        if n_carry == 0:  # layers that do not depend on each other: all of them at once
            batched = self._batched_scan(eqn, wanted_ys)
            if batched is not None:
                return batched

        def step(env: Env) -> None:
            values: list[Any] = [_read(env, v) if u else None for v, u in reads]
            fixed, carry, xs = values[:n_consts], values[n_consts : n_consts + n_carry], values[n_consts + n_carry :]
            ys: list[list[np.ndarray]] = [[] for _ in range(n_ys)]
            for i in reversed(range(length)) if reverse else range(length):
                out = body(consts, [*fixed, *carry, *(None if x is None else x[i] for x in xs)])
                carry = out[:n_carry]
                for store, y in zip(ys, out[n_carry:], strict=True):
                    store.append(y)
            if reverse:
                for store in ys:
                    store.reverse()
            stacked = [np.stack(store) for store in ys]
            env.update(zip(outvars, [*carry, *stacked], strict=True))

        return step, used

    def _batched_scan(self, eqn: Any, wanted: list[bool]) -> tuple[Callable[[Env], None], list[bool]] | None:
        """A scan without a carry as its body batched over its layers (JAX's `vmap` of the body, traced once), run
        once rather than once per layer; None where that body has an operation this module does not run."""
        p = eqn.params
        n_consts, length = p["num_consts"], p["length"]
        try:
            fun = jex_core.jaxpr_as_fun(p["jaxpr"])
            in_axes = [None] * n_consts + [0] * (len(eqn.invars) - n_consts)
            avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
            closed = jax.make_jaxpr(jax.vmap(fun, in_axes=in_axes, axis_size=length))(*avals)
            body = self._body(closed.jaxpr, wanted)
        except Exception:  # (`Unsupported`, or a body JAX does not batch): layer by layer
            return None
        consts = [_host(c) for c in closed.consts]
        reads = list(zip(eqn.invars, body.used, strict=True))
        outvars = [v for v, w in zip(eqn.outvars, wanted, strict=True) if w]

        def step(env: Env) -> None:  # (reversed or not, layer i's values are the body's of its inputs i)
            out = body(consts, [_read(env, v) if used else None for v, used in reads])
            env.update(zip(outvars, out, strict=True))

        return step, body.used

    @staticmethod
    def _key_op(eqn: Any) -> Callable[[Env], None]:
        """A key primitive, as its implementation's function of raw key data, batched over the keys' shape."""
        name, out = eqn.primitive.name, eqn.outvars[0]
        impl = _key_impl(out.aval) if name == "random_seed" else _key_impl(eqn.invars[0].aval)
        if impl is None:
            raise Unsupported(name)
        if name == "random_fold_in":
            _, batch, dtype = _fold_in_kind(eqn)  # type: ignore[misc]
            program = _key_program(impl, name, batch, dtype, *_flags())

            def fold_in(env: Env) -> None:
                keys, words = _read(env, eqn.invars[0]), _read(env, eqn.invars[1])
                keys = np.broadcast_to(keys, (*batch, *impl.key_shape))
                env[out] = program([], [keys, np.broadcast_to(words, batch)])[0]

            return fold_in
        batch = eqn.invars[0].aval.shape
        if name == "random_split":
            program = _key_program(impl, name, batch, tuple(eqn.params["shape"]), *_flags())
        else:
            program = _key_program(impl, name, batch, np.dtype(eqn.invars[0].aval.dtype), *_flags())

        def apply(env: Env) -> None:
            env[out] = program([], [_read(env, eqn.invars[0])])[0]

        return apply


BATCHED_FOLD_INS = 4
"""The fewest independent fold-ins of one kind that `_schedule` runs as one batched step."""


def _schedule(steps: list[tuple[Any, Callable[[Env], None]]]) -> list[Callable[[Env], None]]:
    """The steps of a jaxpr's equations, `steps` in the jaxpr's order, in an order that runs each after the steps
    whose results it reads, with fold-ins that do not read each other's keys run as one step per implementation,
    shape and word dtype: NumPy hashes them all in one pass rather than one small pass each (a model's one per
    drawn parameter: 12 ms less of every call of a linen GPT-2 medium, with 98, and 19 ms of Hugging Face's Flax
    BERT-large, with 148).

    Each round runs every step but the fold-ins that can run (again and again, in the jaxpr's order: a chain of
    counters, as NNX's streams count, runs in one round), then every fold-in that can run, batched by kind; the
    rounds repeat until all have run. The integers are the same: the batched step runs the implementation's
    fold-in batched by `jax.vmap`, as JAX's own batched fold-in does (which `verified` checks, in a scan).
    """
    kinds = [_fold_in_kind(eqn) for eqn, _ in steps]
    if sum(kind is not None for kind in kinds) < BATCHED_FOLD_INS:
        return [step for _, step in steps]
    producer = {v: i for i, (eqn, _) in enumerate(steps) for v in eqn.outvars}
    reads = [{producer[v] for v in eqn.invars if isinstance(v, jex_core.Var) and v in producer} for eqn, _ in steps]
    done: set[int] = set()
    pending = list(range(len(steps)))
    order: list[Callable[[Env], None]] = []
    while pending:
        ran = True
        while ran:  # every other step that can run
            ran, waiting = False, []
            for i in pending:
                if kinds[i] is None and reads[i] <= done:
                    order.append(steps[i][1])
                    done.add(i)
                    ran = True
                else:
                    waiting.append(i)
            pending = waiting
        ready: dict[tuple, list[int]] = {}
        for i in pending:
            if kinds[i] is not None and reads[i] <= done:
                ready.setdefault(kinds[i], []).append(i)  # type: ignore[arg-type]
        assert ready or not pending  # (a jaxpr's equations read only earlier ones: something can always run)
        for members in ready.values():
            if len(members) >= BATCHED_FOLD_INS:
                order.append(_fold_ins([steps[i][0] for i in members]))
            else:
                order.extend(steps[i][1] for i in members)
            done.update(members)
        pending = [i for i in pending if i not in done]
    return order


def _fold_in_kind(eqn: Any) -> tuple | None:
    """A fold-in's implementation, batch shape and word dtype (what `_fold_ins` batches together); None for any
    other equation."""
    if eqn.primitive.name != "random_fold_in":
        return None
    keys, words = eqn.invars[0].aval, eqn.invars[1].aval
    return _key_impl(keys), np.broadcast_shapes(keys.shape, words.shape), np.dtype(words.dtype)


def _fold_ins(eqns: list[Any]) -> Callable[[Env], None]:
    """One step for fold-ins of one kind (`_fold_in_kind`) that read none of each other's results."""
    impl, batch, dtype = _fold_in_kind(eqns[0])  # type: ignore[misc]
    program = _key_program(impl, "random_fold_in", (len(eqns), *batch), dtype, *_flags())
    data_shape = (*batch, *impl.key_shape)

    def step(env: Env) -> None:
        keys = np.stack([np.broadcast_to(_read(env, e.invars[0]), data_shape) for e in eqns])
        words = np.stack([np.broadcast_to(_read(env, e.invars[1]), batch) for e in eqns])
        for e, out in zip(eqns, program([], [keys, words])[0], strict=True):
            env[e.outvars[0]] = out

    return step


def _flags() -> tuple[bool, bool]:
    """The flags that change what a key primitive's implementation traces to."""
    return bool(checks.flag("jax_threefry_partitionable")), bool(checks.flag("jax_enable_x64"))


@functools.lru_cache(maxsize=256)
def _key_program(impl: Any, name: str, batch: tuple[int, ...], extra: Any, *flags: bool) -> "_Compiled":
    """The host's program of key primitive `name` of `impl` over keys of shape `batch`: `extra` is a fold-in's
    word dtype, a split's shape or a seed's dtype; `flags` are `_flags()` (a key of the cache, bounded: a model's
    layers repeat a few programs)."""
    del flags
    data = jax.ShapeDtypeStruct((*batch, *impl.key_shape), np.uint32)
    if name == "random_fold_in":
        return _expand(_batched(impl.fold_in, len(batch)), data, jax.ShapeDtypeStruct(batch, extra))
    if name == "random_split":
        return _expand(_batched(lambda k: impl.split(k, extra), len(batch)), data)
    return _expand(_batched(impl.seed, len(batch)), jax.ShapeDtypeStruct(batch, extra))


def _batched(f: Callable, depth: int) -> Callable:
    for _ in range(depth):
        f = jax.vmap(f)
    return f


def _expand(f: Callable, *avals: Any) -> "_Compiled":
    closed = jax.make_jaxpr(f)(*avals)
    compiled = _Compiled(closed.jaxpr)
    consts = [_host(c) for c in closed.consts]
    return lambda _, args: compiled(consts, args)  # type: ignore[return-value]


def _key_data_shape(eqn: Any) -> tuple[int, ...]:
    """The trailing axes of the key data among `eqn`'s operands and results (the key's shape), () if none is a key."""
    for v in (*eqn.invars, *eqn.outvars):
        impl = _key_impl(getattr(v, "aval", None))
        if impl is not None:
            return tuple(impl.key_shape)
    return ()


def _read(env: Env, v: Any) -> np.ndarray:
    if isinstance(v, jex_core.Literal):
        aval: Any = v.aval
        return np.asarray(v.val, np.uint32 if _key_impl(aval) is not None else _int(aval.dtype))
    return env[v]


def example(key: Any) -> list:
    """A program shaped like a model's key program: a seed, fold-ins, splits, and a scan of fold-ins over split
    keys. With a threefry key it gives the first bits of the key's stream too, for `jinit._src.threefry.verified`:
    the two checks are one compilation."""
    seeded = jax.random.key(jnp.uint32(7), impl=jax.random.key_impl(key))
    layers = jax.random.split(jax.random.clone(key), 3)

    def layer(carry: Any, k: Any) -> tuple[Any, Any]:
        return carry, jax.random.fold_in(k, 1292172466)

    _, folded = jax.lax.scan(layer, None, layers)  # (no carry, as a model's after dead code: all layers at once)
    keys = [seeded, jax.random.fold_in(key, 4047682477), layers, folded]
    out = [jax.random.key_data(k) for k in keys]
    # (32-bit words whatever ``jax_enable_x64``: under it `bits` would give 64-bit ones, which are not the stream's)
    return [*out, jax.random.bits(key, (2, 4), np.uint32)] if key.dtype._impl.name == "threefry2x32" else out


def default_impl() -> Any:
    """The default PRNG implementation (``jax_default_prng_impl``), as key arrays carry it."""
    return jax.eval_shape(lambda: jax.random.key(0)).dtype._impl


def prepare() -> None:
    """Checks the default implementation (`verified`), and threefry's stream (`jinit._src.threefry.verified`)
    with it, ahead of a model's trace: checked under a trace, JAX evaluates the check's inner functions one by
    one (several compilations)."""
    try:
        impl = default_impl()
    except Exception:  # (a JAX without key types' implementations: `compile` will say no)
        return
    verified(impl)
    if impl.name == "threefry2x32" and checks.flag("jax_threefry_partitionable"):
        threefry.verified()


CHECKED = frozenset({("0.10.2", "0.10.2")})
"""The (jax, jaxlib) releases under which tests/test_host_keys.py found, on CPU, that JAX's compiled `example`
gives the keys `KNOWN` records (and tests/test_engine.py that `jax.random.bits` is threefry's specification).
Under those, on CPU, `verified` compares the host's keys with `KNOWN`, and `jinit._src.threefry.verified` holds,
without compiling JAX's program (one compilation, 0.1 s of every process's first initialization); under any
other release or platform, JAX's program is compiled and its output compared, as before. The same releases, on CPU,
give the erfs of the usual truncation bounds without compiling (`jinit._src.distributions.KNOWN_ERFS`, checked by
tests/test_host_keys.py) and a factor's IEEE arithmetic in NumPy (`jinit._src.jax_draws.HOST_OPS`, checked by
tests/test_jax_draws.py)."""

KNOWN = {
    ("threefry2x32", True): "9a89032addd93b20511b64823003cc38",
    ("threefry2x32", False): "ca75ba2a0c4c4215ddffb1bb4594b2a3",
    ("rbg", True): "4f99819c9a7261c882c5c32291eb7812",
    ("rbg", False): "d986600c58a84fbda33ac4419d564c11",
}
"""`digest` of the keys JAX's compiled `example` gives, per JAX implementation and ``jax_threefry_partitionable``,
under the `CHECKED` releases (tests/test_host_keys.py derives them again from JAX there)."""


def checked() -> bool:
    """Whether JAX's own key program and bits need no compiling to be known (`CHECKED`): a listed release, on CPU."""
    return _release() in CHECKED and jax.default_backend() == "cpu"


@functools.cache
def _release() -> tuple[str, str]:
    return jax.__version__, kernel.jaxlib_version()


def digest(keys: Sequence[np.ndarray]) -> str:
    """A fingerprint of key data: each array's shape and ``uint32`` words."""
    h = hashlib.sha256()
    for x in keys:
        x = np.ascontiguousarray(x, np.uint32)
        h.update(repr(x.shape).encode())
        h.update(x.tobytes())
    return h.hexdigest()[:32]


def verified(impl: Any) -> bool:
    """Whether `compile` gives JAX's own keys for implementation `impl` (checked once per process, per
    implementation and ``jax_threefry_partitionable``, which changes threefry's split)."""
    return _verified(impl, bool(checks.flag("jax_threefry_partitionable")))


@functools.cache
def _verified(impl: Any, partitionable: bool) -> bool:
    try:
        words = example_words(impl)
        closed = jax.make_jaxpr(lambda w: example(jax.random.wrap_key_data(w, impl=impl)))(words)
        n_keys = len(closed.jaxpr.outvars) - (impl.name == "threefry2x32")
        run = _Compiled(closed.jaxpr.replace(outvars=closed.jaxpr.outvars[:n_keys]))
        with np.errstate(over="ignore"):
            ours = run([_host(c) for c in closed.consts], [words])
        if checked() and impl is _JAX_IMPLS.get(impl.name) and digest(ours) == KNOWN.get((impl.name, partitionable)):
            return True  # JAX's own keys under this release (`CHECKED`)
        theirs = reference(impl, partitionable)[:n_keys]
        return len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    except Exception:  # anything this module does not understand: JAX computes the keys
        return False


_JAX_IMPLS = {"threefry2x32": jex_random.threefry_prng_impl, "rbg": jex_random.rbg_prng_impl}
"""JAX's own implementations, those `KNOWN` is of (another one of the same name is checked by compiling)."""


def example_words(impl: Any) -> np.ndarray:
    """The data of the key `example` is checked with, for implementation `impl`."""
    return np.array([20260101, 1, 7, 3][: math.prod(impl.key_shape)], np.uint32).reshape(impl.key_shape)


@functools.cache
def reference(impl: Any, partitionable: bool) -> list[np.ndarray]:
    """JAX's own values of `example` for `impl`'s example key, compiled (once per process and flag)."""
    del partitionable  # (a key of the cache)
    words = example_words(impl)
    try:
        out = _jax_example(words, impl)
    except ValueError:  # (under a trace, JAX refuses a nested jit's compiler options)
        out = None
    if out is None or any(isinstance(x, Tracer) for x in out):  # first asked under a user's trace: made concrete
        with jax.ensure_compile_time_eval():
            out = _jax_example(words, impl)
    return [np.asarray(x) for x in out]


@kernel.jit(static_argnames="impl", compiler_options={"xla_backend_optimization_level": 0})
def _jax_example(words: Any, impl: Any) -> Any:  # (integers: exact at any optimization level)
    return example(jax.random.wrap_key_data(words, impl=impl))
