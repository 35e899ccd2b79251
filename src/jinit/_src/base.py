"""The initializer value: a factory's name and its arguments, callable as ``init(key, shape, dtype)``."""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.core import Tracer

from jinit._src import checks
from jinit._src.typing import DTypeLike, KeyArray, OutSharding, Shape

Sampler = Callable[..., jax.Array]
"""``sampler(key, shape, dtype, out_sharding, **arguments)`` with checked key, shape and resolved dtype."""

_FACTORIES: dict[str, Callable[..., "Initializer"]] = {}
_SAMPLERS: dict[str, Sampler] = {}
_KEYLESS: set[str] = set()
_READY: set[str] = set()


def factory(name: str, sampler: Sampler, *, keyless: bool = False) -> Callable:
    """Declares a factory: its values are named `name` and sampled by `sampler`.

    `keyless` initializers (zeros, ones, constant, identity) use no randomness and accept ``key=None``.
    """

    def declare(build: Callable[..., "Initializer"]) -> Callable[..., "Initializer"]:
        assert name not in _FACTORIES, name
        _FACTORIES[name] = build
        _SAMPLERS[name] = sampler
        if keyless:
            _KEYLESS.add(name)
        return build

    return declare


def keyless() -> frozenset[str]:
    """The names of the factories whose initializers use no randomness and accept ``key=None``."""
    return frozenset(_KEYLESS)


def factories() -> dict[str, Callable[..., "Initializer"]]:
    """Every declared factory by name (a copy)."""
    return dict(_FACTORIES)


def ready(name: str) -> "Initializer":
    """The value of a factory that takes no arguments; it prints as its bare name (``zeros``)."""
    _READY.add(name)
    return _FACTORIES[name]()


@dataclasses.dataclass(frozen=True, repr=False)
class Initializer:
    """An initializer as a value: `name` is the factory that built it, `arguments` every argument it got.

    Two initializers are equal, and hash equal, when they were built by the same factory with the same
    arguments, so an initializer can be a `jax.jit` static argument or a field of a Flax module without
    retracing. It pickles by calling its factory again, prints as that call, and is not a pytree.

    Calling it is ``init(key, shape, dtype=None, out_sharding=None)``: `dtype` defaults to the one given to the
    factory, and that defaults to JAX's default float type (float64 under ``jax_enable_x64``, else float32).
    """

    name: str
    arguments: tuple[tuple[str, Any], ...]
    seed: int | None = None

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

    def __call__(
        self,
        key: KeyArray | None,
        shape: Shape,
        dtype: DTypeLike | None = None,
        out_sharding: OutSharding = None,
    ) -> jax.Array:
        if key is None and self.seed is not None:
            key = jax.random.key(self.seed)
        key = checks.key(key, optional=self.name in _KEYLESS)
        shape = checks.shape(shape)
        arguments = dict(self.arguments)
        default_dtype = arguments.pop("dtype", None)
        dtype = checks.dtype("dtype", dtype) if dtype is not None else default_dtype
        sharding = checks.out_sharding(out_sharding)
        sampler = functools.partial(_SAMPLERS[self.name], key, shape, checks.resolve_dtype(self.name, dtype), sharding)
        mesh = getattr(sharding, "mesh", None)
        explicit = getattr(mesh, "explicit_axes", ())
        if explicit and _outside_any_mesh():
            with jax.set_mesh(mesh):  # outside `jit`, JAX compiles for explicit mesh axes only inside their mesh
                return sampler(**arguments)
        x = sampler(**arguments)
        if sharding is not None and isinstance(x, Tracer):
            # under `jit`, `device=` of jnp's constructors (the constant initializers) is not a layout
            x = jax.sharding.reshard(x, sharding) if explicit else jax.lax.with_sharding_constraint(x, sharding)
        return x

    @property
    def config(self) -> dict[str, Any]:
        """The factory's arguments by name: ``factory(**init.config) == init``."""
        return dict(self.arguments)

    def __repr__(self) -> str:
        if self.name in _READY and not self.arguments:
            text = self.name
        else:
            text = f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.arguments)})"
        return text if self.seed is None else f"{text}.with_seed({self.seed})"

    def __reduce__(self) -> tuple:
        return (rebuild, (self.name, self.arguments, self.seed))


def _outside_any_mesh() -> bool:
    """Whether no mesh is set and no trace is running (where a mesh could be set)."""
    context = checks.current_mesh()
    return isinstance(context, jax.sharding.Mesh) and context.empty


def rebuild(name: str, arguments: tuple[tuple[str, Any], ...], seed: int | None = None) -> Initializer:
    """Calls the factory `name` with `arguments` again, and gives the result `seed` (unpickling)."""
    init = _FACTORIES[name](**dict(arguments))
    return init if seed is None else init.with_seed(seed)


def make(name: str, **arguments: Any) -> Initializer:
    """The value of factory `name` called with `arguments` (already checked, in the factory's order)."""
    return Initializer(name, tuple(arguments.items()))
