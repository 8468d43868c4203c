"""Multi-digit segmentation canvases built from scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` ships 1797 grey 8x8 digits (UCI optical
recognition of handwritten digits) inside the scikit-learn package, so nothing is
downloaded. Each canvas holds one to three of them, upscaled to a random size and
placed at random, without overlap where the canvas allows it (otherwise the later
digit is drawn in front). The label of a pixel is 0 for background and
``1 + digit`` on the digit's strokes, 11 classes in all. Most pixels are
background (about 90 %), and each digit class holds about 1 % of them: the class
imbalance that segmentation losses are made for.

The source digits are split once, by a fixed permutation stratified by digit,
into a train pool and a test pool (two thirds and one third), so test canvases
never show a digit image seen in training, whatever the seed.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.ndimage
import sklearn.datasets

NUM_CLASSES = 11  # background + digits 0-9
SPLITS = ("train", "test")
_SPLIT_SEED = 20170101  # fixed: the train/test pools never depend on `seed`
_TEST_FRACTION = 1 / 3
_STROKE = 0.4  # upscaled intensity above which a pixel is a stroke
_NOISE = 0.1  # standard deviation of the additive Gaussian pixel noise


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
  data = sklearn.datasets.load_digits()
  images = (data.images / 16.0).astype(np.float32)
  return images, data.target.astype(np.int32)


@functools.cache
def source_indices(split: str) -> np.ndarray:
  """Indices into ``load_digits()`` of the source digits of ``split``.

  The two pools are disjoint, stratified by digit and independent of any seed.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
  _, targets = _digits()
  rng = np.random.default_rng(_SPLIT_SEED)
  pools = {"train": [], "test": []}
  for digit in range(10):
    idx = rng.permutation(np.flatnonzero(targets == digit))
    num_test = int(round(len(idx) * _TEST_FRACTION))
    pools["test"].append(idx[:num_test])
    pools["train"].append(idx[num_test:])
  out = np.sort(np.concatenate(pools[split]))
  out.setflags(write=False)
  return out


def _upscale(image: np.ndarray, side: int) -> np.ndarray:
  out = scipy.ndimage.zoom(
    image, side / image.shape[0], order=1, grid_mode=True, mode="nearest"
  )
  return np.clip(out, 0.0, 1.0)


def make_canvases_with_sources(
  split: str,
  num: int,
  *,
  size: int = 48,
  seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """As :func:`make_canvases`, also returning the source index of every digit.

  Returns:
    ``(images, labels, sources)``; ``sources`` is int32 ``[num, 3]``, the
    ``load_digits()`` index of each digit drawn on the canvas, -1 where the
    canvas holds fewer than three.
  """
  if size < 24:
    raise ValueError(f"size must be at least 24; got {size}")
  pool = source_indices(split)
  digits, targets = _digits()
  rng = np.random.default_rng([seed, SPLITS.index(split)])
  lo, hi = round(size / 3), round(size * 0.46)  # digit side: 16-22 px at 48
  images = np.zeros((num, size, size), np.float32)
  labels = np.zeros((num, size, size), np.int32)
  sources = np.full((num, 3), -1, np.int32)
  for n in range(num):
    occupied = np.zeros((size, size), bool)
    for k in range(rng.integers(1, 4)):
      src = int(rng.choice(pool))
      side = int(rng.integers(lo, hi + 1))
      digit = _upscale(digits[src], side)
      stroke = digit > _STROKE
      for _ in range(50):  # look for a free spot; else draw in front
        y, x = rng.integers(0, size - side + 1, size=2)
        if not occupied[y : y + side, x : x + side].any():
          break
      occupied[y : y + side, x : x + side] = True
      window = (slice(y, y + side), slice(x, x + side))
      images[n][window] = np.where(
        stroke, digit, np.maximum(images[n][window], digit)
      )
      labels[n][window] = np.where(stroke, 1 + targets[src], labels[n][window])
      sources[n, k] = src
  images += rng.normal(0.0, _NOISE, images.shape).astype(np.float32)
  images = np.clip(images, 0.0, 1.0)
  return images[..., None], labels, sources


def make_canvases(
  split: str,
  num: int,
  *,
  size: int = 48,
  seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """Builds ``num`` segmentation canvases from the ``split`` pool of digits.

  Args:
    split: ``"train"`` or ``"test"``; the two draw on disjoint source digits.
    num: Number of canvases.
    size: Side of the square canvas in pixels (at least 24).
    seed: Seed of the composition (which digits, sizes, places, noise).

  Returns:
    ``(images, labels)``: images float32 ``[num, size, size, 1]`` in [0, 1],
    labels int32 ``[num, size, size]`` with 0 = background and ``1 + digit`` on
    the strokes of a digit (11 classes).
  """
  images, labels, _ = make_canvases_with_sources(
    split, num, size=size, seed=seed
  )
  return images, labels
