"""Test-wide JAX settings: no silent upcasting, no silent broadcasting, eight
CPU devices for the multi-device tests, and which XLA flags compile the tests.

The tests that guard the numerics (``NUMERICS`` below: float64 references,
saturated logits, adversarial inputs, second derivatives, the API table's
values and derivatives) carry the ``numerics`` marker and run under XLA's
default flags, the compiler users get: the library's results depend on what
XLA does with its code (a bit-exact ``u - 1``, selects placed to steer
fusion).

A session run with ``-m "not numerics"`` (exactly that expression) selects
none of them and compiles with ``FAST_XLA_FLAGS``: LLVM's optimisations off
and XLA:CPU's older fusion emitters, which compile the many small test
programs faster; XLA's own passes are unchanged. Any other session (``pytest``
alone, ``-m numerics``, a file, ``-k``) keeps the flags of the environment,
XLA's defaults unless ``XLA_FLAGS`` says otherwise; ``-m numerics`` (exactly)
collects only the files that hold numerics tests. The README's test command
runs the two sessions. XLA reads its flags once, when JAX starts a backend,
so they are set here, before any test module is imported.

The device count must be set before JAX starts a backend too. Every other
test runs on the first CPU device, where ``jax.jit`` and eager operations
place their results by default, so eight devices change nothing for them;
``tests/test_multidevice.py`` builds its meshes on all eight."""

import os

import jax
import pytest

# The tests run under XLA's default flags (marked ``numerics``): test files,
# or test functions (``file::function``, every parameter of it), as pytest
# names them from the repository root. The README names the same ones. Of the
# API table, the checks of values and derivatives; its export and checkify
# checks test what a program carries, not what it computes.
NUMERICS = (
  "tests/test_adversarial.py",
  "tests/test_api.py::test_jit_and_vmap_agree",
  "tests/test_api.py::test_every_derivative_agrees",
  "tests/test_api.py::test_hessian_vector_product",
  "tests/test_detection_focal.py",
  "tests/test_focal.py",
)

# Test files whose cases compile nothing in common: under ``--dist loadfile``
# (pyproject's default) pytest-xdist spreads them over the workers by case
# (parameter), instead of giving the whole file to one worker.
SPREAD = ("tests/test_api.py",)

FAST_XLA_FLAGS = (
  "--xla_backend_optimization_level=0",
  "--xla_cpu_use_fusion_emitters=false",
)


def _markexpr(config):
  return " ".join(config.getoption("markexpr", "").split())


def _fast(config):
  """Whether the session selects no numerics test: ``-m "not numerics"``."""
  return _markexpr(config) == "not numerics"


def pytest_ignore_collect(collection_path, config):
  """A session run with ``-m numerics`` (exactly) collects only the files
  that hold ``NUMERICS`` tests: importing the others costs each worker
  seconds, and selects nothing."""
  if (
    _markexpr(config) != "numerics"
    or collection_path.suffix != ".py"
    or not collection_path.is_relative_to(config.rootpath)
  ):
    return None
  path = collection_path.relative_to(config.rootpath).as_posix()
  return True if path not in {n.split("::")[0] for n in NUMERICS} else None


def pytest_configure(config):
  config.addinivalue_line(
    "markers",
    "numerics: guards numerical results; runs under XLA's default flags",
  )
  if _fast(config):  # Once: xdist's workers inherit the controller's.
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags += [f for f in FAST_XLA_FLAGS if f not in flags]
    os.environ["XLA_FLAGS"] = " ".join(flags)


def _is_numerics(nodeid):
  return any(
    nodeid == name or nodeid.startswith((f"{name}::", f"{name}["))
    for name in NUMERICS
  )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Marks the ``NUMERICS`` tests, before ``-m`` selects."""
  for item in items:
    if _is_numerics(item.nodeid):
      item.add_marker(pytest.mark.numerics)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """``--dist loadfile``, except that the tests of a ``SPREAD`` file go to
  the workers by parameter (``test_api.py[dice_loss]``): the tests of one
  case share its inputs."""
  if config.getvalue("dist") != "loadfile":
    return None
  from xdist.scheduler import LoadFileScheduling

  class Scheduling(LoadFileScheduling):
    def _split_scope(self, nodeid):
      path = nodeid.split("::", 1)[0]
      if path not in SPREAD:
        return path
      case = nodeid.partition("[")[2]
      return f"{path}[{case}" if case else nodeid

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
