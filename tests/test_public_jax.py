"""Public JAX only: no ``jax._src`` anywhere, and the one unnamed field the
Lovász engine reads (whether a lowering is for ``jax.export``) degrades to a
program that still exports when a JAX release moves it.

A private JAX module can move in any release and take ``import jaxloss`` with
it; the export flag can move too, so the engine reads it defensively and,
when JAX does not say, lowers the XLA core, which every program serializes.
"""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import _lovasz_engine

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRIVATE = "jax." + "_src"  # Spelled so that this file does not match.


def _python_files():
  for folder in ("jaxloss", "tests", "examples", "benchmarks", "docs"):
    yield from sorted((ROOT / folder).rglob("*.py"))
  yield ROOT / "conftest.py"


def _private_uses(tree):
  """Lines that import or reach ``jax._src`` (by ``import``, by attribute, or
  by a module name in a string, as ``importlib`` takes it)."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ""
      names = [module] + [f"{module}.{alias.name}" for alias in node.names]
    elif isinstance(node, ast.Attribute):
      names = [ast.unparse(node)]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
      names = [node.value]
    else:
      continue
    if any(n == PRIVATE or n.startswith(PRIVATE + ".") for n in names):
      yield node.lineno


def test_no_private_jax_module_is_imported_or_reached():
  found = []
  for path in _python_files():
    lines = sorted(set(_private_uses(ast.parse(path.read_text()))))
    found += [f"{path.relative_to(ROOT)}:{line}" for line in lines]
  assert not found, f"{PRIVATE} is used at {found}; use public JAX"


def test_private_use_is_detected():
  snippets = [
    f"from {PRIVATE} import ad_util",
    f"import {PRIVATE}.core",
    "from jax import _src",
    f"x = {PRIVATE}.core.Tracer",
    f"importlib.import_module('{PRIVATE}.core')",
  ]
  for snippet in snippets:
    assert list(_private_uses(ast.parse(snippet))), snippet
  assert not list(_private_uses(ast.parse("from jax.extend import core")))


def test_export_flag_reader_says_unknown_without_the_field():
  class Empty:
    pass

  ctx = Empty()
  assert _lovasz_engine._lowering_for_export(ctx) is None
  ctx.module_context = Empty()
  assert _lovasz_engine._lowering_for_export(ctx) is None
  ctx.module_context.lowering_parameters = Empty()
  assert _lovasz_engine._lowering_for_export(ctx) is None
  ctx.module_context.lowering_parameters.for_export = True
  assert _lovasz_engine._lowering_for_export(ctx) is True


def _inputs(shape):
  rng = np.random.default_rng(0)
  probs = jax.nn.softmax(jnp.asarray(rng.standard_normal(shape), jnp.float32))
  labels = jnp.asarray(rng.integers(0, shape[-1], shape[:-1]), jnp.int32)
  return probs, labels


def _loss_and_grad(labels):
  return jax.jit(
    jax.value_and_grad(lambda p: jaxloss.lovasz_softmax(p, labels))
  )


def test_this_jax_says_whether_a_lowering_is_for_export(monkeypatch):
  """On the supported JAX the flag is read, so the CPU keeps its host core."""
  seen = []
  read = _lovasz_engine._lowering_for_export

  def spy(ctx):
    seen.append(read(ctx))
    return seen[-1]

  monkeypatch.setattr(_lovasz_engine, "_lowering_for_export", spy)
  probs, labels = _inputs((2, 3, 5, 4))
  fn = _loss_and_grad(labels)
  fn.lower(probs)
  jax.export.export(fn)(probs)
  assert seen and set(seen) == {False, True}, (
    f"JAX no longer says whether a lowering is for jax.export ({seen}): "
    "jaxloss._lovasz_engine._lowering_for_export must read it anew"
  )


def test_unknown_export_flag_lowers_the_xla_core_and_exports(monkeypatch):
  probs, labels = _inputs((2, 3, 7, 4))  # A shape no other test lowers.
  want = _loss_and_grad(labels)(probs)  # The host core on the CPU.
  monkeypatch.setattr(_lovasz_engine, "_lowering_for_export", lambda ctx: None)
  fn = _loss_and_grad(labels)
  assert "callback" not in fn.lower(probs).as_text()
  exported = jax.export.export(fn)(probs)
  assert "callback" not in exported.mlir_module()
  restored = jax.export.deserialize(exported.serialize())
  for out in (fn(probs), restored.call(probs)):
    for got, expected in zip(out, want):
      np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flag", [True, False])
def test_known_export_flag_picks_the_core(monkeypatch, flag):
  """Forced either way, the CPU lowering follows the flag."""
  monkeypatch.setattr(_lovasz_engine, "_lowering_for_export", lambda ctx: flag)
  probs, labels = _inputs((2, 3, 6, 4) if flag else (2, 3, 4, 4))
  text = _loss_and_grad(labels).lower(probs).as_text()
  assert ("callback" in text) is not flag
