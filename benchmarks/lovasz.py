"""Lovász-softmax speed and memory: fwd+bwd under jit against named baselines.

    python benchmarks/lovasz.py [--repeats 7] [--batch 8] [--size 128]

Input: logits ``[B, S, S, 21]`` float32 (default ``[8, 128, 128, 21]``),
``probs = softmax(logits)``, integer labels passed as arguments,
``classes="present"``. Each timed function is
``jax.jit(jax.value_and_grad(loss))`` of the logits (what a train step runs),
warmed up and timed in interleaved rounds with ``block_until_ready``
(``harness.py``); medians are printed, grad-only times beside them.
Baselines, in the same run:

* ``plain``: the same loss written the obvious way, autodiffed by JAX through
  ``jnp.argsort`` + ``take_along_axis`` (defined below);
* ``np.sort``: one NumPy sort of the ``[21, B*S*S]`` float32 errors, the cost
  of sorting the errors once on the host.

* ``jaxloss``: ``lovasz_softmax(softmax(x), y)``, the probability path, against
  ``jaxloss from logits``: ``lovasz_softmax(x, y, activation="softmax")``.

Also printed: ``jaxloss`` with its pure-XLA core forced (the GPU/TPU path,
and the exported program's, run here on the CPU for reference), and the
compiled value-and-grad temporary memory next to the size of ``probs``. Host
(NumPy) memory of the CPU core is not part of XLA's accounting: per row it
holds a few arrays of the row's length.
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

import _harness as harness
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
    jnp.sum(present, axis=-1), 1
  )


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
  errors = np.asarray(
    jax.random.uniform(k1, (NUM_CLASSES, args.batch * args.size**2))
  )
  harness.header(__doc__.splitlines()[0])
  print(
    f"logits {shape} float32, classes='present'; probs "
    f"{probs_mib:.1f} MiB; labels as arguments; medians of "
    f"{args.repeats} interleaved rounds"
  )

  def ours(x, y, axis, engine):
    probs = jax.nn.softmax(x, axis=-1)
    if engine is None:  # the public loss: automatic choice
      return jaxloss.lovasz_softmax(probs, y, axis=axis)
    return _lovasz.softmax_with_engine(probs, y, axis=axis, engine=engine)

  def from_logits(x, y, axis):
    return jaxloss.lovasz_softmax(x, y, axis=axis, activation="softmax")

  def plain(x, y, axis):
    probs = jax.nn.softmax(x, axis=-1)
    axis = tuple(range(len(shape) - 1)) if axis is None else axis
    return plain_lovasz_softmax(probs, y, axis)

  fns = {"np.sort [21, N] float32": (np.sort, (errors,))}
  grads = {}
  for name, axis in (("pooled", None), ("per-image", (1, 2))):
    for label, loss in (
      ("jaxloss", functools.partial(ours, engine=None)),
      ("jaxloss from logits", from_logits),
      ("jaxloss XLA core", functools.partial(ours, engine="xla")),
      ("plain argsort", plain),
    ):
      loss = functools.partial(loss, axis=axis)
      fns[f"{name}: {label}"] = (harness.value_and_grad(loss), (logits, labels))
      grads[f"{name}: {label}"] = (harness.grad_only(loss), (logits, labels))
  for name in ("pooled", "per-image"):
    v1, g1 = fns[f"{name}: jaxloss from logits"][0](logits, labels)
    v2, g2 = fns[f"{name}: plain argsort"][0](logits, labels)
    print(
      f"{name}: loss {float(v1):.6f} (plain {float(v2):.6f}), "
      f"max |grad - plain grad| {float(jnp.max(jnp.abs(g1 - g2))):.1e}"
    )

  wall = harness.timed(
    {**fns, **{"grad " + k: v for k, v in grads.items()}}, args.repeats
  )
  print(
    f"\n{'value_and_grad under jit':34s} {'ms':>9s} {'grad-only':>10s}"
    f" {'temp MiB':>9s} {'x probs':>8s}"
  )
  temps = {}
  for name, (fn, fargs) in fns.items():
    if name.startswith("np."):
      print(f"{name:34s} {wall[name]:9.1f}")
      continue
    temps[name] = harness.temp_mib(fn, *fargs)
    print(
      f"{name:34s} {wall[name]:9.1f} {wall['grad ' + name]:10.1f} "
      f"{temps[name]:9.1f} {temps[name] / probs_mib:8.1f}"
    )
  sort_ms = wall["np.sort [21, N] float32"]
  print()
  for name in ("pooled", "per-image"):
    ours_ms = wall[f"{name}: jaxloss"]
    faster = wall[f"{name}: plain argsort"] / ours_ms
    print(
      f"{name:9s}: {faster:5.1f}x faster than plain argsort (target >= "
      f"12x) {'ok' if faster >= 12 else 'MISSED'}; "
      f"{ours_ms / sort_ms:4.1f}x one np.sort (target <= 4x) "
      f"{'ok' if ours_ms <= 4 * sort_ms else 'MISSED'}; temp "
      f"{temps[f'{name}: jaxloss'] / probs_mib:.1f}x probs"
    )
    logits_ms = wall[f"{name}: jaxloss from logits"]
    faster = ours_ms / logits_ms
    temp = temps[f"{name}: jaxloss from logits"]
    print(
      f"{name:9s}: from logits {faster:4.2f}x faster than of softmax(x) "
      f"(target >= 1.3x) {'ok' if faster >= 1.3 else 'MISSED'}; temp "
      f"{temp:.1f} MiB (target < 32) {'ok' if temp < 32 else 'MISSED'}"
    )


if __name__ == "__main__":
  main()
