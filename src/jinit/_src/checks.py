"""Argument checks. Every error message of jinit is written here, once.

Each check raises before any array is allocated, names the argument in backticks and ends with the value
received, as Keras does: ``Argument `stddev` must be ... Received: stddev=-1.0``.
"""

import functools
import math
import numbers
import re
import warnings
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from jinit._src.typing import Axis, DTypeLike

MAX_DEPTH = 8
"""How deeply lists and dicts may nest in one initializer's config; a `constant` value, written two levels down,
may so have at most ``MAX_DEPTH - 2`` axes."""
MAX_ITEMS = 100_000
"""How many numbers a config, and so a `constant` value, may hold."""


def flag(name: str) -> Any:
    """The current value of a JAX configuration option, including its context-manager overrides."""
    return getattr(jax.config, name)


SHOWN = 200
"""The most characters of a received value that an error message shows."""


def show(value: Any) -> str:
    """`repr(value)` for an error message: at most `SHOWN` characters, so that a huge value gives a short message."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 40]}... ({len(text)} characters)"


def label(text: str) -> str:
    """A name or a path for an error message: at most `SHOWN` characters."""
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 40]}... ({len(text)} characters)"


def received(name: str, value: Any) -> str:
    """The end of every error message: ``Received: name=value``, both shortened (`label`, `show`)."""
    return f"Received: {label(name)}={show(value)}"


def _is_tracer(value: Any) -> bool:
    return isinstance(value, Tracer)


def number(name: str, value: Any, *, minimum: str | None = None) -> float:
    """Returns `value` as a finite Python float.

    Args:
      name: the argument's name, for the message.
      value: a Python or NumPy real number, or a concrete 0-d array.
      minimum: None, ``"nonnegative"`` or ``"positive"``.
    """
    if _is_tracer(value):
        raise TypeError(
            f"Argument `{name}` must be a concrete number: an initializer is a hashable value, so its "
            f"hyperparameters cannot be traced. Build the initializer outside `jax.jit`. {received(name, value)}"
        )
    is_array = isinstance(value, np.ndarray | jax.Array)
    if (
        isinstance(value, bool | np.bool_)
        or not (isinstance(value, numbers.Real) or is_array)
        or (is_array and (value.shape != () or not jnp.issubdtype(value.dtype, np.number) or jnp.iscomplexobj(value)))
    ):
        raise TypeError(f"Argument `{name}` must be a real number. {received(name, value)}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise ValueError(f"Argument `{name}` must be a finite number. {received(name, value)}")
    if minimum == "nonnegative" and result < 0:
        raise ValueError(f"Argument `{name}` must be a non-negative number. {received(name, value)}")
    if minimum == "positive" and result <= 0:
        raise ValueError(f"Argument `{name}` must be a positive number. {received(name, value)}")
    return result


def ordered(lower_name: str, lower: float, upper_name: str, upper: float) -> None:
    """Checks `lower < upper`, both already checked by `number`."""
    if not lower < upper:
        raise ValueError(
            f"Argument `{lower_name}` must be less than `{upper_name}`. "
            f"Received: {lower_name}={show(lower)}, {upper_name}={show(upper)}"
        )


def choice(name: str, value: Any, options: Iterable[str]) -> str:
    """Checks that `value` is one of the strings `options`."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(
            f"Argument `{name}` must be one of {', '.join(repr(o) for o in options)}. {received(name, value)}"
        )
    return value


def integer(name: str, value: Any, *, minimum: str | None = None) -> int:
    """Checks that `value` is an integer (Python, NumPy, or a concrete 0-d integer array; not a bool); returns it.

    `minimum` is None, ``"nonnegative"`` or ``"positive"``, as for `number`.
    """
    result = _dim(value)
    if result is None:
        raise TypeError(f"Argument `{name}` must be an integer. {received(name, value)}")
    if minimum == "nonnegative" and result < 0:
        raise ValueError(f"Argument `{name}` must be a non-negative integer. {received(name, value)}")
    if minimum == "positive" and result <= 0:
        raise ValueError(f"Argument `{name}` must be a positive integer. {received(name, value)}")
    return result


