"""Test configuration: strict rank promotion, as in JAX's own tests; warnings are errors (pyproject)."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
