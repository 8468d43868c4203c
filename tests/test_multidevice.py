"""Multi-device behaviour, on 8 simulated CPU devices in a subprocess.

JAX reads ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` once, when
it starts, so the checks live in ``tests/multidevice_checks.py`` and run there
under pytest in a fresh process (one process for all of them). Each test here
reports one check function of that file: ``axis_name`` under ``shard_map``
and ``pmap`` (value and per-device gradients against the single-device loss
on the global batch), GSPMD for every public function, the errors, and a few
steps of ``examples/data_parallel.py``.
"""

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = os.path.join(HERE, "multidevice_checks.py")
ROOT = os.path.dirname(HERE)


def _check_names():
  with open(CHECKS) as f:
    tree = ast.parse(f.read())
  return [node.name for node in tree.body
          if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  """Runs the checks once; returns {function: [(case, failure text or None)]}."""
  report = tmp_path_factory.mktemp("multidevice") / "report.xml"
  env = dict(os.environ)
  # Eight CPU devices; LLVM's optimisations off: these small programs are
  # compiled far more than run, and the float semantics do not change.
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=8"
                      " --xla_backend_optimization_level=0").strip()
  env["JAX_PLATFORMS"] = "cpu"  # simulated devices, also on a GPU machine
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
       "--doctest-modules", f"--junitxml={report}", CHECKS],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  log = proc.stdout[-6000:] + proc.stderr[-3000:]
  if not report.exists():
    pytest.fail(f"the multi-device run wrote no report (exit {proc.returncode})"
                f":\n{log}")
  out = {}
  for case in ET.parse(report).getroot().iter("testcase"):
    failure = case.find("failure")
    if failure is None:
      failure = case.find("error")
    if failure is None and case.find("skipped") is not None:
      failure = case.find("skipped")  # a skip is not a pass here
    text = None if failure is None else (
        (failure.get("message") or "") + "\n" + (failure.text or ""))
    out.setdefault(case.get("name").split("[")[0], []).append(
        (case.get("name"), text))
  out["_log"] = log
  out["_returncode"] = proc.returncode
  return out


@pytest.mark.parametrize("check", _check_names())
def test_multidevice(results, check):
  cases = results.get(check)
  assert cases, f"{check} did not run:\n{results['_log']}"
  failed = [(name, text) for name, text in cases if text is not None]
  assert not failed, "\n\n".join(f"{name}:\n{text[-3000:]}"
                                 for name, text in failed)


def test_multidevice_run_exit_status(results):
  assert results["_returncode"] == 0, results["_log"]
