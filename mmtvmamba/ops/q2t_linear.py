# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fused Q2T quantization, packing and bitwise matmul of one projection."""
from typing import Optional

import torch
from torch import Tensor

from . import ternary_reference as reference
from .extension import extension_available
from .q2t_pack import q2t_pack_reference

__all__ = ['q2t_linear', 'q2t_linear_reference']


def q2t_linear_reference(x: Tensor,
                         index: Tensor,
                         alpha: Tensor,
                         radius: int,
                         eps: float,
                         w_packed: Tensor,
                         col_scale: Tensor,
                         bias: Optional[Tensor] = None,
                         k_scale: Optional[Tensor] = None,
                         residual: Optional[Tensor] = None,
                         activation: str = 'none',
                         norm_weight: Optional[Tensor] = None,
                         norm_bias: Optional[Tensor] = None,
                         norm_eps: float = 1e-5) -> Tensor:
    """Compute :func:`q2t_linear` with tensor ops; same contract."""
    _check_args(radius, norm_weight, norm_bias)
    packed, rms = q2t_pack_reference(x, index, alpha, radius, eps,
                                     norm_weight, norm_bias, norm_eps)
    matmul = reference.quinary_mm if radius == 2 else reference.ternary_mm
    return matmul(packed, w_packed, index.numel(), rms, col_scale, bias,
                  k_scale, residual, activation)


def q2t_linear(x: Tensor,
               index: Tensor,
               alpha: Tensor,
               radius: int,
               eps: float,
               w_packed: Tensor,
               col_scale: Tensor,
               bias: Optional[Tensor] = None,
               k_scale: Optional[Tensor] = None,
               residual: Optional[Tensor] = None,
               activation: str = 'none',
               norm_weight: Optional[Tensor] = None,
               norm_bias: Optional[Tensor] = None,
               norm_eps: float = 1e-5) -> Tensor:
    """Quantize tokens with Q2T and multiply their codes with a packed
    ternary weight in one pass.

    The result equals :func:`~mmtvmamba.ops.q2t_pack` followed by
    :func:`~mmtvmamba.ops.ternary_mm` (radius 1) or
    :func:`~mmtvmamba.ops.quinary_mm` (radius 2) with the token RMS as
    ``row_scale``, bit for bit on the same kernel path. The C++ op packs
    each block of tokens into a buffer of its own task and multiplies it at
    once, in one parallel region instead of two, so the packed codes are
    never written to a tensor.

    Args:
        x (Tensor): float32 CPU tensor (batch, channels, length), any
            strides.
        index (Tensor): int64 (K,) channel of every kernel position; the
            channel count marks padding.
        alpha (Tensor): float32 (K,) rounding scale of every position.
        radius (int): 1 for ternary codes, 2 for five levels.
        eps (float): Added to the mean square of the token RMS.
        w_packed (Tensor): :func:`~mmtvmamba.ops.pack_ternary` output for
            the N weight rows, columns in the order of ``index``.
        col_scale (Tensor): float32 weight scale of shape (1,) or (N,).
        bias (Tensor, optional): float32 (N,) bias. Defaults to None.
        k_scale (Tensor, optional): float32 (ceil(K / 32),) scale of every
            32-position word. Defaults to None.
        residual (Tensor, optional): float32 (batch * length, N), any
            strides, added before the activation. Defaults to None.
        activation (str): ``'none'`` or ``'gelu'`` (exact form), applied
            last. Defaults to ``'none'``.
        norm_weight (Tensor, optional): float32 (channels,) weight of a
            LayerNorm applied to every token first. Defaults to None.
        norm_bias (Tensor, optional): float32 (channels,) LayerNorm bias,
            used only with ``norm_weight``. Defaults to None.
        norm_eps (float): LayerNorm epsilon. Defaults to 1e-5.

    Returns:
        Tensor: float32 (batch * length, N), tokens in (b, l) order.
    """
    if extension_available():
        return torch.ops.mmtvmamba.q2t_linear(x, index, alpha, radius, eps,
                                              w_packed, col_scale, bias,
                                              k_scale, residual, activation,
                                              norm_weight, norm_bias,
                                              norm_eps)
    return q2t_linear_reference(x, index, alpha, radius, eps, w_packed,
                                col_scale, bias, k_scale, residual,
                                activation, norm_weight, norm_bias, norm_eps)


def _check_args(radius: int, norm_weight: Optional[Tensor],
                norm_bias: Optional[Tensor]) -> None:
    if radius not in (1, 2):
        raise ValueError(f'q2t_linear: radius must be 1 (ternary) or 2 '
                         f'(five levels), but got {radius}')
    if norm_weight is None and norm_bias is not None:
        raise ValueError('q2t_linear: norm_bias needs norm_weight; pass '
                         'torch.ones(channels) for a LayerNorm without weight')