def boolean(name: str, value: Any) -> bool:
    """Checks that `value` is a boolean (Python or NumPy); returns it as a Python bool."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"Argument `{name}` must be a boolean. {received(name, value)}")
    return bool(value)


def callback(name: str, value: Any) -> Any:
    """Checks that `value` is None or callable; returns it."""
    if value is not None and not callable(value):
        raise TypeError(f"Argument `{name}` must be None or a callable. {received(name, value)}")
    return value


def representable(initializer: str, argument: str, value: Any, dtype: np.dtype) -> None:
    """A ValueError when a finite number of `value` overflows `dtype` (it would become infinite, or wrap)."""
    array = np.asarray(value)
    if array.dtype == object or array.size == 0 or dtype == np.bool_:
        return
    if jnp.issubdtype(dtype, np.inexact):
        largest = float(jnp.finfo(dtype).max)
        parts = (np.real(array), np.imag(array)) if np.iscomplexobj(array) else (array,)
        overflows = any(bool((np.abs(part.astype(np.float64)) > largest).any()) for part in parts)
    else:
        info = jnp.iinfo(dtype)
        overflows = bool((array < info.min).any() or (array > info.max).any())
    if overflows:
        raise ValueError(
            f"`{initializer}`'s {argument} overflows {dtype.name}. {received(argument, value)}, dtype={dtype.name}"
        )


def seed(value: Any) -> int | None:
    """Checks a seed: None, or an integer that `jax.random.key` takes (0 <= seed < 2**63)."""
    if value is None:
        return None
    result = integer("seed", value)
    if not 0 <= result < 2**63:
        raise ValueError(f"Argument `seed` must be in [0, 2**63). {received('seed', value)}")
    return result


def axis(name: str, value: Any) -> int | tuple[int, ...]:
    """Checks one axis (an int) or several (a sequence, or a 1-D integer array, of ints); returns an int or a tuple."""
    single = _dim(value)
    if single is not None:
        return single
    if isinstance(value, np.ndarray | jax.Array) and not isinstance(value, Tracer) and value.ndim == 1:
        value = value.tolist() if jnp.issubdtype(value.dtype, np.integer) else value
    if isinstance(value, list | tuple):
        return tuple(integer(name, a) for a in value)
    raise TypeError(f"Argument `{name}` must be an int or a sequence of ints. {received(name, value)}")


def normalize_axes(
    name: str, value: Axis, rank: int, shape: tuple[int, ...] | None = None, *, repeats: bool = False
) -> tuple[int, ...]:
    """Returns `value` as a tuple of non-negative axes of a rank-`rank` shape; checks their range, and that none
    repeats unless `repeats` (JAX's fans count a repeated axis again)."""
    axes = (value,) if isinstance(value, int) else tuple(value)
    ending = received(name, value) + ("" if shape is None else f", shape={shape}")
    result = []
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(f"Argument `{name}` is out of range for a shape of rank {rank}. {ending}")
        result.append(a % rank)
    if not repeats and len(set(result)) != len(result):
        raise ValueError(f"Argument `{name}` repeats an axis. {ending}")
    return tuple(result)


def _dim(value: Any) -> int | None:
    """A dimension as an int: a Python or NumPy integer, or a concrete integer 0-d array; else None."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    concrete = isinstance(value, np.ndarray | jax.Array) and not isinstance(value, Tracer)
    if concrete and value.shape == () and jnp.issubdtype(value.dtype, np.integer):
        return int(value)
    return None


MAX_BYTES = 2**63 - 1
"""The most bytes an array may have: XLA counts them in a signed 64-bit integer."""


def shape(value: Any, dtype: np.dtype | None = None) -> tuple[int, ...]:
    """Checks a shape: a sequence (or 1-D integer array) of non-negative ints, or one int for a single axis, as JAX
    takes them (Python, NumPy or JAX integers; not bools). Returns it as a tuple of ints.

    With `dtype`, also checks that an array of this shape and dtype has at most `MAX_BYTES` bytes.
    """
    if (
        type(value) is tuple
        and set(map(type, value)) <= {int}
        and 0 <= min(value, default=0) <= max(value, default=0) <= MAX_BYTES
    ):
        dims = value  # the common case, checked at once
    else:
        dims = _dims(value)
    if dtype is not None and math.prod(dims) * dtype.itemsize > MAX_BYTES:
        raise ValueError(
            f"Argument `shape` is too large: {math.prod(dims)} elements of {dtype.name} are more than the "
            f"2**63 - 1 bytes an array can index. {received('shape', value)}"
        )
    return dims


def _dims(value: Any) -> tuple[int, ...]:
    single = _dim(value)
    if single is not None:  # one axis, as JAX's initializers take it: ``zeros(key, 64)``
        value = (single,)
    if isinstance(value, np.ndarray | jax.Array) and not isinstance(value, Tracer) and value.ndim == 1:
        value = tuple(value.tolist()) if jnp.issubdtype(value.dtype, np.integer) else value
    if not isinstance(value, list | tuple | range):
        raise TypeError(f"Argument `shape` must be an int or a sequence of ints. {received('shape', value)}")
    dims = []
    for d in value:
        dim = _dim(d)
        if dim is None:
            raise TypeError(f"Argument `shape` must contain only ints. {received('shape', value)}")
        if dim < 0:
            raise ValueError(f"Argument `shape` must not contain negative sizes. {received('shape', value)}")
        if dim > MAX_BYTES:
            raise ValueError(f"Argument `shape` must contain sizes below 2**63. {received('shape', value)}")
        dims.append(dim)
    return tuple(dims)


_PYTHON_TYPES = {bool: "b", int: "i", float: "f", complex: "c"}


def _python_type(value: Any) -> np.dtype:
    """JAX's dtype for a Python scalar type (``float`` is float32, or float64 under ``jax_enable_x64``)."""
    kind = _PYTHON_TYPES[value]
    if kind == "b":
        return np.dtype(np.bool_)
    bits = 64 if flag("jax_enable_x64") else 32
    return np.dtype({"i": f"int{bits}", "f": f"float{bits}", "c": f"complex{2 * bits}"}[kind])


def dtype(name: str, value: DTypeLike | None) -> str | None:
    """Checks a dtype argument; returns None or the dtype's canonical name (e.g. ``'bfloat16'``).

    A Python scalar type is JAX's dtype of its kind at the time of the check (``float``: float32, or float64 under
    ``jax_enable_x64``), as JAX's initializers resolve it, without a warning.
    """
    if value is None:
        return None
    if isinstance(value, type) and value in _PYTHON_TYPES:
        return _python_type(value).name
    try:
        result = jnp.dtype(value)
    except TypeError as err:
        raise TypeError(f"Argument `{name}` must be a dtype. {received(name, value)}") from err
    if not (jnp.issubdtype(result, np.number) or result == np.bool_):
        raise TypeError(f"Argument `{name}` must be a numeric or boolean dtype. {received(name, value)}")
    return result.name


_KINDS = {"real": "a floating-point dtype", "inexact": "a floating-point or complex dtype"}


_UNSUPPORTED = frozenset({"float6_e2m3fn", "float6_e3m2fn"})
"""Dtypes that NumPy and JAX name but XLA (jaxlib 0.10) cannot hold: every array of them fails at run time."""


def resolve_dtype(init: Any, value: DTypeLike | None) -> np.dtype:
    """The dtype of a call of `init`: `value` (checked), else the initializer's own, else JAX's default float type.

    A 64-bit dtype while `jax_enable_x64` is off becomes its 32-bit counterpart, with JAX's warning. A random
    initializer needs a floating-point dtype (`init.dtypes` is ``"real"``), or a complex one too (``"inexact"``).
    """
    value = getattr(init, "dtype", None) if value is None else dtype("dtype", value)
    if value is None:
        x64 = getattr(jax.config, "jax_enable_x64")  # noqa: B009  (as `flag`, without a call on every sample)
        return jnp.dtype(jnp.float64) if x64 else jnp.dtype(jnp.float32)
    requested = jnp.dtype(value)
    result = jnp.dtype(jax.dtypes.canonicalize_dtype(requested))
    if result != requested:
        warnings.warn(
            f"Explicitly requested dtype {requested.name} requested in `{init.name}` is not available, and will be "
            f"truncated to dtype {result.name}. To enable more dtypes, set the jax_enable_x64 configuration "
            "option or the JAX_ENABLE_X64 shell environment variable.",
            UserWarning,
            stacklevel=3,
        )
    kinds = init.dtypes
    if result.name in _UNSUPPORTED:  # XLA compiles, then fails at run time: refused before anything runs
        raise TypeError(f"`{init.name}`: XLA cannot compute in {result.name}. Received: dtype={result.name}")
    if jnp.issubdtype(result, jnp.floating) and jnp.finfo(result).bits < 8 and kinds != "any":
        raise TypeError(
            f"`{init.name}` needs a floating-point dtype of 8 bits or more, as `jax.random`. Received: "
            f"dtype={result.name}"
        )
    if kinds == "any" or (jnp.issubdtype(result, jnp.floating) and jnp.finfo(result).nmant > 0):
        return result
    if kinds == "inexact" and jnp.issubdtype(result, jnp.complexfloating):
        return result
    raise TypeError(f"`{init.name}` needs {_KINDS[kinds]}. Received: dtype={result.name}")


@functools.cache
def _legacy_key_shape(impl: str) -> tuple[int, ...]:
    return jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl))).shape


