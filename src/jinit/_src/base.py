"""The initializer value: a frozen dataclass whose fields are its hyperparameters and which knows how to sample.

Each family (`Normal`, `VarianceScaling`, `Orthogonal`, ...) subclasses `Initializer`, declares its factory's
name (``class Normal(Initializer, name="normal")``), checks its fields in `__post_init__` and implements
`sample`; an elementwise family implements `law` instead, the distribution of each element, which the engine
draws (`jinit._src.engine`). Equality, hashing and pickling come from the dataclass; `repr` is the factory
call that rebuilds the value. The name is how configs refer to a family: `classes()` is the table
`jinit.deserialize` reads.
"""

import contextvars
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import numpy as np
from jax.core import Tracer

from jinit._src import checks, engine
from jinit._src.distributions import Distribution
from jinit._src.typing import DTypeLike, KeyArray, OutSharding, Shape

_CLASSES: dict[str, type["Initializer"]] = {}


class Call(NamedTuple):
    """One call of an initializer, as `jinit._src.program.trace` records it: its checked arguments and its result."""

    init: "Initializer"
    key: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    sharding: Any
    result: Any


@dataclasses.dataclass
class Recording:
    """What `jinit._src.program.trace` gathers while it traces a model's initialization: the initializer calls made
    (`calls`), and what a call of an initializer with a `law` returns there instead of its draw (`stand_in`, of
    the key, shape and dtype; None: the draw itself)."""

    calls: list[Call]
    stand_in: Callable[[Any, tuple[int, ...], np.dtype], Any] | None = None


CALLS: contextvars.ContextVar[Recording | None] = contextvars.ContextVar("jinit_calls", default=None)
"""The recording that initializer calls append themselves to while `jinit._src.program.trace` traces a model's
initialization (set only there, for that trace); None otherwise. Recording changes no value that the program
computes: a stand-in is only ever where the engine draws the value instead (`jinit._src.program`)."""


def classes() -> dict[str, type["Initializer"]]:
    """Every initializer class by its factory's name, jinit's own and registered ones (a copy)."""
    return dict(_CLASSES)


def declare(name: str, cls: type["Initializer"]) -> None:
    """Makes `cls` the class of configs named `name` (which must be new)."""
    if name in _CLASSES:
        raise ValueError(f"An initializer named {name!r} is already registered. Received: name={name!r}")
    _CLASSES[name] = cls


