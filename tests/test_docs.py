"""The documentation builds without a warning, and a broken reference fails it."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from tests import references as ref

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs")


def _sphinx(src, out, *extra):
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "sphinx",
      "-W",
      "--keep-going",
      "-q",
      "-b",
      "html",
      "-d",
      os.path.join(out, ".doctrees"),
      *extra,
      src,
      out,
    ],
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("html"))
  result = _sphinx(DOCS, out)
  assert result.returncode == 0, result.stdout + result.stderr
  return out


def _read(site, page):
  with open(os.path.join(site, page), encoding="utf-8") as f:
    return f.read()


def test_api_page_documents_every_public_name(site):
  html = _read(site, "api.html")
  for name in jaxloss.__all__:
    assert f'id="jaxloss.{name}"' in html, name
  assert html.count('<dt class="sig sig-object py"') == len(jaxloss.__all__)


def test_math_is_rendered_by_mathjax(site):
  html = _read(site, "api.html")
  assert "mathjax" in html.lower()
  assert html.count('class="math') > 20  # display math and inline roles
  assert "\\frac{2 I_c + s}{P_c + T_c + s}" in html  # dice_loss's formula
  assert ".. math::" not in html and ":math:`" not in html


def test_docstring_sections_are_rendered(site):
  html = _read(site, "api.html")
  for section in (
    "Parameters",
    "Returns",
    "Convention",
    "Examples",
    "References",
  ):
    assert re.search(rf">\s*{section}\s*<", html), section


def test_guide_pages_and_figures(site):
  index = _read(site, "index.html")
  for page in (
    "choosing_a_loss.html",
    "examples/quickstart.html",
    "examples/segmentation.html",
    "examples/box_regression.html",
    "multi_device.html",
    "api.html",
  ):
    assert f'href="{page}' in index, page
  example = _read(site, "examples/segmentation.html")
  for figure in ("curves.png", "predictions.png", "focal_pt.png"):
    assert figure in example, figure
    assert os.path.exists(os.path.join(site, "_images", figure)), figure


def test_a_broken_reference_fails_the_build(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  shutil.copy(os.path.join(DOCS, "conf.py"), src / "conf.py")
  (src / "index.md").write_text(
    "# Test\n\nSee {func}`jaxloss.no_such_loss` and {doc}`missing`.\n"
  )
  out = str(tmp_path / "html")
  result = _sphinx(str(src), out)
  assert result.returncode != 0
  log = result.stdout + result.stderr
  assert "jaxloss.no_such_loss" in log and "missing" in log


# The recipes of the choosing-a-loss page, run against float64 references.


def _recipes():
  with open(os.path.join(DOCS, "choosing_a_loss.md"), encoding="utf-8") as f:
    page = f.read()
  section = page[page.index("## Recipes") :]
  namespace = {
    "functools": functools,
    "jax": jax,
    "jnp": jnp,
    "optax": optax,
    "jaxloss": jaxloss,
  }
  for block in re.findall(r"```python\n(.*?)```", section, re.S):
    exec(block, namespace)  # pylint: disable=exec-used
  return namespace


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  shifted = x - x.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_recipes_match_references():
  recipes = _recipes()
  rng = np.random.default_rng(0)
  logits = jnp.asarray(2 * rng.standard_normal((2, 4, 5, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, (2, 4, 5)), jnp.int32)
  log_p = _log_softmax(logits)
  probs, targets = np.exp(log_p), ref.one_hot(labels, 3)
  ce = -(targets * log_p).sum(-1).mean()
  dice = ref.dice(probs, targets, (0, 1, 2))
  focal = ref.softmax_focal(logits, targets, gamma=2.0).mean()
  cases = {
    "dice_ce_loss": ce + dice,
    "dice_focal_loss": focal + dice,
    "log_dice_loss": -np.log(1 - dice),
  }
  for name, want in cases.items():
    value, grad = jax.jit(jax.value_and_grad(recipes[name]))(logits, labels)
    np.testing.assert_allclose(value, want, rtol=1e-5, err_msg=name)
    assert np.all(np.isfinite(grad)), name

  # Unified focal loss (Yeung et al. 2022, asymmetric), binary, from the paper.
  logits, labels = logits[..., :2], jnp.minimum(labels, 1)
  log_p = _log_softmax(logits)
  p, y = np.exp(log_p), ref.one_hot(labels, 2)
  delta, gamma, weight = 0.6, 0.5, 0.5
  pixel_ce = -(y * log_p).sum(-1)
  focal = (
    np.where(labels == 0, (1 - delta) * (1 - p[..., 0]) ** gamma, delta)
    * pixel_ce
  )
  tp = (p * y).sum((1, 2))
  fn = ((1 - p) * y).sum((1, 2))
  fp = (p * (1 - y)).sum((1, 2))
  ti = (tp + 1e-6) / (tp + delta * fn + (1 - delta) * fp + 1e-6)
  ftl = ((1 - ti[:, 0]) + (1 - ti[:, 1]) ** (1 - gamma)) / 2
  want = weight * ftl.mean() + (1 - weight) * focal.mean()
  value, grad = jax.jit(jax.value_and_grad(recipes["unified_focal_loss"]))(
    logits, labels
  )
  np.testing.assert_allclose(value, want, rtol=1e-5)
  assert np.all(np.isfinite(grad))
