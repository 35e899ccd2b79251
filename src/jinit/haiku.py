"""jinit initializers as Haiku initializers: ``hk.Linear(3, w_init=jinit.haiku.to_haiku(jinit.he_normal()))``.

Haiku calls an initializer as ``init(shape, dtype)`` and supplies randomness through ``hk.next_rng_key()``;
`to_haiku` adapts a jinit initializer (or any ``init(key, shape, dtype)``) to that. Haiku is imported when an
adapted initializer is first called, never by ``import jinit`` (``pip install jinit[haiku]``).
"""

import dataclasses

import jax
import jax.numpy as jnp

from jinit._src import checks
from jinit._src.base import Initializer
from jinit._src.typing import DTypeLike, InitializerLike, Shape


@dataclasses.dataclass(frozen=True)
class HaikuInitializer:
    """A jinit initializer called as Haiku calls initializers: ``init(shape, dtype)``.

    A value like the initializer it wraps: equal, hashable, printable and picklable. The key is
    ``hk.next_rng_key()``, so it must run inside a function transformed by ``hk.transform`` or
    ``hk.transform_with_state``; initializers that use no randomness (zeros, ones, constant, identity, ...)
    take no key, and so also work when ``init`` is given ``rng=None``.
    """

    init: InitializerLike

    def __call__(self, shape: Shape, dtype: DTypeLike = jnp.float32) -> jax.Array:
        import haiku as hk

        init = self.init
        if isinstance(init, Initializer) and init.keyless:
            return init(None, shape, dtype)
        try:
            key = hk.next_rng_key()
        except ValueError as err:  # outside a transform, or init given rng=None
            raise ValueError(
                f"{self!r} draws its key from `hk.next_rng_key()`: call it inside a function transformed by "
                f"`hk.transform` or `hk.transform_with_state`, and pass a key to `init` ({err})"
            ) from None
        return self.init(key, shape, dtype)


def to_haiku(init: InitializerLike) -> HaikuInitializer:
    """Adapts an initializer to Haiku: the result is called as ``init(shape, dtype)``, with ``hk.next_rng_key()``.

    Args:
      init: a jinit initializer, or any callable ``init(key, shape, dtype)`` such as `jax.nn.initializers`'.

    Returns:
      A `HaikuInitializer`, for ``w_init``/``b_init`` of Haiku's modules or ``hk.get_parameter``.

    Raises:
      TypeError: `init` is not callable.

    Examples:
      >>> import haiku as hk, jax, jax.numpy as jnp, jinit
      >>> from jinit.haiku import to_haiku
      >>> def forward(x):
      ...     return hk.Linear(3, w_init=to_haiku(jinit.glorot_uniform()), b_init=to_haiku(jinit.zeros))(x)
      >>> params = hk.transform(forward).init(jax.random.key(0), jnp.ones((2, 4)))
      >>> jax.tree.map(jnp.shape, params)
      {'linear': {'b': (3,), 'w': (4, 3)}}
    """
    return HaikuInitializer(checks.initializer("init", init))
