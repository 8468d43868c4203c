"""Dense losses, fwd+bwd under jit: jaxloss against optax and the floors.

    python benchmarks/dense.py [--shape 8 128 128 21] [--repeats 20]

Times ``jax.grad`` of the summed loss with respect to the logits (the loss is
computed and differentiated, as in training), after a warm-up call, as the
median of ``--repeats`` runs with ``block_until_ready``. Each group prints the
times and the ratios to its baselines; on a shared machine, read the ratios.

Groups:
  focal: jaxloss.focal_loss  vs  optax.sigmoid_focal_loss  vs  sigmoid alone
  dice:  jaxloss.dice_loss(softmax(x), y)  vs  optax.losses.dice_loss  vs
         sum(softmax(x) * one_hot(y)) alone
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import jaxloss


def median_time(fn, *args, repeats: int) -> float:
  """Median wall time in ms of ``fn(*args)``, compiled and warmed up first."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def fwd_bwd(loss):
  """jit(grad) of ``loss(x, y).sum()`` with respect to ``x``."""
  return jax.jit(jax.grad(lambda x, y: jnp.sum(loss(x, y))))


def report(title: str, times: dict[str, float], subject: str) -> None:
  print(f"\n{title}")
  for name, ms in times.items():
    print(f"  {name:<40s} {ms:9.2f} ms")
  for name, ms in times.items():
    if name.startswith("floor"):
      print(f"  {subject} takes {times[subject] / ms:.2f}x the {name}")
    elif name != subject:
      print(f"  {subject} is {ms / times[subject]:.2f}x faster than {name}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", type=int, nargs="+", default=[8, 128, 128, 21])
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  shape = tuple(args.shape)
  num_classes = shape[-1]
  kx, ky = jax.random.split(jax.random.PRNGKey(0))
  logits = 2 * jax.random.normal(kx, shape, jnp.float32)
  ids = jax.random.randint(ky, shape[:-1], 0, num_classes)
  one_hot = jax.nn.one_hot(ids, num_classes, dtype=jnp.float32)
  print(f"device {jax.devices()[0].device_kind}, jax {jax.__version__}, "
        f"logits {shape} float32, median of {args.repeats}")

  focal = {
      "jaxloss.focal_loss": fwd_bwd(jaxloss.focal_loss),
      "optax.sigmoid_focal_loss": fwd_bwd(
          lambda x, y: optax.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0)),
      "floor: jax.nn.sigmoid": fwd_bwd(lambda x, y: jax.nn.sigmoid(x)),
  }
  times = {k: median_time(f, logits, one_hot, repeats=args.repeats)
           for k, f in focal.items()}
  report("sigmoid focal loss (alpha=0.25, gamma=2), one-hot targets", times,
         "jaxloss.focal_loss")

  axes = tuple(range(len(shape) - 1))
  dice = {
      "jaxloss.dice_loss": fwd_bwd(
          lambda x, y: jaxloss.dice_loss(jax.nn.softmax(x), y)),
      "optax.losses.dice_loss": fwd_bwd(
          lambda x, y: optax.losses.dice_loss(
              x, jax.nn.one_hot(y, num_classes, dtype=jnp.float32),
              axis=axes)),
      "floor: sum(softmax(x) * one_hot(y))": fwd_bwd(
          lambda x, y: jax.nn.softmax(x) * jax.nn.one_hot(
              y, num_classes, dtype=jnp.float32)),
  }
  times = {k: median_time(f, logits, ids, repeats=args.repeats)
           for k, f in dice.items()}
  report("batch-pooled Dice on softmax probabilities, integer labels", times,
         "jaxloss.dice_loss")


if __name__ == "__main__":
  main()
