"""Set prediction with bipartite matching: a small DETR-style detector.

A small convolutional net predicts a fixed set of ``--queries`` boxes with
class logits (three rectangle classes plus "no object") for 32 x 32 images
holding one to ``--max-objects`` rectangles. Every train step

1. builds the pairwise matching cost of every prediction with every target,
   DETR's ``class + 5 L1 - 2 GIoU`` (``jaxloss.softmax_class_cost``,
   ``jaxloss.box_l1_cost``, ``jaxloss.generalized_box_iou``);
2. solves one assignment per image with
   ``optax.assignment.hungarian_algorithm`` under ``jax.vmap``, inside the
   ``jit``-compiled step; images have different numbers of targets, padded
   to the same shape with a validity mask (padded columns get cost 0, which
   changes no assignment of the real targets, and are dropped afterwards);
3. takes DETR's set loss on the matched pairs: cross-entropy to the matched
   class (to "no object", weight 0.1, for unmatched predictions), and the L1
   and GIoU losses (``jaxloss.box_giou_loss``) of the matched boxes, averaged
   over the targets of the batch.

It prints the set loss and, on held-out images, the mean IoU of the matched
boxes and the accuracy of their classes, and saves the curves and a few
predictions (``set_matching.png``).

What the default run shows (1500 steps, about a minute on 2 CPU cores): the
set loss falls from about 7 to 1.5, the matched boxes converge on the targets
(held-out matched IoU 0.59 after 250 steps, 0.73 at the end) and the class
accuracy of the matched predictions rises from 0.49 to 0.82.

Run: ``python examples/set_matching.py [--steps 1500] [--out out/]``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxloss

NUM_CLASSES = 3  # rectangle intensities 0.4, 0.7, 1.0
NO_OBJECT = NUM_CLASSES  # the extra class of unmatched predictions
SIZE = 32
COST_WEIGHTS = dict(cls=1.0, l1=5.0, giou=2.0)  # DETR's
NO_OBJECT_WEIGHT = 0.1


# -- data


def make_images(num: int, max_objects: int, seed: int):
  """Images ``[num, 32, 32, 1]``, labels ``[num, K]``, boxes ``[num, K, 4]``
  (normalised cx, cy, w, h) and a validity mask ``[num, K]``, K =
  ``max_objects``; each image holds 1 to K rectangles."""
  rng = np.random.default_rng(seed)
  images = np.zeros((num, SIZE, SIZE, 1), np.float32)
  labels = np.zeros((num, max_objects), np.int32)
  boxes = np.zeros((num, max_objects, 4), np.float32)
  valid = np.zeros((num, max_objects), bool)
  for i in range(num):
    for k in range(rng.integers(1, max_objects + 1)):
      w, h = rng.uniform(0.15, 0.4, 2)
      cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
      c = rng.integers(0, NUM_CLASSES)
      x1, x2 = int(round((cx - w / 2) * SIZE)), int(round((cx + w / 2) * SIZE))
      y1, y2 = int(round((cy - h / 2) * SIZE)), int(round((cy + h / 2) * SIZE))
      images[i, y1:y2, x1:x2, 0] = 0.4 + 0.3 * c
      # The box of the drawn pixels, so that targets match the image.
      boxes[i, k] = [
        (x1 + x2) / 2 / SIZE,
        (y1 + y2) / 2 / SIZE,
        (x2 - x1) / SIZE,
        (y2 - y1) / SIZE,
      ]
      labels[i, k] = c
      valid[i, k] = True
  images += rng.normal(0, 0.05, images.shape).astype(np.float32)
  return images, labels, boxes, valid


# -- model


class SetPredictor(nnx.Module):
  """Conv encoder and an MLP head: ``queries`` (class logits, box) pairs."""

  def __init__(self, queries: int, width: int, rngs: nnx.Rngs):
    self.queries = queries
    self.convs = nnx.List(
      [
        nnx.Conv(1, width, (3, 3), strides=2, rngs=rngs),
        nnx.Conv(width, 2 * width, (3, 3), strides=2, rngs=rngs),
        nnx.Conv(2 * width, 2 * width, (3, 3), strides=2, rngs=rngs),
      ]
    )
    self.hidden = nnx.Linear(4 * 4 * 2 * width, 256, rngs=rngs)
    self.out = nnx.Linear(256, queries * (NUM_CLASSES + 1 + 4), rngs=rngs)

  def __call__(self, x):
    for conv in self.convs:
      x = nnx.relu(conv(x))
    x = nnx.relu(self.hidden(x.reshape(x.shape[0], -1)))
    x = self.out(x).reshape(x.shape[0], self.queries, NUM_CLASSES + 1 + 4)
    return x[..., : NUM_CLASSES + 1], jax.nn.sigmoid(x[..., NUM_CLASSES + 1 :])


# -- matching and the set loss


def xyxy(boxes):
  return jaxloss.box_convert(boxes, in_format="cxcywh", out_format="xyxy")


def matching_cost(logits, boxes, labels, target_boxes):
  """``[B, N, K]``: DETR's cost of every prediction with every target."""
  return (
    COST_WEIGHTS["cls"] * jaxloss.softmax_class_cost(logits, labels)
    + COST_WEIGHTS["l1"] * jaxloss.box_l1_cost(boxes, target_boxes)
    - COST_WEIGHTS["giou"]
    * jaxloss.generalized_box_iou(xyxy(boxes), xyxy(target_boxes))
  )


