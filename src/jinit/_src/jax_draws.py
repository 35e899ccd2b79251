"""JAX's own initializers found in a traced program, so that the engine draws them as it draws jinit's.

A model written with `jax.nn.initializers` (Flax's defaults, ``nn.initializers.normal(0.02)``) makes each such
parameter by two operations of its program: a draw of JAX's ``jax.random.normal``, ``uniform`` or
``truncated_normal`` (a ``jit`` equation named ``_normal``, ``_uniform`` or ``_truncated_normal`` whose other
arguments are constants), and its product with a constant scalar (the standard deviation, or variance scaling's
factor). Computed as the framework computes it, operation by operation, JAX's draw holds about four times the
parameter's bytes while it is made, and runs JAX's rolled threefry loop. `calls` reads those pairs from a
program's jaxprs as calls of `JaxDraw`, an initializer whose law (`JaxNormal`, `JaxUniform`,
`JaxTruncatedNormal`) is that draw times that factor, written with JAX's own functions behind the barrier that
keeps XLA from merging the two (`distributions._materialized`): so `jinit._src.sites` makes sites of them, and
the engine draws them bitwise as JAX's eager operations gave them, in the parameter's own memory. Haiku's
initializers make theirs the same way, then add their mean (``s * draw + m``, 0 by default), or return the draw
itself (``RandomUniform``): `JaxDraw` has a `mean`, and a factor of 1 for a draw alone.

Only what is surely JAX's draw becomes a call: a scalar key, or the keys of one `vmap` (`nn.vmap`, `nnx.vmap`: a key
array of one axis, whose draws are stacked along the result's first, a `Batched` key and result that
`jinit._src.sites` reads as a `vmap` level); float32 or float64 (JAX draws narrower floats in their own dtype);
arguments that are literals; a factor that is a literal or computed from literals alone (by its own operations, run
eagerly as the framework ran them, or in NumPy where IEEE 754 makes that the same: `HOST_OPS`); the draw read by the
product alone (or itself the parameter), the product by a sum alone where one is added (`_plus` says which sums);
and the equation's body the very jaxpr that the public function (or its `vmap` over the keys) traces to for those
arguments (`_is_jax`: the same object, which JAX's cache of traced functions gives, or else the same text).

What the framework runs compiled (a scan's body, a jit's, even in an eager initialization) XLA optimizes as a
whole: there it merges the normal sampler's last constant factor (``sqrt(2)``) with the product into one, which
moves some values by an ulp (3215 of 12288 in an ``nn.scan`` of ``normal(0.02)``), and may drop the sum of a zero.
So in those bodies ``_normal`` draws are left to the program, and a mean only where it is a zero added to a
product by a positive factor (the uniform's and the truncated normal's last operations, a ``max`` and a clip,
leave nothing to merge).

JAX internals relied on, and how a change of them is survived: the names of ``jax.random``'s jitted samplers
and the arity of their arguments, and ``params["jaxpr"]`` of a ``jit`` equation. A JAX that renames them, or
whose public function traces to another body, has no such calls: the framework's operations compute those
parameters, as before (slower, the same values). A user's own function of the same name is not JAX's body.
"""

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from jinit._src import base, host_keys
from jinit._src.distributions import (
    Distribution,
    _distribution,
    _materialized,
    _ncdf,
    _normal_moments,
    _transcribed_truncated,
    _truncated_cdf,
    _truncated_verified,
    _uniform_cdf,
    _uniform_moments,
    erf_bounds,
    inverse_cdf_step,
    truncated_moments,
)

ARGUMENTS = {"_normal": 0, "_uniform": 2, "_truncated_normal": 2}
"""JAX's jitted samplers, by the name of their ``jit`` equation, with how many arguments follow the key."""
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FACTOR_STEPS = 8
"""The most operations a factor may be computed by (variance scaling's is three: a product, a root, a quotient)."""
SCALAR_OPS = frozenset({"sqrt", "div", "mul", "add", "sub", "neg", "convert_element_type", "max", "min"})


def _scaled(draw: jax.Array, factor: Any, mean: Any, dtype: np.dtype) -> jax.Array:
    """JAX's `draw` times `factor`, plus `mean` where one is added (Haiku's initializers add theirs): the program's
    operations, each rounded as it rounds them (the barrier keeps XLA from merging the product into the draw)."""
    x = _materialized(draw) * jnp.asarray(factor, dtype)
    return x if mean is None else x + jnp.asarray(mean, dtype)


