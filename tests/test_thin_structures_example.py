"""The thin-structures example: data, metrics on hand cases, a tiny run."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import thin_structures  # noqa: E402


def test_canvases_are_thin_curves_and_deterministic():
  images, masks = thin_structures.make_canvases(6, size=32, seed=3)
  assert images.shape == (6, 32, 32, 1) and images.dtype == np.float32
  assert masks.shape == (6, 32, 32) and masks.dtype == np.int32
  assert images.min() >= 0 and images.max() <= 1
  share = masks.mean()
  assert 0.01 < share < 0.3, share  # thin: a small share of the pixels
  again = thin_structures.make_canvases(6, size=32, seed=3)
  np.testing.assert_array_equal(masks, again[1])


def test_scores_on_hand_cases():
  truth = np.zeros((1, 8, 8), int)
  truth[0, 4, :] = 1  # one horizontal line
  perfect = thin_structures.scores(truth, truth)
  assert perfect == {"dice": 1.0, "cldice": 1.0, "components_error": 0.0}
  broken = truth.copy()
  broken[0, 4, 3:5] = 0  # the line cut in two
  s = thin_structures.scores(broken, truth)
  assert s["components_error"] == 1.0
  np.testing.assert_allclose(s["dice"], 2 * 6 / (6 + 8))
  assert s["cldice"] < 1.0


def test_tiny_run_writes_table_and_figure(tmp_path, capsys):
  results = thin_structures.main(
    [
      "--out",
      str(tmp_path),
      "--steps",
      "2",
      "--batch-size",
      "2",
      "--train-size",
      "4",
      "--test-size",
      "4",
      "--size",
      "16",
      "--width",
      "4",
      "--depth",
      "1",
    ]
  )
  assert list(results) == [s.name for s in thin_structures.SETUPS]
  for r in results.values():
    assert 0 <= r["dice"] <= 1 and 0 <= r["cldice"] <= 1
    assert r["components_error"] >= 0
  table = (tmp_path / "results.md").read_text()
  assert (
    "| Dice + clDice | 2 |" in table
    and table.strip() in capsys.readouterr().out
  )
  assert (tmp_path / "predictions.png").stat().st_size > 1000
