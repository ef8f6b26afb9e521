# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fused Q2T quantization and packing of activations for the bitwise op."""
from typing import Tuple

import torch
from torch import Tensor

from . import ternary_reference as reference
from .extension import extension_available

__all__ = ['q2t_pack', 'q2t_pack_reference']


def q2t_pack_reference(x: Tensor, index: Tensor, alpha: Tensor, radius: int,
                       eps: float) -> Tuple[Tensor, Tensor]:
    """Compute :func:`q2t_pack` with tensor ops; same contract."""
    batch, channels, length = x.shape
    tokens = x.float().permute(0, 2, 1).reshape(-1, channels)
    rms = tokens.pow(2).mean(1, keepdim=True).add(eps).sqrt()
    padded = torch.cat([tokens / rms, tokens.new_zeros(len(tokens), 1)], 1)
    codes = torch.round(padded.index_select(1, index) / alpha)
    codes = codes.clamp(-radius, radius).to(torch.int8)
    pack = reference.pack_quinary if radius == 2 else reference.pack_ternary
    return pack(codes), rms.view(-1)


def q2t_pack(x: Tensor, index: Tensor, alpha: Tensor, radius: int,
             eps: float) -> Tuple[Tensor, Tensor]:
    """Quantize tokens with Q2T and pack their codes in one pass.

    Every token ``(b, :, l)`` of ``x`` is divided by its RMS over the
    channels, ``sqrt(mean(x^2) + eps)``. Kernel position ``p`` then takes
    channel ``index[p]`` and the code
    ``clip(round(x / rms / alpha[p]), -radius, radius)``, rounding half to
    even. Positions whose index equals the channel count are padding with
    code 0.

    Args:
        x (Tensor): float32 CPU tensor (batch, channels, length), any
            strides, e.g. an NCHW feature map flattened over H and W.
        index (Tensor): int64 (K,) channel of every kernel position.
        alpha (Tensor): float32 (K,) scale of every position.
        radius (int): 1 packs ternary codes, 2 five-level codes.
        eps (float): Added to the mean square.

    Returns:
        tuple[Tensor, Tensor]: Packed codes of the ``batch * length``
        tokens in (b, l) order, as :func:`pack_ternary` or
        :func:`pack_quinary` returns them, and the float32 RMS of each
        token.
    """
    if extension_available():
        return torch.ops.mmtvmamba.q2t_pack(x, index, alpha, radius, eps)
    if radius not in (1, 2):
        raise ValueError(f'q2t_pack: radius must be 1 or 2, got {radius}')
    return q2t_pack_reference(x, index, alpha, radius, eps)
