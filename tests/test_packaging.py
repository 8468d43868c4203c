"""The release artefacts: build the sdist and the wheel, check and install them.

An editable install hides a file missing from the package (``py.typed``, a new
module), so this builds both distributions from a copy of the source tree
(``python -m build``), checks them with ``twine check --strict``, looks inside
them, installs the wheel into a fresh virtual environment outside the checkout
and runs ``tests/packaging_smoke.py`` there: import, ``py.typed``, and every
public name once under ``jax.jit``.

The environment is made by the interpreter running the tests, and sees the
packages of the running environment (so JAX is not downloaded again) through
a ``.pth`` file that lists its package directories, whichever they are: a
virtual environment's, the base interpreter's, the user's. Those directories
are added as they are, their own ``.pth`` files unread, so an editable install
of the checkout stays out of sight; the wheel is installed into the new
environment itself, whose site-packages come first on ``sys.path``, and the
smoke script fails unless ``jaxloss`` is imported from there. It runs from a
directory outside the checkout, without ``PYTHONPATH``.
"""

import email.parser
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import jaxloss

ROOT = pathlib.Path(__file__).resolve().parent.parent
SMOKE = ROOT / "tests" / "packaging_smoke.py"

# Build outputs, caches and local environments that are not source.
_NOT_SOURCE = shutil.ignore_patterns(
  ".git",
  "__pycache__",
  "*.py[cod]",
  "*.egg-info",
  "build",
  "dist",
  ".venv",
  ".pytest_cache",
  ".hypothesis",
  "_build",
  "out",
)


def _run(args, *, cwd, what, env=None):
  result = subprocess.run(
    args, cwd=cwd, env=env, capture_output=True, text=True, check=False
  )
  assert result.returncode == 0, (
    f"{what} failed ({' '.join(map(str, args))}):\n"
    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
  )
  return result


def _running_package_dirs():
  """The directories on the running interpreter's ``sys.path``, less the
  checkout (which ``PYTHONPATH`` or an editable install may have put there).
  The standard library is the new environment's own already."""
  dirs = []
  for entry in sys.path:
    path = pathlib.Path(entry or os.getcwd()).resolve()
    if (
      path.is_dir() and not path.is_relative_to(ROOT) and str(path) not in dirs
    ):
      dirs.append(str(path))
  return dirs


def _package_modules():
  """The package's files in the source tree, relative to the package root."""
  return sorted(
    p.name
    for p in (ROOT / "jaxloss").iterdir()
    if p.suffix == ".py" or p.name == "py.typed"
  )


def _check_wheel(wheel):
  with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    dist_info = f"jaxloss-{jaxloss.__version__}.dist-info"
    metadata = email.parser.Parser().parsestr(
      zf.read(f"{dist_info}/METADATA").decode()
    )
  for module in _package_modules():
    assert f"jaxloss/{module}" in names, f"wheel lacks jaxloss/{module}"
  assert f"{dist_info}/licenses/LICENSE" in names, sorted(names)
  assert not any(n.startswith("tests/") for n in names), sorted(names)

  # One version, read from jaxloss.__version__ by the build.
  assert metadata["Version"] == jaxloss.__version__
  assert metadata["License-Expression"] == "Apache-2.0"
  # The README states the oldest supported versions: the declared ones.
  readme = " ".join((ROOT / "README.md").read_text().split())
  python_floor = metadata["Requires-Python"].removeprefix(">=")
  assert f"Python {python_floor} or newer" in readme, python_floor
  requires = metadata.get_all("Requires-Dist")
  jax_floor = next(r for r in requires if r.startswith("jax>=")).split(">=")[1]
  assert f"jaxlib>={jax_floor}" in requires, requires
  assert f"JAX {jax_floor} or newer" in readme, jax_floor
  # CI's floor job runs the declared floor.
  floor = (ROOT / ".ci" / "floor.txt").read_text().split()
  assert {f"jax=={jax_floor}", f"jaxlib=={jax_floor}"} <= set(floor), floor
  assert f"python{python_floor} -m venv" in (ROOT / ".ci" / "run").read_text()
  assert metadata["Description-Content-Type"] == "text/markdown"
  assert metadata.get_payload().startswith("# jaxloss")  # the README
  classifiers = metadata.get_all("Classifier")
  assert "Typing :: Typed" in classifiers, classifiers
  assert f"Programming Language :: Python :: {python_floor}" in classifiers


