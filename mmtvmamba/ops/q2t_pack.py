# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fused Q2T quantization and packing of activations for the bitwise op."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ternary_reference as reference
from .extension import extension_available

__all__ = ['q2t_pack', 'q2t_pack_reference']


def q2t_pack_reference(x: Tensor,
                       index: Tensor,
                       alpha: Tensor,
                       radius: int,
                       eps: float,
                       norm_weight: Optional[Tensor] = None,
                       norm_bias: Optional[Tensor] = None,
                       norm_eps: float = 1e-5) -> Tuple[Tensor, Tensor]:
    """Compute :func:`q2t_pack` with tensor ops; same contract."""
    batch, channels, length = x.shape
    tokens = x.float().permute(0, 2, 1).reshape(-1, channels)
    if norm_weight is not None:
        tokens = F.layer_norm(tokens, (channels, ), norm_weight, norm_bias,
                              norm_eps)
    rms = tokens.pow(2).mean(1, keepdim=True).add(eps).sqrt()
    padded = torch.cat([tokens / rms, tokens.new_zeros(len(tokens), 1)], 1)
    codes = torch.round(padded.index_select(1, index) / alpha)
    codes = codes.clamp(-radius, radius).to(torch.int8)
    pack = reference.pack_quinary if radius == 2 else reference.pack_ternary
    return pack(codes), rms.view(-1)


def q2t_pack(x: Tensor,
             index: Tensor,
             alpha: Tensor,
             radius: int,
             eps: float,
             norm_weight: Optional[Tensor] = None,
             norm_bias: Optional[Tensor] = None,
             norm_eps: float = 1e-5) -> Tuple[Tensor, Tensor]:
    """Quantize tokens with Q2T and pack their codes in one pass.

    Every token ``(b, :, l)`` of ``x`` is divided by its RMS over the
    channels, ``sqrt(mean(x^2) + eps)``. Kernel position ``p`` then takes
    channel ``index[p]`` and the code
    ``clip(round(x / rms / alpha[p]), -radius, radius)``, rounding half to
    even. Positions whose index equals the channel count are padding with
    code 0.

    With ``norm_weight``, every token first passes through a LayerNorm over
    the channels, ``(x - mean) / sqrt(var + norm_eps) * norm_weight +
    norm_bias``, and the steps above read its output.

    The C++ op finds each code by comparing ``|x|`` with the rounding
    thresholds ``0.5 * alpha * rms`` and ``1.5 * alpha * rms`` instead of
    dividing, and sums in another order than the tensor ops. A value within
    a float rounding error of a threshold can therefore get the
    neighbouring code; all other codes equal :func:`q2t_pack_reference`.

    Args:
        x (Tensor): float32 CPU tensor (batch, channels, length), any
            strides, e.g. an NCHW feature map flattened over H and W.
        index (Tensor): int64 (K,) channel of every kernel position.
        alpha (Tensor): float32 (K,) scale of every position.
        radius (int): 1 packs ternary codes, 2 five-level codes.
        eps (float): Added to the mean square.
        norm_weight (Tensor, optional): float32 (channels,) LayerNorm
            weight; None applies no LayerNorm. Defaults to None.
        norm_bias (Tensor, optional): float32 (channels,) LayerNorm bias,
            used only with ``norm_weight``. Defaults to None.
        norm_eps (float): LayerNorm epsilon. Defaults to 1e-5.

    Returns:
        tuple[Tensor, Tensor]: Packed codes of the ``batch * length``
        tokens in (b, l) order, as :func:`pack_ternary` or
        :func:`pack_quinary` returns them, and the float32 RMS of each
        token.
    """
    if extension_available():
        return torch.ops.mmtvmamba.q2t_pack(x, index, alpha, radius, eps,
                                            norm_weight, norm_bias, norm_eps)
    if radius not in (1, 2):
        raise ValueError(f'q2t_pack: radius must be 1 or 2, got {radius}')
    if norm_weight is None and norm_bias is not None:
        raise ValueError('q2t_pack: norm_bias needs norm_weight; pass '
                         'torch.ones(channels) for a LayerNorm without weight')
    return q2t_pack_reference(x, index, alpha, radius, eps, norm_weight,
                              norm_bias, norm_eps)