def _offset(law: Any) -> float:
    return 0.0 if law.mean is None else float(law.mean)


@_distribution
class JaxNormal(Distribution):
    """``jax.random.normal(key, shape, dtype) * factor (+ mean)``, JAX's two operations (`jax.nn.initializers.normal`)
    and Haiku's third."""

    factor: Any
    mean: Any = None
    per_row: ClassVar[bool] = True  # (a product by each row's factor: the same rounding as by a scalar)

    def sample(self, key, shape, dtype):
        return _scaled(jax.random.normal(key, shape, dtype), self.factor, self.mean, dtype)

    def central_moments(self):
        return _normal_moments(abs(float(self.factor)), _offset(self))

    def magnitude(self):
        return abs(float(self.factor)) + abs(_offset(self))

    def cdf(self, x):
        s, x = float(self.factor), x - _offset(self)
        return float(x >= 0) if s == 0 else _ncdf(x / abs(s))


@_distribution
class JaxUniform(Distribution):
    """``jax.random.uniform(key, shape, dtype, minval, maxval) * factor (+ mean)`` (variance scaling's uniform: -1,
    1; Haiku's `RandomUniform`: the draw alone, a factor of 1)."""

    minval: Any
    maxval: Any
    factor: Any
    mean: Any = None
    per_row: ClassVar[bool] = True  # (JAX's uniform subtracts, multiplies and adds its bounds: no division)

    def sample(self, key, shape, dtype):
        minval, maxval = jnp.asarray(self.minval, dtype), jnp.asarray(self.maxval, dtype)
        return _scaled(jax.random.uniform(key, shape, dtype, minval, maxval), self.factor, self.mean, dtype)

    def central_moments(self):
        return _uniform_moments(*self._ends())

    def magnitude(self):
        return max(abs(end) for end in self._ends())

    def cdf(self, x):
        return _uniform_cdf(x, *self._ends())

    def _ends(self) -> list[float]:
        """The interval's ends, times the factor, plus the mean, in order."""
        return sorted(float(self.factor) * float(v) + _offset(self) for v in (self.minval, self.maxval))


@_distribution
class JaxTruncatedNormal(Distribution):
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype) * factor`` (variance scaling's truncated
    normal: ±2, its factor the standard deviation over 0.8796...). `erf_lower` and `erf_upper` are the erf of the
    bounds that JAX's sampler computes (`distributions.erf_bounds`): the sampler is `distributions`'s
    transcription of JAX's, given them, so that a kernel's own erf (`jinit._src.kernel.OPTIONS`) never rounds a
    bound otherwise."""

    lower: Any
    upper: Any
    erf_lower: Any
    erf_upper: Any
    factor: Any
    mean: Any = None
    per_row: ClassVar[bool] = True  # (no division left: the erf of the bounds is given, the rest is IEEE arithmetic)

    def sample(self, key, shape, dtype):
        if _truncated_verified():
            z = _transcribed_truncated(key, self.lower, self.upper, self.erf_lower, self.erf_upper, shape, dtype)
        else:  # (a JAX whose sampler changed: its own)
            z = jax.random.truncated_normal(key, self.lower, self.upper, shape, dtype)
        return _scaled(z, self.factor, self.mean, dtype)

    def central_moments(self):
        mean, mu2, mu4, mu6 = truncated_moments(float(self.lower), float(self.upper))
        s = float(self.factor)
        return s * mean + _offset(self), s**2 * mu2, s**4 * mu4, s**6 * mu6

    def magnitude(self):
        return abs(float(self.factor)) * max(abs(float(self.lower)), abs(float(self.upper))) + abs(_offset(self))

    def resolution(self, dtype):
        bounds = (float(self.lower), float(self.upper), float(self.erf_lower), float(self.erf_upper))
        return abs(float(self.factor)) * inverse_cdf_step(*bounds, dtype)

    def cdf(self, x):
        s, x = float(self.factor), x - _offset(self)
        if s == 0:
            return float(x >= 0)
        z = _truncated_cdf(x / abs(s), float(self.lower), float(self.upper))
        return z if s > 0 else 1.0 - _truncated_cdf(-x / abs(s), float(self.lower), float(self.upper))


LAWS = {"_normal": JaxNormal, "_uniform": JaxUniform, "_truncated_normal": JaxTruncatedNormal}


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class JaxDraw(base.Initializer):
    """JAX's sampler `sampler` (a key of `ARGUMENTS`) with `arguments`, times `factor`, plus `mean` unless None: a
    parameter that a `jax.nn.initializers` or Haiku initializer made, found in a program (`calls`). Not a factory
    of jinit's: it has no config name, and is only made here."""

    sampler: str
    arguments: tuple
    factor: float
    mean: float | None = None

    name: ClassVar[str] = "jax_draw"

    def law(self, shape: tuple[int, ...], dtype: np.dtype) -> Distribution:
        if np.dtype(dtype) not in DTYPES:
            raise ValueError(f"JAX's draws are drawn by jinit in float32 and float64 only. Received: dtype={dtype}")
        if self.sampler == "_truncated_normal":
            lower, upper = self.arguments
            erfs = erf_bounds(lower, upper, np.dtype(dtype))
            return JaxTruncatedNormal(lower, upper, *erfs, self.factor, self.mean)
        return LAWS[self.sampler](*self.arguments, self.factor, self.mean)


