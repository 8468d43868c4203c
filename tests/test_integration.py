"""Every public loss trains a tiny Flax model: NNX and Linen, optax, under jit.

Each loss in ``jaxloss.__all__`` is fed by an adapter chosen from the name of
its first argument: ``logits`` (dense logits ``[B, H, W, C]`` and 0/1 targets
of the same shape), ``probs`` (softmax probabilities and integer class ids) or
``pred`` (boxes ``(x1, y1, x2, y2)`` built from predicted centres and sizes). A
new loss is picked up by these tests without editing them; a loss whose first
argument fits no adapter fails ``test_every_public_loss_has_an_adapter``.
"""

from __future__ import annotations

import functools
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxloss

# Public names that are not losses (box geometry helpers, the distance
# transform, the soft skeleton and COCO's keypoint sigmas).
HELPERS = {
  "COCO_KEYPOINT_SIGMAS",
  "box_convert",
  "box_iou",
  "generalized_box_iou",
  "distance_transform",
  "soft_skeleton",
  "distance_box_iou",
  "complete_box_iou",
  "distribution_integral",
  "value_checks",
  # Matching costs: pairwise [N, M] matrices, not training losses.
  "softmax_class_cost",
  "focal_class_cost",
  "box_l1_cost",
  "mask_dice_cost",
  "mask_bce_cost",
  "mask_focal_cost",
}
LOSSES = sorted(n for n in jaxloss.__all__ if n not in HELPERS)
STEPS = 20
NUM_CLASSES = 4
KINDS = {"logits": "dense", "probs": "dense", "pred": "box", "loss_fn": "dense"}
# Losses whose targets are not class ids or corner boxes.
ROTATED = {
  "rotated_box_probiou_loss",
  "rotated_box_kld_loss",
  "rotated_box_gwd_loss",
}
# Every loss trains a Flax NNX model; these also a Linen one (one of each
# family: the Linen path differs only in how the step is written).
LINEN = {
  "focal_loss",
  "softmax_focal_loss",
  "dice_loss",
  "lovasz_softmax",
  "box_giou_loss",
}


def _first_arg(name: str) -> str:
  return next(iter(inspect.signature(getattr(jaxloss, name)).parameters))


# -- data: a dense batch whose labels are a fixed function of the input, and
# -- a box batch whose target boxes are near the initial predictions.


@functools.cache
def _dense_data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
  ids = np.argmax(x @ rng.normal(size=(3, NUM_CLASSES)), axis=-1)
  return jnp.asarray(x), jnp.asarray(ids, jnp.int32)


@functools.cache
def _box_data():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(8, 3)).astype(np.float32)
  t = rng.uniform(-0.3, 0.3, size=(8, 4))
  centre, size = t[:, :2], np.exp(t[:, 2:])
  boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
  return jnp.asarray(x), jnp.asarray(boxes, jnp.float32)


