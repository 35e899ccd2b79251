"""The registry: initializers to and from plain, JSON-safe config dicts, and custom factories.

A config is ``{"module": "jinit", "class_name": NAME, "config": {ARGUMENT: VALUE, ...}}`` with every argument of
the factory written out (dtypes by name, tuples as lists), so it never depends on defaults, plus ``"seed"`` for
a seeded initializer. `deserialize` also reads the configs Keras 2 and Keras 3 write (see `jinit._src.keras`).

Loading is safe on configs from files a user did not write: `deserialize` never imports a module, never
evaluates code and never calls anything that is not a registered factory. Before any factory is called, a
config must be made only of dicts with string keys, lists, strings, finite numbers, booleans and None, at most
`MAX_DEPTH` deep and `MAX_ITEMS` items in all, with exactly the factory's argument names as keys; the factory
then checks the values. Every failure is a `ValueError` or `TypeError` naming the offending key and value, and
a failed load changes nothing.
"""

import dataclasses
import inspect
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import numpy as np

from jinit._src import base, checks, compose, constant, engine
from jinit._src import keras as keras_compat
from jinit._src.base import Initializer

MAX_DEPTH = checks.MAX_DEPTH
"""How deeply lists and dicts may nest in the config of one initializer (a nested initializer's config starts
again from 0: composition has its own limit, `MAX_COMPOSITION`)."""
MAX_COMPOSITION = compose.MAX_COMPOSITION
"""How deeply initializers' configs may hold initializers' configs: as deep as `scaled` and `packed` may nest."""
MAX_ITEMS = checks.MAX_ITEMS
"""How many numbers a config's values may hold (a `constant` value counts one per number)."""
MAX_STRING = 256
"""The longest string a config may hold."""
_OVERHEAD = 64
"""Values a config may hold besides its arguments' numbers, per initializer in it (its keys and small arguments)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_lock = threading.Lock()


def registered_names() -> tuple[str, ...]:
    """The names of every factory a config can name: jinit's own and those added with `register`.

    Examples:
      >>> import jinit
      >>> "glorot_uniform" in jinit.registered_names()
      True
    """
    return tuple(sorted(base.classes()))


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Initializer]]:
    """Registers a custom factory, so that its initializers are values that serialize like jinit's own.

    The decorated function takes hyperparameters (numbers, strings, booleans, None, or tuples of them, with
    defaults as usual) and returns a function ``init(key, shape, dtype)``. The decorator returns a factory with
    the same signature whose result is an `Initializer`: equal, hashable, printable, picklable (when the factory
    is importable under its name) and serializable. A `dtype` argument, if the function has one, is the
    initializer's default dtype, as for jinit's factories. Registration is thread-safe.

    Args:
      name: the factory's name in configs: letters, digits, ``_`` and ``.``, not already taken.

    Returns:
      A decorator.

    Raises:
      ValueError: the name is taken or malformed.
      TypeError: the name is not a string, or the decorated object is not a function.

    Examples:
      >>> import jax, jinit
      >>> @jinit.register("docs.scaled_normal")
      ... def scaled_normal(scale=1.0):
      ...     return lambda key, shape, dtype: scale * jax.random.normal(key, shape, dtype)
      >>> init = scaled_normal(2.0)
      >>> init
      docs.scaled_normal(scale=2.0)
      >>> jinit.serialize(init)
      {'module': 'jinit', 'class_name': 'docs.scaled_normal', 'config': {'scale': 2.0}}
      >>> jinit.deserialize(jinit.serialize(init)) == init
      True
    """
    if not isinstance(name, str):
        raise TypeError(f"Argument `name` must be a string. Received: name={checks.show(name)}")
    if not _NAME.match(name) or len(name) > MAX_STRING:
        raise ValueError(
            f"Argument `name` must be made of letters, digits, `_` and `.`, and not start with a digit. "
            f"Received: name={checks.show(name)}"
        )
    if name in base.classes():
        raise ValueError(f"An initializer named {name!r} is already registered. {checks.received('name', name)}")
    if name in keras_compat.classes() or name in keras_compat.strings():
        raise ValueError(
            "Argument `name` is one of Keras's initializer names, which configs without a `module` use with Keras's "
            f"meaning; choose another (a dotted name such as 'my_project.{name}' is safe). "
            f"{checks.received('name', name)}"
        )

    def decorator(function: Callable[..., Any]) -> Callable[..., Initializer]:
        if not inspect.isfunction(function):
            raise TypeError(f"`register` decorates a function. Received: {checks.show(function)}")
        signature = inspect.signature(function)
        _check_factory(name, signature)
        fields = [
            (p.name, Any, dataclasses.field(default=p.default) if p.default is not p.empty else dataclasses.field())
            for p in signature.parameters.values()
        ]
        cls = dataclasses.make_dataclass(
            f"Registered_{name.replace('.', '_')}",
            fields,
            bases=(Registered,),
            frozen=True,
            repr=False,
            eq=False,
            kw_only=True,
        )
        cls.name, cls.function = name, staticmethod(function)

        def build(*args: Any, **kwargs: Any) -> Initializer:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as err:
                raise TypeError(f"`{name}`: {err}") from None
            bound.apply_defaults()
            return cls(**bound.arguments)

        build.__name__ = build.__qualname__ = function.__name__
        build.__doc__ = function.__doc__
        build.__module__ = function.__module__
        build.__signature__ = signature  # type: ignore[attr-defined]
        with _lock:
            base.declare(name, cls)
        return build

    return decorator


_RESERVED = ("seed", "key", "shape", "out_sharding")
"""Argument names a registered factory cannot have: a value's seed, and the call's own arguments."""


def _check_factory(name: str, signature: inspect.Signature) -> None:
    """Refuses a factory whose initializers could never work as values: every argument must be a keyword that a
    config can give, none may take a name of `_RESERVED`, and `dtype` (the default dtype) needs a default."""
    for parameter in signature.parameters.values():
        why = None
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            why = "takes *args or **kwargs, which a config cannot name"
        elif parameter.kind is parameter.POSITIONAL_ONLY:
            why = "has a positional-only argument, which a config cannot name"
        elif parameter.name in _RESERVED:
            why = f"has an argument named `{parameter.name}`, which an initializer's seed or call already takes"
        elif parameter.name == "dtype" and parameter.default is parameter.empty:
            why = "has a `dtype` without a default (it is the initializer's default dtype, None for JAX's)"
        if why:
            raise ValueError(f"`register({name!r})`: the factory {why}. Received: {checks.label(str(signature))}")


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Registered(Initializer):
    """The initializers of a registered factory: a dataclass of the factory's arguments, made by `register`.

    Calling one calls the factory with its arguments, then the function it returns.
    """

    function: ClassVar[Callable[..., Any]]
    """The registered factory: its arguments are this class's fields."""

    def __post_init__(self) -> None:
        for k, v in self.config.items():
            self._set(**{k: checks.dtype(k, v) if k == "dtype" else _hashable(k, v)})

    def sample(self, key, shape, dtype, sharding):
        init = type(self).function(**self.config)
        return engine.lay_out(lambda k: init(k, shape, dtype), sharding, key)

    def __reduce__(self) -> tuple:
        # by name, so the loading process needs the factory registered, as for a config
        return (base.rebuild, (self.name, tuple(self.config.items()), self.seed))


