"""jinit initializers as Keras 3 initializers: ``Dense(3, kernel_initializer=KerasInitializer(jinit.he_normal()))``.

`KerasInitializer` is a real ``keras.initializers.Initializer`` subclass, registered with Keras as
``"jinit>KerasInitializer"``, so models that use it save and load through ``model.save(...)`` and
``keras.models.load_model(...)``: its config holds the jinit initializer's own config (`jinit.serialize`),
loaded back with the same safety checks as `jinit.deserialize`. Importing this module imports Keras
(``pip install jinit[keras]``); ``import jinit`` never does. The samples are JAX arrays, so it is meant for
Keras's JAX backend, which it selects (``KERAS_BACKEND=jax``) when Keras is not imported yet and
``KERAS_BACKEND`` is not set.
"""

import os
import random
import sys
from typing import Any

if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "jax")  # jinit's samples are JAX arrays

import jax
import keras

from jinit._src import checks, registry
from jinit._src.base import Initializer
from jinit._src.typing import InitializerLike, Shape


@keras.saving.register_keras_serializable(package="jinit")
class KerasInitializer(keras.initializers.Initializer):
    """A jinit initializer that Keras calls as ``initializer(shape, dtype=None)``.

    As Keras's random initializers: with an int `seed` every call gives the same values (those of
    ``init.with_seed(seed)``); with ``seed=None`` a seed is drawn from Python's `random` when the initializer is
    built (so ``keras.utils.set_random_seed`` makes it reproducible), and the config keeps ``seed=None``, so a
    reloaded model draws a new one; but a seeded jinit initializer (``init.with_seed(3)``) keeps its own seed.

    Args:
      init: a jinit `Initializer`, or anything `jinit.get` resolves to one (a Keras string identifier or a
        config dict).
      seed: None or an int.

    Raises:
      TypeError: `init` is not a jinit initializer (a plain function cannot be saved), or `seed` not an int.
      ValueError: `init` is an unknown identifier or an unsafe config.

    Examples:
      >>> import jinit
      >>> from jinit.keras import KerasInitializer
      >>> initializer = KerasInitializer(jinit.lecun_normal(), seed=1)
      >>> initializer((3, 2)).shape
      (3, 2)
      >>> KerasInitializer.from_config(initializer.get_config()).init == jinit.lecun_normal()
      True
    """

    def __init__(self, init: InitializerLike | str | dict[str, Any], seed: int | None = None) -> None:
        resolved = registry.get(init) if isinstance(init, str | dict) else init
        if not isinstance(resolved, Initializer):
            raise TypeError(
                "Argument `init` must be a jinit initializer (or a Keras identifier or config of one), so that "
                f"Keras can save it. Received: init={checks.show(init)}"
            )
        self.init = resolved
        self._seed = checks.seed(seed)
        own = self._seed if self._seed is not None else resolved.seed
        self.seed = own if own is not None else random.randint(1, 10**9)

    def __call__(self, shape: Shape, dtype: Any = None) -> jax.Array:
        dtype = keras.backend.standardize_dtype(dtype if dtype is not None else keras.config.floatx())
        return self.init(jax.random.key(self.seed), shape, dtype)

    def get_config(self) -> dict[str, Any]:
        return {"init": registry.serialize(self.init), "seed": self._seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "KerasInitializer":
        if not isinstance(config, dict) or set(config) - {"init", "seed"} or "init" not in config:
            raise ValueError(
                f"A `KerasInitializer` config has the keys 'init' and 'seed'. {checks.received('config', config)}"
            )
        return cls(registry.deserialize(config["init"]), config.get("seed"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KerasInitializer) and (self.init, self._seed) == (other.init, other._seed)

    def __hash__(self) -> int:
        return hash((KerasInitializer, self.init, self._seed))

    def __repr__(self) -> str:
        return f"KerasInitializer({self.init!r}, seed={self._seed!r})"