def _boxes(out: jax.Array) -> jax.Array:
  """``(x1, y1, x2, y2)`` from centres ``out[:, :2]`` and log-sizes."""
  centre, size = out[..., :2], jnp.exp(out[..., 2:])
  return jnp.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def _objective(name: str):
  """``f(model_output, target) -> scalar`` for loss ``name``."""
  fn = getattr(jaxloss, name)
  kind = _first_arg(name)
  if name == "distribution_focal_loss":

    def f(logits, ids):  # bins 0..3, continuous targets between them
      return jnp.mean(fn(logits, 0.75 * ids.astype(logits.dtype) + 0.2))
  elif name == "seesaw_loss":

    def f(logits, ids):  # the counts of this batch
      counts = jnp.bincount(ids.ravel(), length=NUM_CLASSES)
      return jnp.mean(fn(logits, ids, class_counts=counts))
  elif name == "keypoint_oks_loss":

    def f(out, target):  # a box's two corners as two keypoints
      corners = lambda b: b.reshape(b.shape[:-1] + (2, 2))
      area = (target[..., 2] - target[..., 0]) * (
        target[..., 3] - target[..., 1]
      )
      return jnp.mean(
        fn(
          corners(_boxes(out)),
          corners(target),
          visible=jnp.ones(target.shape[:-1] + (2,), bool),
          area=area,
          sigmas=jnp.array([0.5, 0.5]),
        )
      )
  elif name == "ohem_cross_entropy_loss":

    def f(logits, ids):  # keeps at least a quarter of the pixels
      return jnp.mean(fn(logits, ids, min_kept=ids.size // 4))
  elif kind == "loss_fn":

    def f(logits, ids):  # Dice from logits at full and half resolution
      dice = functools.partial(jaxloss.dice_loss, activation="softmax")
      return fn(dice, [logits, logits[:, ::2, ::2]], ids)
  elif kind == "logits":

    def f(logits, ids):
      onehot = jax.nn.one_hot(ids, NUM_CLASSES, dtype=logits.dtype)
      return jnp.mean(fn(logits, onehot))
  elif kind == "probs":

    def f(logits, ids):
      return jnp.mean(fn(jax.nn.softmax(logits, axis=-1), ids))
  elif name in ROTATED:

    def f(out, target):  # (cx, cy, w, h, theta): the corners' box, tilted
      angle = jnp.full(out.shape[:-1] + (1,), 0.1, out.dtype)
      centre = (target[..., :2] + target[..., 2:]) / 2
      size = target[..., 2:] - target[..., :2]
      return jnp.mean(
        fn(
          jnp.concatenate([out[..., :2], jnp.exp(out[..., 2:]), angle], -1),
          jnp.concatenate([centre, size, angle], -1),
        )
      )
  elif kind == "pred":

    def f(out, target):
      return jnp.mean(fn(_boxes(out), target))
  else:
    raise AssertionError(f"{name}: no adapter for first argument {kind!r}")
  return f


# -- tiny models


class NnxDense(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Linear(3, 8, rngs=rngs)
    self.head = nnx.Linear(8, NUM_CLASSES, rngs=rngs)

  def __call__(self, x):
    return self.head(jax.nn.relu(self.conv(x)))


class NnxBox(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(3, 16, rngs=rngs)
    self.out = nnx.Linear(16, 4, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


class LinenDense(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = jax.nn.relu(nn.Dense(8)(x))
    return nn.Dense(NUM_CLASSES)(x)


class LinenBox(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = jax.nn.relu(nn.Dense(16)(x))
    return nn.Dense(4, kernel_init=nn.initializers.zeros)(x)


def _key():
  # rbg keys compile much faster on CPU than threefry ones.
  return jax.random.key(0, impl="rbg")


def _data(name):
  return _box_data() if KINDS[_first_arg(name)] == "box" else _dense_data()


def _train_nnx(name: str) -> list[float]:
  box = KINDS[_first_arg(name)] == "box"
  model = (NnxBox if box else NnxDense)(nnx.Rngs(_key()))
  optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)
  objective = _objective(name)

  @nnx.jit
  def step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: objective(m(x), y))(model)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float
      optimizer.update(model, grads)
    return loss

  x, y = _data(name)
  # Each call returns the loss before its update: 21 calls see 20 updates.
  return [float(step(model, optimizer, x, y)) for _ in range(STEPS + 1)]


def _train_linen(name: str) -> list[float]:
  box = KINDS[_first_arg(name)] == "box"
  model = LinenBox() if box else LinenDense()
  x, y = _data(name)
  params = model.init(_key(), x)
  tx = optax.adam(0.05)
  opt_state = tx.init(params)
  objective = _objective(name)

  def loss_fn(params):
    return objective(model.apply(params, x), y)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float
      updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(STEPS + 1):  # the loss before each update: 20 updates
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  return losses


def test_every_public_loss_has_an_adapter():
  assert "dice_loss" in LOSSES and "focal_loss" in LOSSES
  for name in LOSSES:
    assert _first_arg(name) in KINDS, (
      f"{name}: add an adapter for first argument {_first_arg(name)!r} or "
      "list it in HELPERS"
    )
  for name in HELPERS:
    assert name in jaxloss.__all__, name


@pytest.mark.parametrize(
  "name, framework",
  [(n, "nnx") for n in LOSSES] + [(n, "linen") for n in sorted(LINEN)],
)
def test_loss_goes_down(name, framework):
  losses = (_train_nnx if framework == "nnx" else _train_linen)(name)
  assert np.all(np.isfinite(losses)), losses
  assert losses[-1] < 0.9 * losses[0], (name, framework, losses)