def forget(name: str) -> None:
    """Removes a registered name (for tests that register their own)."""
    _CLASSES.pop(name, None)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Initializer:
    """An initializer as a value: its fields are the arguments of the factory that built it.

    Two initializers are equal, and hash equal, when they were built by the same factory with the same
    arguments, so an initializer can be a `jax.jit` static argument or a field of a Flax module without
    retracing. Equal initializers give the same bits: a float argument is compared with its sign, so
    ``normal(0.0) != normal(-0.0)`` (JAX's samples of the two differ in the signs of their zeros), while
    ``constant(1) == constant(1.0)``. It pickles, prints as the call that rebuilds it, and is not a pytree.

    Subclasses are declared ``@dataclasses.dataclass(frozen=True, repr=False, eq=False)``, so that they keep this
    equality.

    Calling it is ``init(key, shape, dtype=None, out_sharding=None)``, with what JAX's initializers take: `shape`
    an int or a sequence of ints, `dtype` any spelling of a dtype, defaulting to the one given to the factory, and
    that to JAX's default float type (float64 under ``jax_enable_x64``, else float32). An initializer that uses
    no randomness ignores its key, whatever it is, as JAX's `zeros`, `ones` and `constant` do.
    """

    seed: int | None = dataclasses.field(default=None, kw_only=True)

    name: ClassVar[str] = "initializer"
    """The name of the factory that builds it, in configs and in its `repr`."""
    keyless: ClassVar[bool] = False
    """Whether it uses no randomness, and so accepts ``key=None``."""
    dtypes: ClassVar[str] = "any"
    """What dtypes it samples: ``"real"`` floats, ``"inexact"`` (real or complex floats) or ``"any"``."""
    bare: ClassVar[bool] = False
    """Whether it prints as its bare name (the ready values ``zeros`` and ``ones``)."""
    lapack: ClassVar[bool] = False
    """Whether its kernel calls LAPACK on CPU (the QR of `orthogonal`): see `calls_lapack`."""

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
            declare(name, cls)

    def law(self, shape: tuple[int, ...], dtype: np.dtype) -> Distribution | None:
        """The distribution of every element of a sample of a checked shape and resolved dtype, for the families
        whose elements are independent and identically distributed; None for the others.

        Raises what the shape or dtype makes invalid (a fan of a missing axis, bounds that the dtype cannot hold).
        """
        return None

    def magnitude(self) -> float | None:
        """For an initializer without a `law`: the largest magnitude of an element its hyperparameters allow (a
        constant's largest value, an orthogonal matrix's scale), or None where jinit does not know it. A factor
        multiplying its samples (`jinit.scaled`) must not make it overflow."""
        return None

    def sample(self, key: Any, shape: tuple[int, ...], dtype: np.dtype, sharding: Any) -> jax.Array:
        """The sample for a checked key (None if `keyless`), shape, resolved dtype and sharding.

        An elementwise family's is its `law` drawn by the engine; the other families implement their own.
        """
        law = self.law(shape, dtype)
        if law is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither `law` nor `sample`")
        return engine.draw(law, key, shape, dtype, sharding)

    def __call__(
        self,
        key: KeyArray | None,
        shape: Shape,
        dtype: DTypeLike | None = None,
        out_sharding: OutSharding = None,
    ) -> jax.Array:
        if self.keyless:  # as JAX's zeros, ones and constant: the key is not used, whatever it is
            key = None
        elif key is None and self.seed is not None:
            key = jax.random.key(self.seed)
        key = checks.key(key, optional=self.keyless)
        dtype = checks.resolve_dtype(self, dtype)
        shape = checks.shape(shape, dtype)
        recording = CALLS.get()
        if out_sharding is None:
            law = self.law(shape, dtype)  # inline `sample`, for the short path of a plain eager call
            if law is not None and key is not None and recording is not None and recording.stand_in is not None:
                x = recording.stand_in(key, shape, dtype)
            else:
                x = self.sample(key, shape, dtype, None) if law is None else engine.draw(law, key, shape, dtype)
            sharding = None
        else:
            sharding = checks.out_sharding(out_sharding, len(shape))
            x = self._sharded(key, shape, dtype, sharding)
        if recording is not None:  # inside `program.trace`: what made `x`, to draw it again by the engine
            recording.calls.append(Call(self, key, shape, dtype, sharding, x))
        return x

    def _sharded(self, key: Any, shape: tuple[int, ...], dtype: np.dtype, sharding: Any) -> jax.Array:
        mesh = getattr(sharding, "mesh", None)
        explicit = getattr(mesh, "explicit_axes", ())
        if explicit and _outside_any_mesh():
            with jax.set_mesh(mesh):  # outside `jit`, JAX compiles for explicit mesh axes only inside their mesh
                return self.sample(key, shape, dtype, sharding)
        try:
            x = self.sample(key, shape, dtype, sharding)
        except jax.errors.JaxRuntimeError:
            if key is None or isinstance(key, Tracer) or checks.impl_of(key) == "threefry2x32":
                raise
            # jax 0.10.2 fails to compile some implementations' sharded draws (philox's `mulhi` under a sharding
            # constraint): the whole sample, then laid out; a layout changes no value
            return jax.device_put(self.sample(key, shape, dtype, None), sharding)
        if isinstance(x, Tracer):
            # under `jit`, `device=` of jnp's constructors (the constant initializers) is not a layout
            x = engine.constrain(x, sharding)
        elif sharding is not None and x.sharding != sharding and _equivalent(x.sharding, sharding, x.ndim):
            x = jax.device_put(x, sharding)  # the same layout, described as asked (P('x', None), not P('x',))
        return x

    def _identity(self) -> tuple:
        """What equality and hashing compare: the class, and each field with the sign of its zeros (`_exact`)."""
        return (type(self), *(_exact(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Initializer):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def with_seed(self, seed: int | None) -> "Initializer":
        """This initializer with a seed: called with ``key=None``, it draws from ``jax.random.key(seed)``.

        So a seeded initializer gives the same values on every call, as a seeded Keras initializer does. A key
        passed to the call still wins over the seed.

        Examples:
          >>> import jinit
          >>> init = jinit.glorot_uniform().with_seed(3)
          >>> bool((init(None, (2, 3)) == init(None, (2, 3))).all())
          True
        """
        return dataclasses.replace(self, seed=checks.seed(seed))

    @property
    def config(self) -> dict[str, Any]:
        """The factory's arguments by name, in its order: ``factory(**init.config) == init`` (without the seed)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "seed"}

    def __repr__(self) -> str:
        config = self.config
        if self.bare and not config:
            text = self.name
        else:
            text = f"{self.name}({', '.join(f'{k}={v!r}' for k, v in config.items())})"
        return text if self.seed is None else f"{text}.with_seed({self.seed})"

    def _set(self, **fields: Any) -> None:
        """Sets checked fields from `__post_init__` (the dataclass is frozen)."""
        for field, value in fields.items():
            object.__setattr__(self, field, value)


def _exact(value: Any) -> Any:
    """A field as equality sees it: a float with the sign of a zero (``-0.0 == 0.0`` for Python, but a sample
    scaled by one differs from a sample scaled by the other), tuples element by element, anything else as is."""
    if isinstance(value, float):
        return value, math.copysign(1.0, value)
    if isinstance(value, int):  # equal to the float of its value, as in Python: constant(1) == constant(1.0)
        return value, 1.0
    if isinstance(value, tuple):
        return tuple(_exact(v) for v in value)
    return value


def calls_lapack(init: Any) -> bool:
    """Whether `init` or an initializer it holds (a wrapper's inner one, in a field or a tuple of them) calls LAPACK
    (`Initializer.lapack`): a program of jinit's holds at most one such draw (`jinit._src.plan.Plan._stacked`)."""
    if not isinstance(init, Initializer):
        return False
    if init.lapack:
        return True
    values = [getattr(init, field.name) for field in dataclasses.fields(init)]
    return any(calls_lapack(x) for value in values for x in (value if isinstance(value, tuple | list) else (value,)))


def _equivalent(a: Any, b: Any, ndim: int) -> bool:
    """Whether shardings `a` and `b` lay out an array of `ndim` dimensions alike; False where JAX cannot say (jax 0.9
    compares no sharding with one of an abstract mesh, which Keras's layouts inside its mesh are)."""
    try:
        return a.is_equivalent_to(b, ndim)
    except jax.errors.JaxRuntimeError:
        return False


def _outside_any_mesh() -> bool:
    """Whether no mesh is set and no trace is running (where a mesh could be set)."""
    context = checks.current_mesh()
    return isinstance(context, jax.sharding.Mesh) and context.empty


def rebuild(name: str, arguments: tuple[tuple[str, Any], ...], seed: int | None = None) -> Initializer:
    """The initializer named `name` with `arguments` and `seed`: what pickles of jinit 0.1.0 call to unpickle."""
    init = _CLASSES[name](**dict(arguments))
    return init if seed is None else init.with_seed(seed)