_KEY_HINT = "Pass a single key such as `jax.random.key(0)`"


def key(value: Any, *, optional: bool = False) -> Any:
    """Checks a PRNG key: a typed key of shape () or a legacy uint32 key of the default implementation."""
    if value is None and optional:
        return None
    if isinstance(value, jax.Array | np.ndarray | Tracer) and hasattr(value, "dtype"):
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            if value.shape == ():
                return value
            raise TypeError(
                f"Argument `key` must be a single PRNG key, not a batch of keys of shape {value.shape}; "
                f"use `jax.vmap` over the keys. {received('key', value)}"
            )
        legacy = _legacy_key_shape(flag("jax_default_prng_impl"))
        if value.dtype == np.uint32 and value.shape == legacy:
            return value
        if value.dtype == np.uint32 and value.shape[-len(legacy) :] == legacy:
            raise TypeError(
                f"Argument `key` must be a single PRNG key, not a batch of keys of shape {value.shape}; "
                f"use `jax.vmap` over the keys. {received('key', value)}"
            )
    if isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `key` must be a PRNG key, not an integer seed: pass `jax.random.key({show(value)})`. "
            f"{received('key', value)}"
        )
    if value is None:
        raise TypeError(
            f"Argument `key` is needed: this initializer is random and has no seed. {_KEY_HINT}, or "
            f"give the initializer a seed with `init.with_seed(seed)`. {received('key', value)}"
        )
    raise TypeError(
        f"Argument `key` must be a PRNG key. {_KEY_HINT} (or a legacy uint32 key from "
        f"`jax.random.PRNGKey`). {received('key', value)}"
    )


