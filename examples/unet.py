"""A small U-Net in Flax NNX for channels-last images.

``depth`` down-sampling stages (three by default, so the input side must be
divisible by 8), each a block of two 3x3 convolutions with group normalisation
and ReLU followed by 2x2 max pooling, a bottleneck block, and as many
up-sampling stages with transposed convolutions and skip connections, then a
1x1 convolution to one logit per class. It keeps no state
besides its parameters (no batch statistics), so the same call serves training
and evaluation and the model can be replicated across devices as it is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ConvBlock(nnx.Module):
  """Two 3x3 convolutions, each followed by GroupNorm and ReLU."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    groups = max(1, out_features // 8)
    self.conv1 = nnx.Conv(in_features, out_features, (3, 3), rngs=rngs)
    self.norm1 = nnx.GroupNorm(out_features, num_groups=groups, rngs=rngs)
    self.conv2 = nnx.Conv(out_features, out_features, (3, 3), rngs=rngs)
    self.norm2 = nnx.GroupNorm(out_features, num_groups=groups, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.norm1(self.conv1(x)))
    return jax.nn.relu(self.norm2(self.conv2(x)))


class UNet(nnx.Module):
  """U-Net: ``__call__(x)`` maps ``[N, H, W, C_in]`` to logits ``[N, H, W, K]``.

  Args:
    num_classes: Number of output classes ``K``.
    width: Channels of the first stage; each down-sampling doubles them.
    depth: Number of down-sampling stages; height and width of the input
      must be divisible by ``2**depth``.
    in_features: Channels of the input image.
    rngs: Random streams for the parameter initialisers.
  """

  def __init__(
    self,
    num_classes: int,
    *,
    width: int = 16,
    depth: int = 3,
    in_features: int = 1,
    rngs: nnx.Rngs,
  ):
    widths = [width * 2**i for i in range(depth + 1)]
    self.depth = depth
    self.down = nnx.List(
      [
        ConvBlock(i, o, rngs=rngs)
        for i, o in zip([in_features] + widths[:-2], widths[:-1])
      ]
    )
    self.mid = ConvBlock(widths[-2], widths[-1], rngs=rngs)
    self.up = nnx.List(
      [
        nnx.ConvTranspose(
          widths[i + 1], widths[i], (2, 2), strides=(2, 2), rngs=rngs
        )
        for i in reversed(range(depth))
      ]
    )
    self.dec = nnx.List(
      [
        ConvBlock(2 * widths[i], widths[i], rngs=rngs)
        for i in reversed(range(depth))
      ]
    )
    self.head = nnx.Conv(width, num_classes, (1, 1), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    k = 2**self.depth
    if x.shape[1] % k or x.shape[2] % k:
      raise ValueError(
        f"UNet: height and width must be divisible by {k}; "
        f"got x.shape {x.shape}"
      )
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
      x = _pool(x)
    x = self.mid(x)
    for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
      x = dec(jnp.concatenate([up(x), skip], axis=-1))
    return self.head(x)


def _pool(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