def assign(cost, valid):
  """Assignment matrix ``[N, K]`` of one image: 1 where prediction i is
  matched to a valid target j. Padded targets get cost 0 (the same for every
  prediction, so the real targets' assignment does not change) and are
  dropped from the result."""
  cost = jnp.where(valid[None, :], cost, 0.0)
  rows, cols = optax.assignment.hungarian_algorithm(cost)
  matched = jnp.zeros(cost.shape).at[rows, cols].set(1.0)
  return matched * valid[None, :].astype(matched.dtype)


def set_loss(logits, boxes, labels, target_boxes, valid):
  """DETR's set loss of a batch and the assignment it used."""
  cost = jax.lax.stop_gradient(
    matching_cost(logits, boxes, labels, target_boxes)
  )
  match = jax.vmap(assign)(cost, valid)  # [B, N, K]
  matched = match.sum(-1)  # [B, N]: 0/1
  target_class = jnp.where(
    matched > 0,
    jnp.einsum("bnk,bk->bn", match, labels.astype(jnp.float32)),
    NO_OBJECT,
  ).astype(jnp.int32)
  weights = jnp.where(matched > 0, 1.0, NO_OBJECT_WEIGHT)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, target_class)
  class_loss = jnp.sum(weights * ce) / jnp.sum(weights)
  matched_boxes = jnp.einsum("bnk,bkd->bnd", match, target_boxes)
  num_targets = jnp.maximum(valid.sum(), 1).astype(boxes.dtype)
  l1 = jnp.sum(matched * jnp.abs(boxes - matched_boxes).sum(-1)) / num_targets
  # Unmatched predictions meet a zero box here: a finite loss (degenerate
  # boxes are safe) multiplied by 0.
  giou = (
    jnp.sum(matched * jaxloss.box_giou_loss(xyxy(boxes), xyxy(matched_boxes)))
    / num_targets
  )
  loss = class_loss + COST_WEIGHTS["l1"] * l1 + COST_WEIGHTS["giou"] * giou
  return loss, match


@nnx.jit
def train_step(model, optimizer, images, labels, boxes, valid):
  def loss_fn(model):
    logits, pred = model(images)
    return set_loss(logits, pred, labels, boxes, valid)[0]

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def evaluate(model, images, labels, boxes, valid):
  """Mean IoU of the matched boxes and accuracy of their classes."""
  logits, pred = model(images)
  _, match = set_loss(logits, pred, labels, boxes, valid)
  iou = jax.vmap(lambda a, b: jnp.diagonal(jaxloss.box_iou(a, b)))(
    xyxy(pred), xyxy(jnp.einsum("bnk,bkd->bnd", match, boxes))
  )
  matched = match.sum(-1)
  predicted = jnp.argmax(logits, -1)
  target_class = jnp.einsum("bnk,bk->bn", match, labels.astype(jnp.float32))
  correct = matched * (predicted == target_class.astype(jnp.int32)).astype(
    matched.dtype
  )
  total = matched.sum()
  return (matched * iou).sum() / total, correct.sum() / total


