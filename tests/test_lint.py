"""Lint, format and types: ``ruff check``, ``ruff format --check`` and
``mypy`` (over ``jaxloss/``) must pass, so the one test command covers them.
Their settings live in ``pyproject.toml``."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
  "command",
  [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    ["mypy"],
  ],
  ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(command):
  result = subprocess.run(
    [sys.executable, "-m", *command],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


# A duration, or a speed ratio ("2x faster", "3 times slower").
_TIMING = re.compile(
  r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|ns|seconds?|minutes?)\b"
  r"|\b\d+(?:\.\d+)?\s?(?:x|×|times)\s+(?:faster|slower)\b",
  re.IGNORECASE,
)


def test_no_timings_in_the_package():
  """Comments say why, not how fast: a timing goes stale on the next machine
  or release. Measured numbers live in ``benchmarks/README.md`` with their
  date and command."""
  found = [
    f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
    for path in sorted(pathlib.Path(ROOT, "jaxloss").glob("*.py"))
    for number, line in enumerate(path.read_text().splitlines(), 1)
    if _TIMING.search(line)
  ]
  assert not found, "\n".join(found)


def test_timing_pattern():
  for text in (
    "8.4 ms instead of 11.4 ms",
    "(2x faster than",
    "3 times slower",
  ):
    assert _TIMING.search(text), text
  for text in ("the 3 x 3 box", "1/4 times the Jaccard loss", "at x = 10"):
    assert not _TIMING.search(text), text