def impl_of(key: Any) -> str:
    """The name of a key's PRNG implementation (a legacy key's is the default implementation's)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key))
    return flag("jax_default_prng_impl")


def current_mesh() -> Any:
    """The mesh set by `jax.set_mesh`: concrete outside a trace, abstract (all a trace may use) inside one."""
    try:
        return jax.sharding.get_mesh()
    except ValueError:  # under `jax.jit`
        return jax.sharding.get_abstract_mesh()


def no_mesh() -> bool:
    """Whether no mesh is set, concrete or abstract: `jnp.asarray` then puts a value on the default device, as
    `jax.device_put` does without compiling (under a mesh it lays the value out on the mesh's devices)."""
    return current_mesh().empty and jax.sharding.get_abstract_mesh().empty


def out_sharding(value: Any, rank: int) -> jax.sharding.Sharding | None:
    """Checks `out_sharding`: None, a `Sharding`, or a `PartitionSpec` of the mesh set by `jax.set_mesh`.

    A `NamedSharding`'s spec is padded with None to `rank` axes, as JAX's samplers return it (``P('x')`` of a
    matrix is ``P('x', None)``).
    """
    if value is None:
        return value
    if isinstance(value, jax.sharding.PartitionSpec):
        mesh = current_mesh()
        if mesh.empty:
            raise ValueError(
                "Argument `out_sharding` is a PartitionSpec, but no mesh is set: call inside "
                f"`with jax.set_mesh(mesh):` or pass a `NamedSharding`. {received('out_sharding', value)}"
            )
        value = jax.sharding.NamedSharding(mesh, value)
    if isinstance(value, jax.sharding.NamedSharding):
        spec = value.spec
        if len(spec) < rank:
            value = jax.sharding.NamedSharding(
                value.mesh,
                jax.sharding.PartitionSpec(*spec, *(None,) * (rank - len(spec))),
                memory_kind=value.memory_kind,
            )
        return value
    if isinstance(value, jax.sharding.Sharding):
        return value
    raise TypeError(
        f"Argument `out_sharding` must be None, a `jax.sharding.Sharding` or a `PartitionSpec`. "
        f"{received('out_sharding', value)}"
    )


# --------------------------------------------------------------------------------- parameter trees


def initializer(name: str, value: Any) -> Any:
    """Checks that `value` can initialize: callable as ``init(key, shape, dtype)``, and hashable (a value)."""
    if not callable(value):
        raise TypeError(
            f"Argument `{name}` must be an initializer, callable as `init(key, shape, dtype)`. {received(name, value)}"
        )
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"Argument `{name}` must be hashable (a function, or a value such as jinit's initializers), so that "
            f"equal specs share a compiled program. {received(name, value)}"
        ) from None
    return value


