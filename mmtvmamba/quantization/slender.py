# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Slender-Mamba*: ternary activations with a per-token statistic as scale.

Slender-Mamba quantizes activations BitNet-style: each token is scaled by
its absolute maximum over the channels and rounded, with no learned
parameter. Slender-Mamba* keeps that recipe and replaces the 8-bit grid
with the ternary one: ``x_hat = s * clip(round(x / s), -1, 1)`` with ``s``
the token's absmax (or absmean).
"""
import torch
from torch import Tensor

from .base import ActQuantizer

__all__ = ['SLENDER_SCALES', 'SlenderQuantizer']

SLENDER_SCALES = ('absmax', 'absmean')


class SlenderQuantizer(ActQuantizer):
    """Ternary activations with a fixed, data-derived per-token scale.

    The gradient is the plain straight-through estimator: it passes to the
    input unchanged, as in BitNet.

    Args:
        num_channels (int): Number of channels C.
        dim (int): Channel axis of the inputs. Defaults to 1.
        groups (int): Channel groups given separate scales. Defaults to 1.
        scale (str): Per-token statistic used as the scale, ``'absmax'``
            (Slender-Mamba's 8-bit recipe) or ``'absmean'``.
            Defaults to ``'absmax'``.
        eps (float): Lower bound of the scale. Defaults to 1e-5.
        layer (str): Name of the quantized projection. Defaults to ``''``.
    """

    def __init__(self,
                 num_channels: int,
                 dim: int = 1,
                 groups: int = 1,
                 scale: str = 'absmax',
                 eps: float = 1e-5,
                 layer: str = '') -> None:
        super().__init__(num_channels, dim, layer)
        if num_channels % groups:
            raise ValueError(f'num_channels={num_channels} must be '
                             f'divisible by groups={groups}')
        if scale not in SLENDER_SCALES:
            raise ValueError(f'invalid Slender scale {scale!r}; use one of '
                             f'{SLENDER_SCALES}')
        self.groups = groups
        self.scale = scale
        self.eps = eps

    def extra_repr(self) -> str:
        return (f'num_channels={self.num_channels}, dim={self.dim}, '
                f'scale={self.scale!r}, layer={self.layer!r}')

    def forward(self, x: Tensor) -> Tensor:
        """Return the fake-quantized ``x``, shaped and typed like ``x``."""
        self.check_channels(x)
        dim = self.dim % x.dim()
        grouped = x.float().unflatten(dim, (self.groups, -1))
        magnitude = grouped.detach().abs()
        if self.scale == 'absmax':
            scale = magnitude.amax(dim + 1, keepdim=True)
        else:
            scale = magnitude.mean(dim + 1, keepdim=True)
        scale = scale.clamp(min=self.eps)
        codes = torch.round(grouped / scale).clamp(-1, 1)
        x_hat = (codes * scale).flatten(dim, dim + 1)
        y = (x.float() + (x_hat - x.float()).detach()).to(x.dtype)
        self.record_error(y, x)
        return y
