"""The documentation builds without a warning, and a broken reference fails it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

import jaxloss

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs")


def _sphinx(src, out, *extra):
  return subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
       "html", "-d", os.path.join(out, ".doctrees"), *extra, src, out],
      capture_output=True, text=True, timeout=300, check=False)


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
  for section in ("Parameters", "Returns", "Convention", "Examples",
                  "References"):
    assert re.search(rf">\s*{section}\s*<", html), section


def test_guide_pages_and_figures(site):
  index = _read(site, "index.html")
  for page in ("choosing_a_loss.html", "examples/quickstart.html",
               "examples/segmentation.html", "examples/box_regression.html",
               "multi_device.html", "api.html"):
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
      "# Test\n\nSee {func}`jaxloss.no_such_loss` and {doc}`missing`.\n")
  out = str(tmp_path / "html")
  result = _sphinx(str(src), out)
  assert result.returncode != 0
  log = result.stdout + result.stderr
  assert "jaxloss.no_such_loss" in log and "missing" in log
