"""Deep supervision: one loss over the outputs of several decoder levels."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics


def _nearest_indices(size_in: int, size_out: int) -> np.ndarray:
  """Source index of each output cell, sampled at its centre
  (``floor((i + 1/2) * in / out)``, PyTorch's ``"nearest-exact"``)."""
  return np.minimum(
    ((2 * np.arange(size_out) + 1) * size_in) // (2 * size_out), size_in - 1
  )


def _resize_ids(labels: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  """Class ids ``[B, *S]`` to ``[B, *spatial]`` by nearest neighbour."""
  for axis, size in enumerate(spatial, start=1):
    if labels.shape[axis] != size:
      index = _nearest_indices(labels.shape[axis], size)
      labels = jnp.take(labels, jnp.asarray(index), axis=axis)
  return labels


def _resize_targets(targets: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  """Float targets ``[B, *S, C]`` to ``[B, *spatial, C]`` by averaging
  blocks (``S`` a whole multiple of ``spatial``, checked by the caller)."""
  if targets.shape[1:-1] == spatial:
    return targets
  shape = [targets.shape[0]]
  for size_in, size in zip(targets.shape[1:-1], spatial):
    shape += [size, size_in // size]
  shape.append(targets.shape[-1])
  blocks = targets.reshape(shape)
  return jnp.mean(blocks, axis=tuple(range(2, 2 * len(spatial) + 1, 2)))


def _level_weights(fn: str, weights, levels: int):
  if isinstance(weights, str):
    _checks.option(fn, "weights", weights, ("exp", "same"))
    if weights == "same":
      return [1.0] * levels
    return [0.5**i for i in range(levels)]
  if weights is None or isinstance(weights, (bool, np.bool_)):
    _checks.fail(
      fn,
      f'weights must be "exp", "same" or a sequence of {levels} numbers, '
      f"got {weights!r}",
      TypeError,
    )
  if np.shape(weights) != (levels,):
    _checks.fail(
      fn,
      f"weights must have one entry per output, shape ({levels},), got "
      f"shape {np.shape(weights)}",
    )
  if _checks.is_traced(weights) or isinstance(weights, jax.Array):
    checked = _checks.nonnegative_vector(fn, "weights", weights, levels)
    return [checked[i] for i in range(levels)]
  return [
    _checks.nonnegative(fn, f"weights[{i}]", w) for i, w in enumerate(weights)
  ]


def deep_supervision_loss(
  loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
  outputs: Sequence[ArrayLike],
  labels: ArrayLike,
  *,
  weights: str | Sequence[float] | ArrayLike = "exp",
) -> jax.Array:
  r"""A loss summed over the outputs of several resolutions (deep
  supervision), each against the labels resized to it.

  .. math::
    \mathcal{L} = \sum_{i=0}^{L-1} w_i \,
      \ell\big(o_i, \mathrm{resize}_i(y)\big),
    \qquad w_i = 2^{-i} \ (\texttt{"exp"}),\ 1 \ (\texttt{"same"}).

  Args:
    loss_fn: A loss ``loss_fn(prediction, labels)`` returning a scalar: any
      jaxloss loss, or a closure over its options, e.g.
      ``lambda p, y: jaxloss.softmax_focal_loss(p, y).mean()``.
    outputs: A list or tuple of the :math:`L` predictions ``[B, *S_i, C]``,
      full resolution first (``outputs[0]`` is weighted by 1); all of one
      rank, batch size and class count.
    labels: At full resolution: integer class ids ``[B, *S]`` or float
      targets ``[B, *S, C]`` (one-hot, soft; bool is taken as float).
    weights: ``"exp"`` (:math:`2^{-i}`), ``"same"`` (all 1) or one
      nonnegative weight per output.

  Returns:
    :math:`\mathcal{L}`, a scalar, float32 (float64 if the weighted losses
    are float64).

  Convention:
    Class ids are resized by nearest neighbour sampled at each output
    cell's centre (``floor((j + 1/2) n_in / n_out)``, PyTorch's
    ``"nearest-exact"``, MONAI's choice), for any sizes, an ignore id
    included. Float targets are resized by averaging blocks (area
    interpolation), so a resized one-hot target is the class fractions of
    each block; each output's spatial size must divide the labels' (else a
    ``ValueError``). An output at the labels' size gets them unchanged.
    The weights are not normalised (MONAI's ``DeepSupervisionLoss``
    neither; nnU-Net divides them by their sum and gives the coarsest
    level 0: pass those as a sequence). MONAI's ``"exp"`` stops halving at
    1/16 (:math:`\max(2^{-i}, 1/16)`); here it does not. MONAI resizes
    float targets by nearest neighbour too, silently ignores extra
    weights and falls back to its mode when too few are given; here a
    sequence must have one weight per output. For a mask, close over the
    ignore id: ``lambda p, y: jaxloss.dice_loss(p, jnp.where(y == 255, 0,
    y), where=y != 255)`` sees the resized ids. Under ``jit`` each level
    traces ``loss_fn`` once; the labels carry no gradient.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> labels = jnp.array([[[0, 0, 1, 1]]])  # [B, H, W] = [1, 1, 4]
    >>> full = jnp.eye(2)[labels]              # perfect at full resolution
    >>> half = jnp.full((1, 1, 2, 2), 0.5)     # uncertain at half
    >>> dice = lambda p, y: jaxloss.dice_loss(p, y, smooth=0.0)
    >>> # 1 * 0 + 1/2 * (1 - 2 * 1 / (2 + 2))
    >>> jaxloss.deep_supervision_loss(dice, [full, half], labels)
    Array(0.25, dtype=float32)

  References:
    Lee, Xie, Gallagher, Zhang, Tu, "Deeply-Supervised Nets", AISTATS 2015.
    https://arxiv.org/abs/1409.5185 ;
    Isensee, Jaeger, Kohl, Petersen, Maier-Hein, "nnU-Net: a self-configuring
    method for deep learning-based biomedical image segmentation", Nature
    Methods 2021. https://arxiv.org/abs/1809.10486
  """
  fn = "deep_supervision_loss"
  if not callable(loss_fn):
    _checks.fail(fn, f"loss_fn must be callable, got {loss_fn!r}", TypeError)
  if not isinstance(outputs, (list, tuple)) or not outputs:
    _checks.fail(
      fn,
      "outputs must be a non-empty list or tuple of predictions "
      f"[B, *spatial, C], got {type(outputs).__name__}",
      TypeError,
    )
  preds = [
    _checks.as_float(fn, f"outputs[{i}]", o, min_rank=2)
    for i, o in enumerate(outputs)
  ]
  first = preds[0]
  for i, o in enumerate(preds):
    if o.ndim != first.ndim or (o.shape[0], o.shape[-1]) != (
      first.shape[0],
      first.shape[-1],
    ):
      _checks.fail(
        fn,
        f"outputs[{i}].shape {o.shape} must have the rank, batch size and "
        f"class count of outputs[0].shape {first.shape}",
      )
  labels = jnp.asarray(labels)
  ids = jnp.issubdtype(labels.dtype, jnp.integer)
  rank = first.ndim - 1 if ids else first.ndim
  if (
    labels.ndim != rank
    or labels.shape[0] != first.shape[0]
    or (not ids and labels.shape[-1] != first.shape[-1])
  ):
    kind = "class ids [B, *S]" if ids else "float targets [B, *S, C]"
    _checks.fail(
      fn,
      f"labels as {kind} must have rank {rank} and the batch size"
      f"{'' if ids else ' and class count'} of outputs[0].shape "
      f"{first.shape}, got labels.shape {labels.shape}",
    )
  spatial_in = labels.shape[1:] if ids else labels.shape[1:-1]
  if not ids:
    labels = labels.astype(_numerics.accum_dtype(labels.dtype))
    for i, o in enumerate(preds):
      spatial = o.shape[1:-1]
      if any(s == 0 or n % s for n, s in zip(spatial_in, spatial)):
        _checks.fail(
          fn,
          f"outputs[{i}] has spatial shape {spatial}, which does not divide "
          f"the labels' {spatial_in}: float targets are resized by "
          "averaging whole blocks",
        )
  level_weights = _level_weights(fn, weights, len(preds))

  terms = []
  for i, (o, w) in enumerate(zip(preds, level_weights)):
    spatial = o.shape[1:-1]
    resized = (
      _resize_ids(labels, spatial) if ids else _resize_targets(labels, spatial)
    )
    value = jnp.asarray(loss_fn(o, resized))
    if value.shape != ():
      _checks.fail(
        fn,
        f"loss_fn must return a scalar, got shape {value.shape} for "
        f"outputs[{i}]; reduce it inside loss_fn (e.g. .mean())",
      )
    value = value.astype(_numerics.accum_dtype(value.dtype))
    weight = w.astype(value.dtype) if isinstance(w, jax.Array) else w
    terms.append(weight * value)
  return functools.reduce(operator.add, terms)
