"""A small U-Net in Flax NNX for channels-last images.

Two down-sampling stages (so the input side must be divisible by 4), each a
block of two 3x3 convolutions with group normalisation and ReLU, a bottleneck
block, and two up-sampling stages with transposed convolutions and skip
connections, then a 1x1 convolution to one logit per class. It keeps no state
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
    width: Channels of the first stage; the second has ``2 * width`` and the
      bottleneck ``4 * width``.
    in_features: Channels of the input image.
    rngs: Random streams for the parameter initialisers.
  """

  def __init__(self, num_classes: int, *, width: int = 16, in_features: int = 1,
               rngs: nnx.Rngs):
    w = width
    self.enc1 = ConvBlock(in_features, w, rngs=rngs)
    self.enc2 = ConvBlock(w, 2 * w, rngs=rngs)
    self.mid = ConvBlock(2 * w, 4 * w, rngs=rngs)
    self.up2 = nnx.ConvTranspose(4 * w, 2 * w, (2, 2), strides=(2, 2),
                                 rngs=rngs)
    self.dec2 = ConvBlock(4 * w, 2 * w, rngs=rngs)
    self.up1 = nnx.ConvTranspose(2 * w, w, (2, 2), strides=(2, 2), rngs=rngs)
    self.dec1 = ConvBlock(2 * w, w, rngs=rngs)
    self.head = nnx.Conv(w, num_classes, (1, 1), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(f"UNet: height and width must be divisible by 4; "
                       f"got x.shape {x.shape}")
    s1 = self.enc1(x)
    s2 = self.enc2(_pool(s1))
    y = self.mid(_pool(s2))
    y = self.dec2(jnp.concatenate([self.up2(y), s2], axis=-1))
    y = self.dec1(jnp.concatenate([self.up1(y), s1], axis=-1))
    return self.head(y)


def _pool(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
