"""Lovász-softmax speed and memory: fwd+bwd under jit against named baselines.

    python benchmarks/lovasz.py [--repeats 7] [--batch 8] [--size 128]

Input: logits ``[B, S, S, 21]`` float32 (default ``[8, 128, 128, 21]``),
``probs = softmax(logits)``, integer labels, ``classes="present"``. Each
timed function is ``jax.jit(jax.value_and_grad(loss))`` of the logits, warmed
up, then timed with ``block_until_ready``; the median of ``--repeats`` runs
is printed. Baselines, in the same run:

* ``plain``: the same loss written the obvious way, autodiffed by JAX through
  ``jnp.argsort`` + ``take_along_axis`` (defined below);
* ``jnp.sort``: one ``jnp.sort`` of a ``[21, B*S*S]`` float32 array (no
  gradient), the cost of sorting the errors once.

Also printed: ``jaxloss`` with its pure-XLA core forced (the GPU/TPU path,
run here on the CPU for reference), the process CPU time of each call (less
sensitive than wall time to other processes on a shared machine), and the
compiled fwd+bwd temporary memory (``memory_analysis().temp_size_in_bytes``)
next to the size of ``probs``. Host (NumPy) memory of the CPU core is not part
of XLA's accounting: per row it holds a few arrays of the row's length.

Functions are timed in interleaved rounds (one call of each per round).
"""

import argparse
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp

import jaxloss
from jaxloss import _lovasz

NUM_CLASSES = 21


def plain_lovasz_softmax(probs, labels, axis):
  """Reference-style Lovász-softmax, differentiated through argsort."""
  num_classes = probs.shape[-1]
  fg = (labels[..., None] == jnp.arange(num_classes)).astype(probs.dtype)
  errors = jnp.abs(fg - probs)
  kept = tuple(a for a in range(probs.ndim - 1) if a not in axis)
  order = kept + (probs.ndim - 1,) + axis
  lead = tuple(probs.shape[a] for a in kept) + (num_classes,)
  errors = jnp.transpose(errors, order).reshape(lead + (-1,))
  fg = jnp.transpose(fg, order).reshape(lead + (-1,))
  perm = jnp.argsort(-errors, axis=-1)
  e = jnp.take_along_axis(errors, perm, axis=-1)
  gt = jnp.take_along_axis(fg, perm, axis=-1)
  total = jnp.sum(gt, axis=-1, keepdims=True)
  inter = total - jnp.cumsum(gt, axis=-1)
  union = total + jnp.cumsum(1 - gt, axis=-1)
  jac = 1 - inter / union
  g = jnp.concatenate([jac[..., :1], jac[..., 1:] - jac[..., :-1]], axis=-1)
  losses = jnp.sum(e * g, axis=-1)
  present = (total[..., 0] > 0).astype(probs.dtype)
  return jnp.sum(present * losses, axis=-1) / jnp.maximum(
      jnp.sum(present, axis=-1), 1)


def timed(fns, args, repeats):
  """Median wall and process-CPU milliseconds of each function.

  The functions are timed in rounds, one call of each per round, so that a
  change in the machine's load shifts every function alike.
  """
  for fn in fns.values():
    jax.block_until_ready(fn(*args[fn]))
  wall = {name: [] for name in fns}
  cpu = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn(*args[fn]))
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  return ({k: 1e3 * statistics.median(v) for k, v in wall.items()},
          {k: 1e3 * statistics.median(v) for k, v in cpu.items()})


def temp_mib(fn, *args):
  return fn.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  args = parser.parse_args()

  shape = (args.batch, args.size, args.size, NUM_CLASSES)
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  logits = jax.random.normal(k1, shape, jnp.float32)
  labels = jax.random.randint(k2, shape[:-1], 0, NUM_CLASSES)
  probs_mib = logits.size * 4 / 2**20
  errors = jax.random.uniform(k1, (NUM_CLASSES, args.batch * args.size ** 2))
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
  print(f"logits {shape} float32, classes='present'; probs "
        f"{probs_mib:.1f} MiB; medians of {args.repeats} interleaved rounds "
        "(wall ms, process CPU ms)")

  def ours(x, axis, impl):
    probs = jax.nn.softmax(x, axis=-1)
    if impl == "auto":
      loss = jaxloss.lovasz_softmax(probs, labels, axis=axis)
    else:
      loss = _lovasz._lovasz_softmax(probs, labels, axis=axis, impl=impl)
    return jnp.mean(loss)

  def plain(x, axis):
    probs = jax.nn.softmax(x, axis=-1)
    axis = tuple(range(len(shape) - 1)) if axis is None else axis
    return jnp.mean(plain_lovasz_softmax(probs, labels, axis))

  fns = {"jnp.sort [21, N]": jax.jit(jnp.sort)}
  fargs = {fns["jnp.sort [21, N]"]: (errors,)}
  for name, axis in (("pooled", None), ("per-image", (1, 2))):
    for label, loss in (("jaxloss", functools.partial(ours, impl="auto")),
                        ("jaxloss XLA core", functools.partial(ours,
                                                               impl="xla")),
                        ("plain argsort", plain)):
      fn = jax.jit(jax.value_and_grad(functools.partial(loss, axis=axis)))
      fns[f"{name}: {label}"] = fn
      fargs[fn] = (logits,)
  for name in ("pooled", "per-image"):
    v1, g1 = fns[f"{name}: jaxloss"](logits)
    v2, g2 = fns[f"{name}: plain argsort"](logits)
    print(f"{name}: loss {float(v1):.6f} (plain {float(v2):.6f}), "
          f"max |grad - plain grad| {float(jnp.max(jnp.abs(g1 - g2))):.1e}")

  wall, cpu = timed(fns, fargs, args.repeats)
  print(f"\n{'function (fwd+bwd under jit)':34s} {'wall ms':>9s} {'cpu ms':>9s}"
        f" {'temp MiB':>9s} {'x probs':>8s}")
  for name, fn in fns.items():
    temp = temp_mib(fn, *fargs[fn])
    print(f"{name:34s} {wall[name]:9.1f} {cpu[name]:9.1f} {temp:9.1f} "
          f"{temp / probs_mib:8.1f}")
  sort_ms = wall["jnp.sort [21, N]"]
  print()
  for name in ("pooled", "per-image"):
    ours_ms = wall[f"{name}: jaxloss"]
    plain_ms = wall[f"{name}: plain argsort"]
    print(f"{name:9s}: {plain_ms / ours_ms:5.1f}x faster than plain argsort "
          f"(target >= 8x; CPU time "
          f"{cpu[f'{name}: plain argsort'] / cpu[f'{name}: jaxloss']:.1f}x), "
          f"{sort_ms / ours_ms:4.1f}x faster than one jnp.sort (target >= 1x),"
          f" temp {temp_mib(fns[f'{name}: jaxloss'], logits) / probs_mib:.1f}x"
          " probs (target <= 8x)")


if __name__ == "__main__":
  main()
