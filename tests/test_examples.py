"""The demo's data builder, U-Net, metrics, loss set-ups, and a short demo run."""

from __future__ import annotations

import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.datasets
from flax import nnx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import centernet_heatmap  # noqa: E402
import digits_data  # noqa: E402
import segmentation  # noqa: E402
import unet  # noqa: E402

# -- data builder


@pytest.mark.parametrize("split,size", [("train", 48), ("test", 32)])
def test_canvas_shapes_and_ranges(split, size):
  images, labels = digits_data.make_canvases(split, 5, size=size, seed=3)
  assert images.shape == (5, size, size, 1) and images.dtype == np.float32
  assert labels.shape == (5, size, size) and labels.dtype == np.int32
  assert images.min() >= 0 and images.max() <= 1
  assert labels.min() >= 0 and labels.max() < digits_data.NUM_CLASSES == 11
  assert np.all(labels.reshape(5, -1).max(axis=1) > 0)  # a digit on each


def test_canvases_are_deterministic_given_the_seed():
  a = digits_data.make_canvases("train", 4, seed=7)
  b = digits_data.make_canvases("train", 4, seed=7)
  c = digits_data.make_canvases("train", 4, seed=8)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[1], c[1])


def test_class_balance():
  _, labels = digits_data.make_canvases("train", 300)
  counts = np.bincount(labels.ravel(), minlength=11).astype(np.float64)
  background = counts[0] / counts.sum()
  assert 0.8 < background < 0.95, background  # the imbalance is the point
  digit_share = counts[1:] / counts[1:].sum()
  assert np.all(digit_share > 0.04) and np.all(digit_share < 0.2), digit_share
  digits_per_canvas = [len(np.unique(l)) - 1 for l in labels]
  assert min(digits_per_canvas) >= 1 and max(digits_per_canvas) <= 3


def test_train_and_test_draw_on_disjoint_source_digits():
  train = digits_data.source_indices("train")
  test = digits_data.source_indices("test")
  assert not set(train) & set(test)
  assert len(train) + len(test) == 1797
  targets = sklearn.datasets.load_digits().target
  assert set(targets[train]) == set(targets[test]) == set(range(10))
  assert 0.3 < len(test) / 1797 < 0.37
  for split, pool in (("train", train), ("test", test)):
    for seed in (0, 1):
      _, labels, sources = digits_data.make_canvases_with_sources(
        split, 40, seed=seed
      )
      used = sources[sources >= 0]
      assert set(used) <= set(pool)
      for l, s in zip(labels, sources):  # labels name the drawn digits
        drawn = {1 + int(targets[i]) for i in s if i >= 0}
        assert set(np.unique(l)) - {0} <= drawn


def test_unknown_split_is_an_error():
  with pytest.raises(ValueError, match="split"):
    digits_data.make_canvases("val", 2)


# -- model and metrics


def test_unet_shapes():
  model = segmentation.make_model(0, 4)  # a unet.UNet, 11 classes
  assert isinstance(model, unet.UNet)
  logits = jax.eval_shape(
    model, jax.ShapeDtypeStruct((2, 24, 32, 1), jnp.float32)
  )
  assert logits.shape == (2, 24, 32, 11) and logits.dtype == jnp.float32
  with pytest.raises(ValueError, match="divisible by 8"):
    jax.eval_shape(model, jax.ShapeDtypeStruct((1, 30, 32, 1), jnp.float32))


def test_scores_on_a_hand_case():
  labels = np.array([[0, 0, 1, 2]])
  pred = np.array([[0, 1, 1, 1]])
  conf = segmentation.confusion(pred, labels, 3)
  np.testing.assert_array_equal(conf, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])
  s = segmentation.scores(conf)
  # IoU: background 1/2, class 1 1/3, class 2 0/1.
  np.testing.assert_allclose(s["miou"], (1 / 2 + 1 / 3 + 0) / 3)
  np.testing.assert_allclose(s["digit_miou"], (1 / 3 + 0) / 2)
  np.testing.assert_allclose(s["pixel_acc"], 2 / 4)
  perfect = segmentation.scores(segmentation.confusion(labels, labels, 3))
  assert perfect == {"miou": 1.0, "digit_miou": 1.0, "pixel_acc": 1.0}


