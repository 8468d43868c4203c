"""The README's code runs, and CI runs the README's test command."""

import os
import pathlib
import re
import textwrap
import types

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import conftest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language):
  return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


TEST_COMMAND = (
  'pip install -e ".[test]" && pytest -m numerics && pytest -m "not numerics"'
)


def test_quickstart_has_two_single_line_commands_and_ci_runs_the_second():
  demo, tests = _blocks("bash")[:2]
  assert demo.strip().startswith('pip install -e ".[examples]" && python ')
  assert tests.strip() == TEST_COMMAND
  assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text()
  script = demo.strip().split("&& python ")[1].split()[0]
  assert (ROOT / script).is_file()


def test_train_step_snippet_trains():
  namespace = {}
  exec(compile(_blocks("python")[0], "README.md", "exec"), namespace)

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)

    def __call__(self, x):
      return self.conv(x)

  model = Net(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  labels = (images[..., 0] > 0).astype(jnp.int32) * 2
  with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float
    losses = [
      float(namespace["train_step"](model, optimizer, images, labels))
      for _ in range(15)
    ]
  assert losses[-1] < losses[0]


def test_value_checks_snippet_reports_a_bad_label():
  snippet = next(b for b in _blocks("python") if "value_checks" in b)
  from jax.experimental import checkify  # pylint: disable=g-import-not-at-top

  import jaxloss  # pylint: disable=g-import-not-at-top

  probs = jnp.full((4, 21), 1 / 21)
  namespace = {
    "jax": jax,
    "jaxloss": jaxloss,
    "probs": probs,
    "labels": jnp.array([0, 3, 30, 1]),
  }
  try:
    exec(compile(textwrap.dedent(snippet), "README.md", "exec"), namespace)
  except checkify.JaxRuntimeError as error:
    assert "dice_loss: labels must lie in [0, 21)" in str(error)
  else:
    raise AssertionError("the README's snippet reported nothing")


def test_readme_names_the_numerics_tests():
  """The README's list of the tests run under XLA's default flags is
  conftest's, and every file and test function in it exists."""
  text = README.split("The first session runs", 1)[1]
  text = text.split("The second runs", 1)[0]
  named = re.findall(r"`(tests/[\w/]+\.py(?:::\w+)?)`", text)
  assert sorted(named) == sorted(conftest.NUMERICS)
  for name in conftest.NUMERICS:
    path, _, function = name.partition("::")
    assert (ROOT / path).is_file(), name
    if function:
      assert f"\ndef {function}(" in (ROOT / path).read_text(), name


def test_fast_flags_only_for_a_session_without_numerics_tests(request):
  def fast(markexpr):
    return conftest._fast(
      types.SimpleNamespace(getoption=lambda name, default: markexpr)
    )

  assert fast("not numerics") and fast("  not   numerics ")
  for markexpr in ("", "numerics", "not slow", "not numerics or numerics"):
    assert not fast(markexpr), markexpr
  if conftest._fast(request.config):  # This session: -m "not numerics".
    flags = os.environ.get("XLA_FLAGS", "").split()
    assert set(conftest.FAST_XLA_FLAGS) <= set(flags), flags
