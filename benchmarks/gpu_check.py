"""One-command accelerator check: the test suite and the benchmarks, to a file.

    python benchmarks/gpu_check.py                 # everything
    python benchmarks/gpu_check.py --skip-tests    # benchmarks only
    python benchmarks/gpu_check.py --out out/h100.md --lovasz-args "--size 256"

Runs, each in its own Python process on whatever accelerator JAX sees (GPU,
TPU, or the CPU when there is none), one after the other so that each has the
device to itself:

1. a probe of the platform: JAX and jaxlib versions, devices, device kind;
2. the test suite, ``python -m pytest -q`` (the multi-device checks in it run
   on eight simulated CPU devices whatever the accelerator);
3. ``benchmarks/dense.py`` (focal and Dice fwd+bwd against optax);
4. ``benchmarks/lovasz.py`` (Lovász-softmax fwd+bwd against the plain
   autodiff version and a bare sort);
5. every other ``benchmarks/*.py`` script, with its default arguments;
6. a few steps of ``examples/data_parallel.py`` over every device.

Everything each step prints is captured and written, with the exit status and
wall time of every step, to one Markdown file (default
``out/gpu_check-<platform>-<UTC time>.md``). The exit status is 0 only if
every step that ran succeeded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = """
import json, jax, jaxlib
devices = jax.devices()
print(json.dumps({
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
    "device_count": jax.device_count(),
    "process_count": jax.process_count(),
    "device_kinds": sorted({d.device_kind for d in devices}),
    "devices": [str(d) for d in devices],
}))
"""


def run_step(
  title: str, cmd: list[str], timeout: float, shown: str | None = None
) -> dict:
  """Runs ``cmd`` from the repository root; returns its record."""
  shown = shown or shlex.join(cmd)
  print(f"== {title}: {shown}", flush=True)
  start = time.perf_counter()
  try:
    proc = subprocess.run(
      cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
  except subprocess.TimeoutExpired as e:
    returncode = "timeout"
    stdout = (
      e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
    )
    stderr = (
      e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
    )
  seconds = time.perf_counter() - start
  print(f"   exit {returncode} after {seconds:.0f} s", flush=True)
  return {
    "title": title,
    "cmd": shown,
    "returncode": returncode,
    "seconds": seconds,
    "stdout": stdout,
    "stderr": stderr,
  }


def pytest_summary(output: str) -> str:
  """The final ``N passed, M failed in S s`` line of a pytest run, if any."""
  lines = [
    l.strip("= ")
    for l in output.splitlines()
    if re.search(r"\d+ (passed|failed|error)", l)
  ]
  return lines[-1] if lines else ""


def _block(text: str, limit: int = 60000) -> str:
  text = text.rstrip()
  if len(text) > limit:
    text = f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]
  return "```\n" + text.replace("```", "'''") + "\n```\n"


def report(probe: dict, steps: list[dict], argv: list[str]) -> str:
  now = datetime.datetime.now(datetime.UTC)
  kinds = ", ".join(probe.get("device_kinds", [])) or "unknown"
  out = [
    f"# jaxloss accelerator check, {now:%Y-%m-%d %H:%M} UTC",
    "",
    f"- device: {probe.get('device_count', '?')} x {kinds} "
    f"(backend `{probe.get('backend', '?')}`, "
    f"{probe.get('process_count', '?')} process)",
    f"- jax {probe.get('jax', '?')}, jaxlib {probe.get('jaxlib', '?')}, "
    f"Python {platform.python_version()}, {platform.platform()}",
    "- command: `"
    + shlex.join(["python", "benchmarks/gpu_check.py"] + argv)
    + "`",
    "",
    "| step | exit | seconds | summary |",
    "|---|---:|---:|---|",
  ]
  for s in steps:
    summary = pytest_summary(s["stdout"]) if s["title"] == "tests" else ""
    out.append(
      f"| {s['title']} | {s['returncode']} | {s['seconds']:.0f} | {summary} |"
    )
  for s in steps:
    out += [
      "",
      f"## {s['title']}",
      "",
      f"`{s['cmd']}`",
      "",
      _block(s["stdout"]),
    ]
    if s["stderr"].strip() and (s["returncode"] != 0 or s["title"] == "probe"):
      out += ["stderr:", "", _block(s["stderr"], 20000)]
  return "\n".join(out) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.splitlines()[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument(
    "--out",
    default=None,
    help="Markdown file to write (default "
    "out/gpu_check-<platform>-<UTC time>.md)",
  )
  p.add_argument(
    "--skip-tests", action="store_true", help="do not run the test suite"
  )
  p.add_argument(
    "--skip-benchmarks",
    action="store_true",
    help="do not run the benchmarks/*.py scripts",
  )
  p.add_argument(
    "--skip-example",
    action="store_true",
    help="do not run examples/data_parallel.py",
  )
  p.add_argument(
    "--pytest-args", default="", help="extra pytest arguments, one string"
  )
  p.add_argument(
    "--dense-args",
    default="",
    help="arguments for benchmarks/dense.py, one string",
  )
  p.add_argument(
    "--lovasz-args",
    default="",
    help="arguments for benchmarks/lovasz.py, one string",
  )
  p.add_argument(
    "--example-args",
    default="--steps 20 --log-every 10 --train-size 256 --test-size 64",
    help="arguments for examples/data_parallel.py, one string",
  )
  p.add_argument(
    "--timeout", type=float, default=3600, help="seconds allowed to each step"
  )
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  py = sys.executable
  steps = [
    run_step(
      "probe",
      [py, "-c", _PROBE],
      600,
      shown=f"{py} -c <print jax.devices() and versions>",
    )
  ]
  try:
    probe = json.loads(steps[0]["stdout"].strip().splitlines()[-1])
  except (ValueError, IndexError):
    probe = {}
  backend = probe.get("backend", "unknown")
  print(
    f"   {probe.get('device_count', '?')} x "
    f"{', '.join(probe.get('device_kinds', ['?']))}, jax "
    f"{probe.get('jax', '?')}",
    flush=True,
  )

  if not args.skip_tests:
    steps.append(
      run_step(
        "tests",
        [
          py,
          "-m",
          "pytest",
          "-q",
          "-p",
          "no:cacheprovider",
          "-rfE",
          "--durations=15",
        ]
        + shlex.split(args.pytest_args),
        args.timeout,
      )
    )
  if not args.skip_benchmarks:
    extra = {"dense.py": args.dense_args, "lovasz.py": args.lovasz_args}
    here = os.path.basename(__file__)
    others = sorted(
      f
      for f in os.listdir(os.path.join(ROOT, "benchmarks"))
      if f.endswith(".py")
      and f not in extra
      and f != here
      and not f.startswith("_")
    )
    for script in list(extra) + others:
      steps.append(
        run_step(
          f"{script[:-3]} benchmark",
          [py, os.path.join("benchmarks", script)]
          + shlex.split(extra.get(script, "")),
          args.timeout,
        )
      )
  if not args.skip_example:
    steps.append(
      run_step(
        "data-parallel example",
        [py, os.path.join("examples", "data_parallel.py")]
        + shlex.split(args.example_args),
        args.timeout,
      )
    )

  out = args.out
  if out is None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    out = os.path.join(ROOT, "out", f"gpu_check-{backend}-{stamp}.md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(report(probe, steps, argv))
  failed = [s["title"] for s in steps if s["returncode"] != 0]
  print(
    f"results written to {out}"
    + (f"; failed: {', '.join(failed)}" if failed else "; all steps passed")
  )
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
