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


def _module_of(name: str) -> str:
  """The private module that defines public ``name`` (a function knows it;
  a constant is looked up among the loaded ``jaxloss._*`` modules)."""
  obj = getattr(jaxloss, name)
  if callable(obj):
    return obj.__module__
  for module, value in sorted(sys.modules.items()):
    if module.startswith("jaxloss._") and getattr(value, name, None) is obj:
      return module
  raise LookupError(f"no jaxloss module defines {name}")


def _constant(module: str, name: str) -> list[str]:
  """A ``py:data`` entry for a public constant: its value, and its text from
  the ``#:`` comment above its assignment in ``module``."""
  from sphinx.pycode import ModuleAnalyzer

  text = ModuleAnalyzer.for_module(module).find_attr_docs()[("", name)]
  return [
    f".. py:data:: {name}",
    f"   :value: {getattr(jaxloss, name)!r}",
    "",
    *(f"   {line}" if line else "" for line in text),
    "",
  ]


def api_page() -> str:
  """reStructuredText of the API reference: every name in ``jaxloss.__all__``,

  grouped by the private module that defines it (one family each), in the
  order the families first appear in ``__all__``.
  """
  families: dict[str, list[str]] = {}
  for name in sorted(jaxloss.__all__):
    families.setdefault(_module_of(name), []).append(name)
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
  # Functions only: a constant's summary would be its type's docstring.
  lines += [
    f"   {name}"
    for name in sorted(jaxloss.__all__)
    if callable(getattr(jaxloss, name))
  ]
  lines.append("")
  for module in sorted(families):
    title = _family_title(sys.modules[module])
    lines += [title, "-" * len(title), ""]
    for name in families[module]:
      if callable(getattr(jaxloss, name)):
        lines += [f".. autofunction:: {name}", ""]
      else:
        lines += _constant(module, name)
  return "\n".join(lines)


def _fill_api(app, docname, source):
  if docname == "api":
    source[0] = source[0].replace(".. jaxloss-api::", api_page())


def setup(app):
  app.connect("source-read", _fill_api)
  return {"parallel_read_safe": True}
