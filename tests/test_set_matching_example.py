"""The set-matching example: its assignment, its set loss, a tiny run."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import set_matching  # noqa: E402


def test_images_and_targets_agree():
  images, labels, boxes, valid = set_matching.make_images(8, 3, seed=1)
  assert images.shape == (8, 32, 32, 1) and labels.shape == valid.shape == (
    8,
    3,
  )
  assert valid[:, 0].all() and valid.sum() > 8  # 1 to 3 per image
  assert set(np.unique(labels[valid])) <= {0, 1, 2}
  b = boxes[valid]
  assert np.all((b[:, :2] > 0) & (b[:, :2] < 1) & (b[:, 2:] > 0.1))
  # The pixels inside the last-drawn box of an image have its intensity.
  i = 0
  k = valid[i].sum() - 1
  cx, cy, w, h = boxes[i, k] * 32
  patch = images[
    i, int(cy - h / 2) : int(cy + h / 2), int(cx - w / 2) : int(cx + w / 2), 0
  ]
  np.testing.assert_allclose(
    np.median(patch), 0.4 + 0.3 * labels[i, k], atol=0.05
  )


def test_assignment_under_vmap_undoes_a_shuffle_and_ignores_padding():
  rng = np.random.default_rng(2)
  boxes = rng.uniform(0.2, 0.8, (2, 3, 4)).astype(np.float32)
  boxes[..., 2:] = rng.uniform(0.1, 0.3, (2, 3, 2))
  labels = rng.integers(0, 3, (2, 3))
  valid = np.array([[True, True, True], [True, True, False]])
  # 5 predictions: the targets in a shuffled order, then two far boxes.
  perm = np.array([2, 0, 1])
  pred = np.concatenate(
    [boxes[:, perm], np.full((2, 2, 4), 0.05, np.float32)], 1
  )
  # Confident classes: the targets' for matched predictions, "no object"
  # (class 3) for the far boxes and for the copy of image 1's padded target.
  classes = np.concatenate([labels[:, perm], np.full((2, 2), 3)], 1)
  classes[1, list(perm).index(2)] = 3
  logits = (20 * np.eye(4)[classes] - 10).astype(np.float32)
  # set_loss computes the cost, matches under vmap and takes the loss.
  loss, match = jax.jit(set_matching.set_loss)(
    jnp.asarray(logits),
    jnp.asarray(pred),
    jnp.asarray(labels),
    jnp.asarray(boxes),
    jnp.asarray(valid),
  )
  match = np.asarray(match)
  assert match.shape == (2, 5, 3)
  for b in range(2):
    for i, j in enumerate(perm):
      assert match[b, i, j] == valid[b, j]
  assert match[1, :, 2].sum() == 0  # the padded target
  assert match.sum() == valid.sum()
  # Perfect predictions of the matched boxes: L1 and GIoU vanish, the loss
  # is the (small) class cross-entropy.
  assert 0 <= float(loss) < 0.05


def test_tiny_run_and_script(tmp_path, capsys):
  with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float
    history = set_matching.main(
      [
        "--steps",
        "4",
        "--batch",
        "4",
        "--queries",
        "4",
        "--max-objects",
        "2",
        "--width",
        "4",
        "--train-size",
        "16",
        "--test-size",
        "8",
        "--eval-every",
        "2",
        "--out",
        str(tmp_path),
      ]
    )
  assert len(history["loss"]) == 4 and np.isfinite(history["loss"]).all()
  assert history["eval_step"] == [2, 4]
  assert all(0 <= v <= 1 for v in history["iou"] + history["accuracy"])
  assert (tmp_path / "set_matching.png").stat().st_size > 0
  assert "matched IoU" in capsys.readouterr().out
