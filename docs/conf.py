"""Sphinx configuration of the jaxloss documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The API page is generated from ``jaxloss.__all__`` when the sources are read,
so a new public function appears without editing the docs.
"""

from __future__ import annotations

import inspect
import os
import sys

sys.path.insert(
  0, os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
)
import jaxloss  # noqa: E402

project = "jaxloss"
author = "the jaxloss authors"
copyright = "the jaxloss authors"  # noqa: A001
version = release = jaxloss.__version__

extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples/results.md"]  # included in a page
templates_path: list[str] = []

# A broken reference is an error (with -W).
nitpicky = True
nitpick_ignore_regex = [
  # Type names in docstrings and signatures that have no page here.
  ("py:class", r"(jax|jaxlib|numpy|np|jnp)\..*"),
  ("py:class", r"(ArrayLike|Array|Axis|AxisName|Classes|optional)"),
]

# Docstrings: Google style, with the project's extra "Convention" section.
# "Returns" is prose here (shape and dtype), not "type: description", so it is
# rendered as a plain section rather than parsed for a return type.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Convention", "Returns"]
autodoc_typehints = "none"  # the Args section says what each argument takes
autodoc_default_options = {"member-order": "bysource"}
autosummary_generate = False

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"jaxloss {release}"
html_static_path: list[str] = []


def _family_title(module) -> str:
  doc = inspect.getdoc(module) or module.__name__
  return doc.splitlines()[0].rstrip(".")


def api_page() -> str:
  """reStructuredText of the API reference: every name in ``jaxloss.__all__``,

  grouped by the private module that defines it (one family each), in the
  order the families first appear in ``__all__``.
  """
  families: dict[str, list[str]] = {}
  for name in sorted(jaxloss.__all__):
    module = getattr(jaxloss, name).__module__
    families.setdefault(module, []).append(name)
  lines = [
    "API reference",
    "=============",
    "",
    "Every public function of ``jaxloss``, generated from its docstring.",
    "All of them are pure functions of arrays: ``jax.jit``, ``jax.vmap`` and",
    "``jax.grad`` apply. Predictions come first, targets second, and every",
    "option is keyword-only.",
    "",
    ".. currentmodule:: jaxloss",
    "",
    ".. autosummary::",
    "",
  ]
  lines += [f"   {name}" for name in sorted(jaxloss.__all__)]
  lines.append("")
  for module in sorted(families):
    title = _family_title(sys.modules[module])
    lines += [title, "-" * len(title), ""]
    for name in families[module]:
      lines += [f".. autofunction:: {name}", ""]
  return "\n".join(lines)


def _fill_api(app, docname, source):
  if docname == "api":
    source[0] = source[0].replace(".. jaxloss-api::", api_page())


def setup(app):
  app.connect("source-read", _fill_api)
  return {"parallel_read_safe": True}
