"""A CenterNet-style heatmap head trained with ``gaussian_focal_loss``.

    python examples/centernet_heatmap.py [--steps 300] [--fast]

Synthetic images hold 1-3 bright blobs of random size on a noisy background;
the target is CenterNet's heatmap: a Gaussian bump around each blob's centre
pixel, exactly 1 at the centre. A small Flax (nnx) convolutional head
predicts one logit a pixel, trained with the penalty-reduced focal loss
summed and divided by the number of centres (Zhou et al. 2019). Every
``--eval-every`` steps it prints the loss and, on a held-out batch, the
recall and precision of the detected peaks (3 x 3 local maxima of the
heatmap above ``--threshold``, matched to a centre at most one pixel away).
The default run takes well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxloss

# CenterNet's initial bias of the heatmap logits: sigmoid(b) = 0.1, so the
# many negatives start with a small loss.
PRIOR_BIAS = float(-np.log((1 - 0.1) / 0.1))


def make_batch(
  rng: np.random.Generator, count: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
  """Images ``[N, S, S, 1]`` and heatmaps ``[N, S, S]``, float32.

  Each image holds 1-3 blobs; the heatmap is the pixelwise maximum of one
  Gaussian per blob, centred on the blob's centre pixel (value 1 there),
  with a spread that grows with the blob's radius.
  """
  yy, xx = np.mgrid[:size, :size].astype(np.float32)
  images = np.zeros((count, size, size, 1), np.float32)
  heatmaps = np.zeros((count, size, size), np.float32)
  for n in range(count):
    for _ in range(rng.integers(1, 4)):
      cy, cx = rng.integers(3, size - 3, 2)
      radius = rng.uniform(1.5, 3.0)
      d2 = (yy - cy) ** 2 + (xx - cx) ** 2
      images[n, ..., 0] += rng.uniform(0.5, 1.0) * np.exp(-d2 / radius**2)
      spread = radius / 2
      heatmaps[n] = np.maximum(heatmaps[n], np.exp(-d2 / (2 * spread**2)))
  images += rng.normal(0, 0.3, images.shape).astype(np.float32)
  return images, heatmaps


class HeatmapHead(nnx.Module):
  """Three convolutions: features, context, one heatmap logit a pixel."""

  def __init__(self, width: int, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, width, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (3, 3), kernel_dilation=2, rngs=rngs)
    self.head = nnx.Conv(
      width,
      1,
      (1, 1),
      bias_init=nnx.initializers.constant(PRIOR_BIAS),
      rngs=rngs,
    )

  def __call__(self, images: jax.Array) -> jax.Array:
    x = nnx.relu(self.conv1(images))
    x = nnx.relu(self.conv2(x))
    return self.head(x)[..., 0]  # [N, S, S] logits


def loss_fn(model: HeatmapHead, images, heatmaps) -> jax.Array:
  """The focal loss summed over the batch, divided by the number of centres."""
  loss = jaxloss.gaussian_focal_loss(model(images), heatmaps)
  num_pos = jnp.sum(heatmaps == 1, dtype=loss.dtype)
  return loss.sum() / jnp.maximum(num_pos, 1)


@nnx.jit
def train_step(model, optimizer, images, heatmaps):
  loss, grads = nnx.value_and_grad(loss_fn)(model, images, heatmaps)
  with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float
    optimizer.update(model, grads)
  return loss


def _max_pool(x: jax.Array) -> jax.Array:
  """3 x 3 maximum over ``[N, S, S]``, same size."""
  return jax.lax.reduce_window(
    x, -jnp.inf, jax.lax.max, (1, 3, 3), (1, 1, 1), "SAME"
  )


@nnx.jit
def peak_scores(model, images, heatmaps, threshold):
  """Recall and precision of the predicted peaks, and the number of each.

  A peak is a 3 x 3 local maximum of the predicted heatmap above
  ``threshold``; a centre is found if a peak lies within one pixel of it, a
  peak is right if a centre lies within one pixel of it.
  """
  probs = jax.nn.sigmoid(model(images))
  peaks = (probs == _max_pool(probs)) & (probs > threshold)
  centres = heatmaps == 1
  near_peak = _max_pool(peaks.astype(jnp.float32)) > 0
  near_centre = _max_pool(centres.astype(jnp.float32)) > 0
  found = jnp.sum(centres & near_peak)
  right = jnp.sum(peaks & near_centre)
  num_centres, num_peaks = jnp.sum(centres), jnp.sum(peaks)
  recall = found / jnp.maximum(num_centres, 1)
  precision = right / jnp.maximum(num_peaks, 1)
  return recall, precision


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--width", type=int, default=16)
  p.add_argument("--lr", type=float, default=1e-2)
  p.add_argument("--eval-every", type=int, default=50)
  p.add_argument("--eval-size", type=int, default=64)
  p.add_argument("--threshold", type=float, default=0.3)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--fast",
    action="store_true",
    help="a quick check: 40 steps on 24 x 24 images, evaluated twice",
  )
  args = p.parse_args(argv)
  if args.fast:
    args.steps, args.size, args.batch_size = 40, 24, 8
    args.eval_every, args.eval_size = 20, 16
  return args


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
  """Trains and evaluates; returns the history (step, training loss,
  recall, precision at each evaluation; step 0 is before training, its loss
  the held-out batch's)."""
  args = parse_args(argv)
  rng = np.random.default_rng(args.seed)
  eval_images, eval_heatmaps = make_batch(rng, args.eval_size, args.size)
  model = HeatmapHead(args.width, nnx.Rngs(args.seed))
  optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
  history: dict[str, list[float]] = {
    "step": [],
    "loss": [],
    "recall": [],
    "precision": [],
  }
  start = time.perf_counter()
  loss = nnx.jit(loss_fn)(model, eval_images, eval_heatmaps)  # untrained
  for step in range(args.steps + 1):
    if step:
      images, heatmaps = make_batch(rng, args.batch_size, args.size)
      loss = train_step(model, optimizer, images, heatmaps)
    if step % args.eval_every == 0 or step == args.steps:
      recall, precision = peak_scores(
        model, eval_images, eval_heatmaps, args.threshold
      )
      for key, value in (
        ("step", step),
        ("loss", loss),
        ("recall", recall),
        ("precision", precision),
      ):
        history[key].append(float(value))
      print(
        f"step {step:4d}  loss {float(loss):.4f}  "
        f"peak recall {float(recall):.3f}  precision {float(precision):.3f}  "
        f"({time.perf_counter() - start:.1f} s)"
      )
  return history


if __name__ == "__main__":
  main()