def _check_sdist(sdist):
  top = f"jaxloss-{jaxloss.__version__}"
  with tarfile.open(sdist) as tf:
    names = set(tf.getnames())
  expected = [
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "conftest.py",
    "tests/packaging_smoke.py",
  ]
  expected += [f"jaxloss/{m}" for m in _package_modules()]
  missing = [f for f in expected if f"{top}/{f}" not in names]
  assert not missing, f"sdist lacks {missing}"
  assert not any("__pycache__" in n for n in names), sorted(names)


def test_build_check_install_and_run_the_wheel(tmp_path):
  src = tmp_path / "src"
  shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
  dist = tmp_path / "dist"
  # Without an isolated build environment (the test extra installs the build
  # backend); build still refuses to run unless pyproject's build-system
  # requirements are met.
  _run(
    [
      sys.executable,
      "-m",
      "build",
      "--no-isolation",
      "--sdist",
      "--wheel",
      "--outdir",
      str(dist),
      str(src),
    ],
    cwd=tmp_path,
    what="python -m build",
  )
  wheels = sorted(dist.glob("*.whl"))
  sdists = sorted(dist.glob("*.tar.gz"))
  assert [w.name for w in wheels] == [
    f"jaxloss-{jaxloss.__version__}-py3-none-any.whl"
  ]
  assert [s.name for s in sdists] == [f"jaxloss-{jaxloss.__version__}.tar.gz"]

  _run(
    [
      sys.executable,
      "-m",
      "twine",
      "check",
      "--strict",
      *map(str, wheels),
      *map(str, sdists),
    ],
    cwd=tmp_path,
    what="twine check",
  )
  _check_wheel(wheels[0])
  _check_sdist(sdists[0])

  venv = tmp_path / "venv"
  # Where the running environment has pip, the new one gets none (making
  # it is most of the cost): the running pip installs into it.
  running_pip = importlib.util.find_spec("pip") is not None
  _run(
    [sys.executable, "-m", "venv", str(venv)]
    + (["--without-pip"] if running_pip else []),
    cwd=tmp_path,
    what="python -m venv",
  )
  python = venv / "bin" / "python"
  pip = (
    [sys.executable, "-m", "pip", "--python", str(python)]
    if running_pip
    else [str(python), "-m", "pip"]
  )
  site_packages = _run(
    [
      str(python),
      "-c",
      "import sysconfig; print(sysconfig.get_path('purelib'))",
    ],
    cwd=tmp_path,
    what="the new environment's site-packages",
  ).stdout.strip()
  # Appended to the new environment's sys.path, after its own site-packages.
  (pathlib.Path(site_packages) / "_running_environment.pth").write_text(
    "".join(f"{d}\n" for d in _running_package_dirs())
  )
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
  }
  env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
  # On the CPU (no second claim on an accelerator the suite may hold), with
  # LLVM's optimisations off: the smoke programs are compiled once, run once.
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = (
    env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
  ).strip()
  _run(
    [
      *pip,
      "install",
      "--quiet",
      "--no-deps",
      "--no-index",
      "--force-reinstall",
      str(wheels[0]),
    ],
    cwd=tmp_path,
    env=env,
    what="pip install of the wheel",
  )

  # A working directory and a script directory outside the checkout.
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  shutil.copy(SMOKE, run_dir / SMOKE.name)
  result = _run(
    [str(python), SMOKE.name, str(venv)],
    cwd=run_dir,
    env=env,
    what="the smoke script in the fresh environment",
  )
  assert "public names ok" in result.stdout, result.stdout
