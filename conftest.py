"""Test-wide JAX settings: no silent upcasting, no silent broadcasting,
LLVM's optimisations off (the tests compile many small programs and run each
a few times; XLA's own passes, and so the numerics, are unchanged), and eight
CPU devices for the multi-device tests.

The device count must be set before JAX starts a backend, hence here. Every
other test runs on the first CPU device, where ``jax.jit`` and eager
operations place their results by default, so eight devices change nothing
for them; ``tests/test_multidevice.py`` builds its meshes on all eight."""

import os

os.environ["XLA_FLAGS"] = " ".join(
  [
    os.environ.get("XLA_FLAGS", ""),
    "--xla_backend_optimization_level=0",
    # XLA:CPU's older fusion emitters compile these small programs in
    # about two thirds of the time, with the same operations.
    "--xla_cpu_use_fusion_emitters=false",
  ]
).strip()

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_num_cpu_devices", 8)
# Random test inputs from the "rbg" generator: the same statistics, and a
# fraction of threefry's compile time on the CPU for every new shape drawn.
jax.config.update("jax_default_prng_impl", "rbg")

# The oldest supported JAX (0.7.2) has the same functions under older names:
# jax.export is a submodule to import and enable_x64 lives in jax.experimental.
import jax.export  # noqa: E402,F401  pylint: disable=g-import-not-at-top

if not hasattr(jax, "enable_x64"):
  from jax.experimental import enable_x64  # noqa: E402

  jax.enable_x64 = enable_x64
