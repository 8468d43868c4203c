"""Test-wide JAX settings: no silent upcasting, no silent broadcasting."""

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