@dataclasses.dataclass(frozen=True, eq=False)
class Batched:
    """A jaxpr's variable holding `size` values of one `vmap` along `axis`: a batched draw's keys or result, read by
    `jinit._src.sites` as it reads a recorded tracer's `vmap` level (`level` names the vmap, shared by the key and
    the result of one draw)."""

    var: Any
    axis: int
    size: int
    level: object


def calls(jaxprs: list[tuple[Any, bool]]) -> list[base.Call]:
    """The draws of JAX's initializers in `jaxprs` (a program's, each looked into alone, with whether the framework
    runs it compiled: a scan's body, a jit's), as recorded calls whose key and result are the jaxpr's variables:
    the draw's key, and the parameter it makes."""
    out = []
    for jaxpr, compiled in jaxprs:
        producer = {v: eqn for eqn in jaxpr.eqns for v in eqn.outvars}
        readers: dict[Any, list] = {}  # the equations that read each variable (an output counts as None)
        for eqn in jaxpr.eqns:
            for v in eqn.invars:
                if isinstance(v, jex_core.Var):
                    readers.setdefault(v, []).append(eqn)
        for v in jaxpr.outvars:
            if isinstance(v, jex_core.Var):
                readers.setdefault(v, []).append(None)
        for eqn in jaxpr.eqns:
            call = _call(eqn, producer, readers, compiled)
            if call is not None:
                out.append(call)
    return out


def _call(eqn: Any, producer: dict, readers: dict, compiled: bool) -> base.Call | None:
    """The call that a draw equation and what reads it make, or None where they are not surely JAX's (module
    docstring)."""
    if eqn.primitive.name not in ("jit", "pjit") or len(eqn.outvars) != 1:
        return None
    sampler = eqn.params.get("name")
    if sampler not in ARGUMENTS or len(eqn.invars) != 1 + ARGUMENTS[sampler]:
        return None
    if compiled and sampler == "_normal":  # (module docstring: compiled bodies)
        return None
    key, *args = eqn.invars
    drawn = eqn.outvars[0]
    dtype = np.dtype(drawn.aval.dtype)
    key_aval: Any = key.aval  # (typed as any abstract value: a key's is a ShapedArray)
    if dtype not in DTYPES or not isinstance(key, jex_core.Var) or len(key_aval.shape) > 1:
        return None
    batch = key_aval.shape[0] if key_aval.shape else None  # (a `vmap`'s keys: its draws stacked along axis 0)
    if batch is not None and (not drawn.aval.shape or drawn.aval.shape[0] != batch):
        return None
    if not jnp.issubdtype(key_aval.dtype, jax.dtypes.prng_key):
        return None
    if not all(isinstance(a, jex_core.Literal) and np.shape(a.val) == () for a in args):
        return None
    result, factor = _product(drawn, readers.get(drawn, []), producer)
    if result is None or factor is None:
        return None
    result, mean = _plus(result, factor, readers.get(result, []), producer, compiled)
    shape = tuple(drawn.aval.shape)[0 if batch is None else 1 :]
    if not _is_jax(eqn, sampler, shape, dtype, tuple(_aval(a) for a in args), batch):
        return None
    arguments = tuple(float(np.asarray(a.val).astype(dtype)) for a in args)
    if not all(math.isfinite(x) for x in (*arguments, float(factor), 0.0 if mean is None else float(mean))):
        return None
    init = JaxDraw(sampler, arguments, float(factor), None if mean is None else float(mean))
    if batch is None:
        return base.Call(init, key, shape, dtype, None, result)
    level = object()
    return base.Call(init, Batched(key, 0, batch, level), shape, dtype, None, Batched(result, 0, batch, level))