def sharding(value: Any) -> jax.sharding.PartitionSpec | jax.sharding.Sharding | None:
    """Checks a `ParamSpec`'s sharding: None, a `PartitionSpec` or a `Sharding`."""
    return partition("sharding", value)


def mesh(value: Any) -> jax.sharding.Mesh | None:
    """Checks `mesh`: None or a `jax.sharding.Mesh`."""
    if value is None or isinstance(value, jax.sharding.Mesh):
        return value
    raise TypeError(f"Argument `mesh` must be None or a `jax.sharding.Mesh`. {received('mesh', value)}")


def fits(path: str, value: jax.sharding.Sharding, shape: tuple[int, ...]) -> None:
    """Checks that a `NamedSharding` splits every axis of `shape` into equal shards."""
    if not isinstance(value, jax.sharding.NamedSharding):
        return
    spec, sizes = value.spec, dict(value.mesh.shape)
    if len(spec) > len(shape):
        raise ValueError(
            f"Parameter {show(path)}: its sharding names {len(spec)} axes, but its shape has {len(shape)}. "
            f"Received: sharding={spec}, shape={shape}"
        )
    for axis, names in enumerate(spec):
        if names is None or names is jax.sharding.PartitionSpec.UNCONSTRAINED:
            continue
        ways = math.prod(sizes[name] for name in ((names,) if isinstance(names, str) else names))
        if shape[axis] % ways:
            raise ValueError(
                f"Parameter {show(path)}: its sharding splits axis {axis} (of size {shape[axis]}) {ways} ways, which "
                f"does not divide it; pad the parameter or shard another axis. Received: sharding={spec}, "
                f"shape={shape}"
            )


def path(value: Any) -> bytes:
    """Checks a parameter path, a string such as ``"h0/attn/kernel"``; returns its UTF-8 bytes."""
    if not isinstance(value, str):
        raise TypeError(
            f"Argument `path` must be a string such as 'h0/attn/kernel', as "
            f"`jax.tree_util.keystr(path, simple=True, separator='/')` writes it. {received('path', value)}"
        )
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate
        raise ValueError(
            f"Argument `path` must be text that UTF-8 can encode ({err.reason}). {received('path', value)}"
        ) from None


def rules(
    value: Any, name: str = "rules", what: str = "initializer", check: Any = None
) -> tuple[tuple[re.Pattern, Any], ...]:
    """Checks `rules`: a sequence of ``(regex, value)`` pairs; returns them with compiled patterns.

    `what` names the second item in messages; `check(label, item)` checks it (an initializer by default).
    """
    check = initializer if check is None else check
    if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
        raise TypeError(f"Argument `{name}` must be a sequence of (regex, {what}) pairs. {received(name, value)}")
    checked = []
    for i, rule in enumerate(value):
        pattern = rule[0] if isinstance(rule, tuple | list) and len(rule) == 2 else None
        if not (isinstance(pattern, str) or (isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str))):
            raise TypeError(
                f"Argument `{name}` must hold (regex, {what}) pairs; rule {i} is not. {received(name, value)}"
            )
        pattern, item = rule
        try:
            compiled = re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as err:
            message = f"Rule {i} of `{name}` is not a valid regex ({err})."
            raise ValueError(f"{message} {received('regex', pattern)}") from None
        checked.append((compiled, check(f"{name}[{i}]", item)))
    return tuple(checked)


def partition(name: str, value: Any) -> Any:
    """Checks a partitioning: None, a `PartitionSpec` or a `Sharding` (as `sharding`, naming the argument)."""
    if value is None or isinstance(value, jax.sharding.PartitionSpec | jax.sharding.Sharding):
        return value
    raise TypeError(
        f"Argument `{name}` must be None, a `jax.sharding.PartitionSpec` or a `jax.sharding.Sharding`. "
        f"{received(name, value)}"
    )