# -- run


def run(
  steps: int = 1500,
  batch: int = 32,
  queries: int = 6,
  max_objects: int = 3,
  width: int = 32,
  train_size: int = 16384,
  test_size: int = 256,
  eval_every: int = 250,
  lr: float = 2e-3,
  seed: int = 0,
):
  """Trains and returns the history and the model."""
  train = make_images(train_size, max_objects, seed)
  test = tuple(
    jnp.asarray(a) for a in make_images(test_size, max_objects, seed + 1)
  )
  model = SetPredictor(queries, width, nnx.Rngs(seed))
  optimizer = nnx.Optimizer(
    model, optax.adam(optax.cosine_decay_schedule(lr, steps)), wrt=nnx.Param
  )
  rng = np.random.default_rng(seed)
  history = dict(step=[], loss=[], eval_step=[], iou=[], accuracy=[])
  start = time.perf_counter()
  for step in range(1, steps + 1):
    idx = rng.integers(0, train_size, batch)
    loss = train_step(model, optimizer, *(jnp.asarray(a[idx]) for a in train))
    history["step"].append(step)
    history["loss"].append(float(loss))
    if step % eval_every == 0 or step == steps:
      iou, accuracy = evaluate(model, *test)
      history["eval_step"].append(step)
      history["iou"].append(float(iou))
      history["accuracy"].append(float(accuracy))
      print(
        f"step {step:5d}  set loss {float(loss):7.4f}  test matched IoU "
        f"{float(iou):.3f}  class accuracy {float(accuracy):.3f}  "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
      )
  return history, model, test


def plot(history, model, test, path, num_images: int = 4):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.patches import Rectangle

  images, labels, boxes, valid = (np.asarray(a) for a in test)
  logits, pred = (
    np.asarray(a) for a in model(jnp.asarray(images[:num_images]))
  )
  fig = plt.figure(figsize=(4 * (num_images + 2), 4))
  ax = fig.add_subplot(1, num_images + 2, (1, 2))
  ax.plot(history["step"], history["loss"], lw=0.6, label="set loss (train)")
  ax.set_xlabel("step")
  ax.set_ylabel("set loss")
  ax2 = ax.twinx()
  ax2.plot(
    history["eval_step"],
    history["iou"],
    "o-",
    color="C1",
    label="matched IoU (test)",
  )
  ax2.set_ylim(0, 1)
  ax2.set_ylabel("matched IoU")
  ax.legend(loc="upper center")
  ax2.legend(loc="center right")
  colours = ["C0", "C2", "C3"]
  for i in range(num_images):
    ax = fig.add_subplot(1, num_images + 2, i + 3)
    ax.imshow(
      images[i, ..., 0], cmap="gray", extent=(0, 1, 1, 0), vmin=0, vmax=1
    )

    def outline(b, **style):  # a (cx, cy, w, h) box
      corner = (b[0] - b[2] / 2, b[1] - b[3] / 2)
      ax.add_patch(Rectangle(corner, b[2], b[3], fill=False, lw=1.5, **style))

    for b, ok in zip(boxes[i], valid[i]):
      if ok:
        outline(b, ls="--", color="yellow")
    for b, c in zip(pred[i], logits[i].argmax(-1)):
      if c != NO_OBJECT:
        outline(b, color=colours[c])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("target (dashed), predicted", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=1500)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--queries", type=int, default=6)
  parser.add_argument("--max-objects", type=int, default=3)
  parser.add_argument("--width", type=int, default=32)
  parser.add_argument("--train-size", type=int, default=16384)
  parser.add_argument("--test-size", type=int, default=256)
  parser.add_argument("--eval-every", type=int, default=250)
  parser.add_argument(
    "--lr",
    type=float,
    default=2e-3,
    help="peak Adam learning rate (cosine decay to 0)",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="out/", help="output directory")
  args = parser.parse_args(argv)
  history, model, test = run(
    args.steps,
    args.batch,
    args.queries,
    args.max_objects,
    args.width,
    args.train_size,
    args.test_size,
    args.eval_every,
    args.lr,
    args.seed,
  )
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "set_matching.png")
  plot(history, model, test, path)
  print(f"saved {path}")
  return history


if __name__ == "__main__":
  main()