def test_batch_order_covers_epochs():
  order = segmentation.batch_order(10, 7, 3, seed=0)
  assert order.shape == (7, 3)
  flat = order.ravel()
  assert sorted(flat[:10]) == list(range(10))  # first epoch: a permutation
  np.testing.assert_array_equal(order, segmentation.batch_order(10, 7, 3, 0))


def test_every_setup_gives_a_finite_scalar_with_a_gradient():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 8, 8, 11)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 11, (2, 8, 8)), jnp.int32)
  for setup in segmentation.SETUPS:
    value, grad = jax.jit(jax.value_and_grad(setup.loss_fn))(logits, labels)
    assert value.shape == () and np.isfinite(value), setup.name
    assert np.all(np.isfinite(grad)) and np.any(grad != 0), setup.name


# -- the demo itself


def test_demo_runs_a_few_steps(tmp_path, capsys):
  runs = segmentation.main(
    [
      "--out",
      str(tmp_path),
      "--steps",
      "3",
      "--finetune-steps",
      "2",
      "--batch-size",
      "4",
      "--train-size",
      "16",
      "--test-size",
      "6",
      "--size",
      "24",
      "--width",
      "4",
      "--depth",
      "1",
      "--eval-every",
      "2",
      "--setups",
      "cross-entropy,CE -> Lovasz",
    ]
  )
  out = capsys.readouterr().out
  assert list(runs) == ["cross-entropy", "CE -> Lovasz"]
  assert runs["CE -> Lovasz"].steps == [4, 5]  # continues the CE run
  assert runs["CE -> Lovasz"].eval_steps == [3, 5]  # from CE's last
  assert len(runs["cross-entropy"].evals) == 2  # steps 2 and 3
  for name in ("curves.png", "predictions.png", "focal_pt.png", "results.md"):
    path = tmp_path / name
    assert path.stat().st_size > 1000 if name.endswith("png") else path.exists()
  table = (tmp_path / "results.md").read_text()
  assert "| cross-entropy | 3 |" in table and "| CE -> Lovasz | 5 |" in table
  assert table.strip() in out
  results = json.loads((tmp_path / "results.json").read_text())
  for run in results["runs"].values():
    for metrics in run["evals"]:
      assert all(0 <= v <= 1 for v in metrics.values())
  # A line per evaluation: steps 2, 3 and 5.
  assert len(re.findall(r"test mIoU \d", out)) == 3


def test_initial_weights_are_deterministic_given_the_seed():
  # With the data and the batch order seeded (tested above), the initial
  # weights are the last random input of a run.
  a, b, c = (
    nnx.state(segmentation.make_model(seed, 4), nnx.Param) for seed in (0, 0, 1)
  )
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert any(
    not np.array_equal(x, z)
    for x, z in zip(jax.tree.leaves(a), jax.tree.leaves(c))
  )


def test_demo_rejects_an_unknown_setup(tmp_path):
  with pytest.raises(SystemExit, match="unknown set-up"):
    segmentation.main(["--out", str(tmp_path), "--setups", "mse"])


# -- the CenterNet heatmap example


def test_heatmap_batches_peak_at_the_centres():
  rng = np.random.default_rng(0)
  images, heatmaps = centernet_heatmap.make_batch(rng, 6, 24)
  assert images.shape == (6, 24, 24, 1) and heatmaps.shape == (6, 24, 24)
  assert heatmaps.min() >= 0 and heatmaps.max() == 1
  centres = (heatmaps == 1).reshape(6, -1).sum(1)
  assert np.all((centres >= 1) & (centres <= 3))
  # The image is brighter at the centres than on average.
  assert images[..., 0][heatmaps == 1].mean() > images.mean() + 0.3


def test_heatmap_example_fast_mode_learns(capsys):
  history = centernet_heatmap.main(["--fast"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert history["step"] == [0, 20, 40] and len(lines) == 3
  assert all(re.match(r"step +\d+  loss [\d.]+  peak recall", l) for l in lines)
  assert history["loss"][-1] < 0.5 * history["loss"][0]
  assert history["recall"][0] == 0 and history["recall"][-1] > 0.5
  assert 0 <= history["precision"][-1] <= 1
