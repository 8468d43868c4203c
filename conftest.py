"""Test-wide JAX settings: no silent upcasting, no silent broadcasting, eight
CPU devices for the multi-device tests, and which XLA flags compile the tests.

The tests that guard the numerics (the ``NUMERICS`` files below: float64
references, saturated logits, adversarial inputs, second derivatives, the
API table) carry the ``numerics`` marker and run under XLA's default flags,
the compiler users get: the library's results depend on what XLA does with
its code (a bit-exact ``u - 1``, selects placed to steer fusion).

A session run with ``-m "not numerics"`` (exactly that expression) selects
none of them and compiles with ``FAST_XLA_FLAGS``: LLVM's optimisations off
and XLA:CPU's older fusion emitters, which compile the many small test
programs faster; XLA's own passes are unchanged. Any other session (``pytest``
alone, ``-m numerics``, a file, ``-k``) keeps the flags of the environment,
XLA's defaults unless ``XLA_FLAGS`` says otherwise. The README's test command
runs the two sessions. XLA reads its flags once, when JAX starts a backend,
so they are set here, before any test module is imported.

The device count must be set before JAX starts a backend too. Every other
test runs on the first CPU device, where ``jax.jit`` and eager operations
place their results by default, so eight devices change nothing for them;
``tests/test_multidevice.py`` builds its meshes on all eight."""

import os
import pathlib

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parent

# Test files run under XLA's default flags (marked ``numerics``), relative to
# the repository root. The README names the same files.
NUMERICS = (
  "tests/test_adversarial.py",
  "tests/test_api.py",
  "tests/test_detection_focal.py",
  "tests/test_focal.py",
)

# Test files whose tests compile nothing in common: under ``--dist loadfile``
# (pyproject's default) pytest-xdist spreads their tests over the workers one
# by one instead of keeping the file on one worker.
SPREAD = ("tests/test_api.py",)

FAST_XLA_FLAGS = (
  "--xla_backend_optimization_level=0",
  "--xla_cpu_use_fusion_emitters=false",
)


def _fast(config):
  """Whether the session selects no numerics test: ``-m "not numerics"``."""
  return " ".join(config.getoption("markexpr", "").split()) == "not numerics"


def pytest_configure(config):
  config.addinivalue_line(
    "markers",
    "numerics: guards numerical results; runs under XLA's default flags",
  )
  if _fast(config):  # Once: xdist's workers inherit the controller's.
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags += [f for f in FAST_XLA_FLAGS if f not in flags]
    os.environ["XLA_FLAGS"] = " ".join(flags)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Marks the tests of the ``NUMERICS`` files, before ``-m`` selects."""
  numerics = {ROOT / name for name in NUMERICS}
  for item in items:
    if item.path in numerics:
      item.add_marker(pytest.mark.numerics)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """``--dist loadfile``, except that each test of a ``SPREAD`` file is its
  own unit of work."""
  if config.getvalue("dist") != "loadfile":
    return None
  from xdist.scheduler import LoadFileScheduling

  class Scheduling(LoadFileScheduling):
    def _split_scope(self, nodeid):
      path = nodeid.split("::", 1)[0]
      return nodeid if path in SPREAD else path

  return Scheduling(config, log)


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