def _hashable(name: str, value: Any) -> Any:
    """A custom factory's argument as a hashable, JSON-safe value (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_hashable(name, v) for v in value)
    if isinstance(value, float):
        return checks.number(name, value)
    if value is None or isinstance(value, bool | int | str):
        return value
    raise TypeError(
        f"Argument `{name}` of a registered initializer must be a number, string, boolean, None or a tuple of "
        f"them. {checks.received(name, value)}"
    )


# ----------------------------------------------------------------------------------------------- serialize


def _json(value: Any) -> Any:
    """A config value as JSON writes it: tuples as lists, an initializer (of a composed one) as its config."""
    if isinstance(value, Initializer):
        return serialize(value)
    return [_json(v) for v in value] if isinstance(value, tuple) else value


def serialize(init: Initializer) -> dict[str, Any]:
    """The config of `init`: a JSON-safe dict with every argument written out.

    Args:
      init: an `Initializer`.

    Returns:
      ``{"module": "jinit", "class_name": NAME, "config": {...}}``; `deserialize` turns it back into `init`.

    Raises:
      TypeError: `init` is not an `Initializer` (a plain function cannot be saved).

    Examples:
      >>> import jinit
      >>> config = jinit.serialize(jinit.he_normal(in_axis=(0, 1)))
      >>> config["class_name"], config["config"]
      ('he_normal', {'in_axis': [0, 1], 'out_axis': -1, 'batch_axis': [], 'dtype': None})
    """
    if not isinstance(init, Initializer):
        raise TypeError(
            f"Only a jinit `Initializer` can be serialized (build it with a jinit factory, or `jinit.register` "
            f"your own). Received: init={checks.show(init)}"
        )
    config = {k: _json(v) for k, v in init.config.items()}
    if init.seed is not None:
        config["seed"] = init.seed
    return {"module": "jinit", "class_name": init.name, "config": config}


# --------------------------------------------------------------------------------------------- deserialize


def _check_plain(path: str, value: Any, depth: int, budget: list[int], level: int = 0) -> Any:
    """`value` made only of plain JSON values, lists as tuples; checks depth (per initializer's config, and of
    initializers' configs in configs), size, strings and numbers."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"A config may hold at most {MAX_ITEMS} values. Received more, at `{checks.label(path)}`")
    if depth and isinstance(value, Mapping) and "class_name" in value:  # a composed initializer's own config
        level, depth = level + 1, 0
        if level > MAX_COMPOSITION:
            raise ValueError(
                f"A config may hold initializers' configs at most {MAX_COMPOSITION} deep (as `scaled` and `packed` "
                f"may nest). Received deeper nesting at `{checks.label(path)}`"
            )
    if depth > MAX_DEPTH:
        raise ValueError(
            f"A config may nest at most {MAX_DEPTH} levels deep. Received deeper nesting at `{checks.label(path)}`"
        )
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            where = checks.label(path)
            raise ValueError(f"Config key `{where}` holds an integer out of range. {checks.received(path, value)}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Config key `{checks.label(path)}` must be finite. {checks.received(path, value)}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ValueError(
                f"Config key `{checks.label(path)}` holds a string longer than {MAX_STRING} characters. "
                f"Received: {path}={value[:40]!r}..."
            )
        return value
    if isinstance(value, list | tuple):
        return tuple(_check_plain(f"{path}[{i}]", v, depth + 1, budget, level) for i, v in enumerate(value))
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                where = checks.label(path)
                raise TypeError(f"Config keys must be strings. Received: key {checks.show(k)} in `{where}`")
        return {k: _check_plain(f"{path}.{k}", v, depth + 1, budget, level) for k, v in value.items()}
    raise TypeError(
        f"Config key `{checks.label(path)}` must hold JSON values (numbers, strings, booleans, None, lists, dicts). "
        f"{checks.received(path, value)}"
    )


def _parameters(build: Callable[..., Any]) -> list[str]:
    """The argument names a config may give: an initializer class's fields, or a Keras builder's parameters."""
    if isinstance(build, type) and dataclasses.is_dataclass(build):
        return [f.name for f in dataclasses.fields(build) if f.name != "seed"]
    return list(inspect.signature(build).parameters)


def _check_arguments(name: str, build: Callable[..., Any], arguments: dict[str, Any], *, complete: bool) -> None:
    """Checks a config's arguments against the initializer's: none unknown and, if `complete`, none missing (a
    jinit config writes every argument out; a Keras config may leave some to Keras's defaults)."""
    parameters = _parameters(build)
    for key in arguments:
        if key not in parameters:
            raise ValueError(
                f"Unknown argument {checks.show(key)} for `{name}`. Known: {', '.join(parameters)}, seed. "
                f"{checks.received(key, arguments[key])}"
            )
    missing = [p for p in parameters if p not in arguments]
    if complete and missing:
        raise ValueError(
            f"Config of `{name}` lacks {', '.join(repr(p) for p in missing)}: a config writes every argument out. "
            f"Received: config={checks.show(arguments)}"
        )


def deserialize(config: Any) -> Initializer:
    """The initializer a config describes: one written by `serialize`, or by Keras 2 or 3.

    Safe on configs from files you did not write: it never imports a module, never evaluates code and never
    calls anything that is not a registered factory. Before a factory is called, the config must hold only
    dicts with string keys, lists, strings (at most 256 characters), finite numbers (integers below 2**63),
    booleans and None, at most 8 levels deep (each nested initializer's config, at most 16 deep, counted on
    its own) and 100,000 numbers in all, with exactly the factory's argument
    names (a Keras config may leave some to Keras's defaults). A factory's own exception becomes a
    `ValueError`, every failure names the offending key and value, and a failed load changes nothing.

    Args:
      config: a dict as written by `serialize`, or a Keras initializer config
        (``{"class_name": "GlorotUniform", "config": {...}}``).

    Returns:
      An `Initializer` equal to the one serialized.

    Raises:
      ValueError: an unknown initializer, unknown or missing arguments, bad values, NaN or infinity, nesting
        or sizes past the limits.
      TypeError: values of the wrong type.

    Examples:
      >>> import jinit
      >>> jinit.deserialize(jinit.serialize(jinit.orthogonal(2.0))) == jinit.orthogonal(2.0)
      True
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"A config must be a dict. Received: config={checks.show(config)}")
    config = _check_plain("config", config, 0, [MAX_ITEMS + _OVERHEAD * (MAX_COMPOSITION + 1)])
    name = config.get("class_name")
    if not isinstance(name, str):
        raise TypeError(f"Config key `class_name` must be a string. {checks.received('class_name', name)}")
    factories = base.classes()
    keras = keras_compat.classes()
    module = config.get("module")
    keras_module = module is None or (isinstance(module, str) and module.startswith("keras"))
    # A name Keras knows means what Keras means unless the config says it is jinit's ("module": "jinit", as
    # `serialize` writes); a name only jinit knows may leave the module out.
    from_keras = keras_module and name in keras
    if from_keras:
        known_keys, build = ("module", "class_name", "config", "registered_name"), keras[name]
    elif name in factories and module in (None, "jinit"):
        known_keys, build = ("module", "class_name", "config"), factories[name]
    elif not keras_module and module != "jinit":
        raise ValueError(f"Config key `module` must be 'jinit' or a Keras module. {checks.received('module', module)}")
    else:
        known = ", ".join(sorted(set(factories) | set(keras)))
        raise ValueError(
            f"Unknown initializer {checks.show(name)}. Known: {known}. {checks.received('class_name', name)}"
        )
    for key in config:
        if key not in known_keys:
            known = ", ".join(map(repr, known_keys))
            raise ValueError(
                f"Unknown config key {checks.show(key)}. Known: {known}. {checks.received(key, config[key])}"
            )
    arguments = config.get("config", {})
    if not isinstance(arguments, dict):
        raise TypeError(f"Config key `config` must be a dict of arguments. Received: config={checks.show(arguments)}")
    arguments = dict(arguments)
    seed = checks.seed(arguments.pop("seed", None))
    _check_arguments(name, build, arguments, complete=not from_keras)
    for field in getattr(build, "nested", ()):  # a composed initializer's own: nested configs
        if isinstance(arguments.get(field), Mapping):
            arguments[field] = deserialize(arguments[field])
    try:
        init = build(**arguments)
    except (ValueError, TypeError):
        raise
    except Exception as err:  # a registered factory's own failure; nothing else may escape
        raise ValueError(
            f"`{name}` failed on its config: {checks.show(err)}. {checks.received('config', arguments)}"
        ) from err
    return init if seed is None else init.with_seed(seed)


def get(identifier: Any) -> Any:
    """Resolves an initializer identifier, as Keras's `initializers.get` does.

    Args:
      identifier: None; an `Initializer` (returned as is); a string (a Keras identifier such as
        ``"GlorotUniform"``, ``"glorot_uniform"``, ``"normal"`` with Keras's defaults, or a jinit factory name
        whose arguments all have defaults); a config dict (`deserialize`); or any other callable
        ``init(key, shape, dtype)``, returned as is.

    Returns:
      None, an `Initializer`, or the callable given.

    Raises:
      ValueError: an unknown string, a factory that needs arguments, or anything else.

    Examples:
      >>> import jinit
      >>> jinit.get("random_normal")
      random_normal(mean=0.0, stddev=0.05, dtype=None)
      >>> jinit.get("GlorotUniform") == jinit.glorot_uniform()
      True
    """
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        strings = keras_compat.strings()
        if identifier in strings:
            return strings[identifier]()
        factory = base.classes().get(identifier)
        if factory is None:
            known = sorted(set(strings) | set(base.classes()))
            raise ValueError(f"Unknown initializer {checks.show(identifier)}. Known: {', '.join(known)}")
        try:
            return factory()
        except TypeError as err:
            raise ValueError(
                f"Initializer {checks.show(identifier)} needs arguments; pass a config dict instead. "
                f"Received: identifier={checks.show(identifier)}"
            ) from err
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if isinstance(identifier, np.ndarray | np.generic | jax.Array):  # as Keras: the values themselves
        return constant.constant(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(
        "Argument `identifier` must be None, an Initializer, a string, a config dict or a callable "
        f"`init(key, shape, dtype)`. Received: identifier={checks.show(identifier)}"
    )