def _product(drawn: Any, uses: list, producer: dict) -> tuple[Any, np.ndarray | None]:
    """The parameter a draw makes, and its factor: the product by a constant scalar that alone reads the draw
    (`jax.nn.initializers`); or the draw itself, times 1, where it is an output (Haiku's `RandomUniform`) or read
    by a sum alone. (None, None) otherwise."""
    dtype = np.dtype(drawn.aval.dtype)
    reader = uses[0] if len(uses) == 1 else None
    if reader is not None and reader.primitive.name == "mul":
        result = reader.outvars[0]
        factor = _constant_operand(reader, drawn, producer)
        if factor is None or result.aval.shape != drawn.aval.shape or np.dtype(result.aval.dtype) != dtype:
            return None, None
        return result, factor
    if None in uses or (reader is not None and reader.primitive.name == "add"):
        return drawn, np.asarray(1, dtype)
    return None, None


def _plus(
    product: Any, factor: np.ndarray, uses: list, producer: dict, compiled: bool
) -> tuple[Any, np.ndarray | None]:
    """The parameter that a constant scalar added to the product makes, where the sum alone reads it (Haiku adds
    its initializers' mean, 0 by default), and that constant; else the product, and None.

    Only a zero added to a product, or any constant added to the draw itself (a factor of 1): there the sum is the
    same whether XLA fuses it with the product into one rounding (it does in a loop, not between the framework's
    eager operations) or not. A mean added to an inexact product is left to the program; so, in a compiled body,
    is any mean but a zero added to a product by a positive factor (which is never -0.0, the one value that adding
    a zero changes, and that XLA may leave out)."""
    add = uses[0] if len(uses) == 1 else None
    if add is None or add.primitive.name != "add":
        return product, None
    mean = _constant_operand(add, product, producer)
    result = add.outvars[0]
    if mean is None or result.aval.shape != product.aval.shape or result.aval.dtype != product.aval.dtype:
        return product, None
    if (float(mean) != 0.0 and float(factor) != 1.0) or (compiled and (float(mean) != 0.0 or float(factor) <= 0)):
        return product, None
    return result, mean


def _constant_operand(eqn: Any, var: Any, producer: dict) -> np.ndarray | None:
    """The other operand of a binary `eqn` that reads `var` once, if it is a constant scalar of `var`'s dtype."""
    if len(eqn.invars) != 2 or len(eqn.outvars) != 1:
        return None
    first, second = eqn.invars
    if (first is var) == (second is var):
        return None
    value = _scalar(second if first is var else first, producer, FACTOR_STEPS)
    if value is None or value.shape != () or np.dtype(value.dtype) != np.dtype(var.aval.dtype):
        return None
    return value


def _scalar(var: Any, producer: dict, steps: int) -> np.ndarray | None:
    """The value of a scalar that is a literal or computed from literals by at most `steps` arithmetic
    operations, each run eagerly as the framework ran it; None otherwise."""
    if isinstance(var, jex_core.Literal):
        aval: Any = var.aval
        value = np.asarray(var.val, aval.dtype)
        return value if value.shape == () else None
    eqn = producer.get(var)
    if eqn is None or steps <= 0 or eqn.primitive.name not in SCALAR_OPS or len(eqn.outvars) != 1:
        return None
    if var.aval.shape != ():
        return None
    values = []
    for v in eqn.invars:
        value = _scalar(v, producer, steps - 1)
        if value is None:
            return None
        values.append(value)
    out = _in_numpy(eqn, values)
    if out is None:
        out = _eager(eqn, values)
    return out.astype(var.aval.dtype) if out is not None and out.shape == () else None


