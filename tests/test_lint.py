"""Lint, format and types: ``ruff check``, ``ruff format --check`` and
``mypy`` (over ``jaxloss/``) must pass, so the one test command covers them.
Their settings live in ``pyproject.toml``."""

import os
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