def _eager(eqn: Any, values: list) -> np.ndarray | None:
    """`eqn` of `values` run by JAX eagerly (compiled once per operation and dtype), as the framework ran it; None
    where JAX refuses it."""
    try:  # (eagerly also where jinit runs under a user's `jit`, as the framework ran it)
        with jax.ensure_compile_time_eval():
            return np.asarray(eqn.primitive.bind(*values, **eqn.params))
    except Exception:  # anything JAX refuses here: not a constant factor
        return None


HOST_OPS = {
    "sqrt": np.sqrt,
    "div": np.divide,
    "mul": np.multiply,
    "add": np.add,
    "sub": np.subtract,
    "neg": np.negative,
}
"""The operations of a factor that IEEE 754 rounds correctly, as XLA:CPU's instructions for them do: computed in
NumPy (`_in_numpy`), where JAX compiles each on first use (0.02 s apiece; a variance scaling's factor is a ``sqrt``
and a ``div``, in every first call of a model with Flax's default kernels)."""


def _in_numpy(eqn: Any, values: list) -> np.ndarray | None:
    """`eqn` of `values` in NumPy where that is surely XLA:CPU's eager result, else None: one of `HOST_OPS` on
    operands of the result's dtype (float32 or float64), under a release that tests/test_jax_draws.py checked on CPU
    (`jinit._src.host_keys.checked`), with operands and result normal numbers or zeros (XLA:CPU flushes subnormals to
    zero, and its NaNs need not be NumPy's)."""
    operation = HOST_OPS.get(eqn.primitive.name)
    dtype = np.dtype(eqn.outvars[0].aval.dtype)
    if operation is None or dtype not in DTYPES or any(np.dtype(v.dtype) != dtype for v in values):
        return None
    if any(v is not None for v in eqn.params.values()) or not host_keys.checked():  # (default accuracy, dtype)
        return None
    with np.errstate(all="ignore"):
        out = np.asarray(operation(*values), dtype)
    return out if all(_normal_or_zero(x) for x in (*values, out)) else None


def _normal_or_zero(x: np.ndarray) -> bool:
    magnitude = abs(float(x))
    return magnitude == 0.0 or (math.isfinite(magnitude) and magnitude >= np.finfo(x.dtype).tiny)


def _aval(literal: Any) -> jax.ShapeDtypeStruct:
    aval = literal.aval
    return jax.ShapeDtypeStruct((), aval.dtype, weak_type=getattr(aval, "weak_type", False))


def _is_jax(eqn: Any, sampler: str, shape: tuple, dtype: np.dtype, args: tuple, batch: int | None) -> bool:
    """Whether the equation's body is what JAX's public sampler traces to for this shape, dtype and arguments (its
    `vmap` over `batch` keys, with the arguments shared, where `batch` is not None)."""
    reference = _reference(sampler, shape, dtype, args, eqn.invars[0].aval.dtype, batch)
    body = eqn.params.get("jaxpr")
    return reference is not None and (body is reference[0] or str(body) == reference[1])


@functools.lru_cache(maxsize=512)
def _reference(
    sampler: str, shape: tuple, dtype: np.dtype, args: tuple, key: Any, batch: int | None
) -> tuple[Any, str] | None:
    """The body of the one ``jit`` equation that JAX's public sampler (or its `vmap` over `batch` keys) traces to,
    and its text; None if it traces to anything else."""
    public = {
        "_normal": lambda key: jax.random.normal(key, shape, dtype),
        "_uniform": lambda key, a, b: jax.random.uniform(key, shape, dtype, a, b),
        "_truncated_normal": lambda key, a, b: jax.random.truncated_normal(key, a, b, shape, dtype),
    }[sampler]
    keys = jax.ShapeDtypeStruct(() if batch is None else (batch,), key)
    if batch is not None:
        public = jax.vmap(public, in_axes=(0, *(None for _ in args)))
    try:
        traced = jax.make_jaxpr(public)(keys, *args)
    except Exception:  # a JAX whose samplers take other arguments: no calls
        return None
    eqns = traced.jaxpr.eqns
    if len(eqns) != 1 or eqns[0].params.get("name") != sampler or "jaxpr" not in eqns[0].params:
        return None
    body = eqns[0].params["jaxpr"]
    return body, str(body)
