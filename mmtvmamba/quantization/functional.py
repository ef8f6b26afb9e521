# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Token-wise RMS normalization and the Q2T fake-quantization function."""
import math
from typing import Tuple

import torch
from torch import Tensor

__all__ = [
    'rms_normalize', 'Q2TFunction', 'q2t_grad_factor', 'q2t_codes',
    'topk_mean', 'channels_first'
]

GRAD_SCALE_MODES = ('paper', 'lsq')


def rms_normalize(x: Tensor,
                  dim: int,
                  groups: int = 1,
                  eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """Divide every token of ``x`` by its root mean square over channels.

    The normalization is mean-free: ``x_bar = x / sqrt(mean(x^2) + eps)``,
    with the mean taken over the channel axis ``dim``. With ``groups > 1``
    the channel axis is split into that many contiguous groups and each
    group is normalized on its own.

    Args:
        x (Tensor): Input of any shape.
        dim (int): Channel axis.
        groups (int): Number of channel groups. Defaults to 1.
        eps (float): Added to the mean square. Defaults to 1e-6.

    Returns:
        tuple[Tensor, Tensor]: The normalized tensor, shaped like ``x``, and
        the RMS, shaped like ``x`` with the channel axis reduced to
        ``groups`` entries, each repeated ``C // groups`` times on expand.
    """
    dim = dim % x.dim()
    grouped = x.unflatten(dim, (groups, -1))
    rms = grouped.pow(2).mean(dim + 1, keepdim=True).add(eps).sqrt()
    return (grouped / rms).flatten(dim, dim + 1), rms


def channels_first(x: Tensor, dim: int) -> Tensor:
    """Return ``x`` as a (C, N) matrix: channel axis ``dim`` first, the rest
    flattened."""
    return x.movedim(dim % x.dim(), 0).reshape(x.shape[dim], -1)


def topk_mean(values: Tensor, ratio: float) -> Tensor:
    """Return the mean of the largest ``ratio`` share of each row.

    Args:
        values (Tensor): A (C, N) matrix.
        ratio (float): Share of each row to average, in (0, 1]. At least
            one entry is kept, so ``ceil(ratio * N)`` entries are averaged.

    Returns:
        Tensor: The (C, ) tail means.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f'top-k ratio {ratio} must be in (0, 1]')
    if values.dim() != 2:
        raise ValueError(f'topk_mean expects a (C, N) matrix, got shape '
                         f'{tuple(values.shape)}')
    k = max(1, math.ceil(ratio * values.shape[1]))
    if k == values.shape[1]:
        return values.mean(1)
    return values.topk(k, dim=1, sorted=False).values.mean(1)


def q2t_codes(u: Tensor, radius: Tensor) -> Tensor:
    """Return ``clip(round(u), -radius, radius)``.

    Rounding is to the nearest integer with ties to even (``torch.round``),
    so 0.5 maps to 0 and 1.5 to 2.
    """
    return torch.clamp(torch.round(u), -radius, radius)


def q2t_grad_factor(radius: Tensor, elements_per_channel: int,
                    mode: str) -> Tensor:
    """Return the per-channel rescaling of the scale gradient.

    Args:
        radius (Tensor): Per-channel integer radius Q as a float tensor.
        elements_per_channel (int): Number of elements N_c of each channel
            in the quantized tensor.
        mode (str): ``'paper'`` for ``1 / (sqrt(N_c) * Q)``, the rule the
            TVMamba paper prints, or ``'lsq'`` for LSQ's own
            ``1 / sqrt(N_c * Q)``.
    """
    if mode == 'paper':
        return 1.0 / (math.sqrt(elements_per_channel) * radius)
    if mode == 'lsq':
        return 1.0 / torch.sqrt(elements_per_channel * radius)
    raise ValueError(f'invalid grad_scale mode {mode!r}; '
                     f'use one of {GRAD_SCALE_MODES}')


class Q2TFunction(torch.autograd.Function):
    """Fake-quantize ``x`` to ``alpha * clip(round(x / alpha), -Q, Q)``.

    ``alpha`` and ``radius`` have as many axes as ``x`` and size 1 on every
    token axis, so they broadcast against it. The backward pass is the bounded
    straight-through estimator with ``u = x / alpha`` and the in-range mask
    ``M = 1(|u| <= Q)``, where the bound itself counts as in range:

    - ``dL/dx = g * M``;
    - ``dL/dalpha_c = factor_c * sum(g * (q - u * M))`` over the channel's
      elements, with ``factor_c`` from :func:`q2t_grad_factor`.

    The gradient at ``|u| == Q`` is defined here rather than inherited from
    ``torch.clamp``, whose gradient at the clip bound changed between torch
    releases.
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, radius: Tensor,
                grad_scale: str) -> Tensor:
        if alpha.dim() != x.dim() or radius.shape != alpha.shape:
            raise ValueError(
                f'alpha {tuple(alpha.shape)} and radius '
                f'{tuple(radius.shape)} must have the same shape with '
                f'{x.dim()} axes to broadcast against x {tuple(x.shape)}')
        u = x / alpha
        codes = q2t_codes(u, radius)
        # Codes lie in [-2, 2], so int8 keeps them exactly; saving them
        # spares the backward pass a second rounding.
        ctx.save_for_backward(x, alpha, radius, codes.to(torch.int8))
        ctx.grad_scale = grad_scale
        return codes * alpha

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, alpha, radius, codes = ctx.saved_tensors
        u = x / alpha
        inside = u.abs() <= radius

        grad_x = torch.where(inside, grad_output, 0.)

        token_dims = [i for i in range(x.dim()) if alpha.shape[i] == 1]
        elements_per_channel = x.numel() // alpha.numel()
        grad_alpha = (grad_output * (codes - torch.where(inside, u, 0.))).sum(
            token_dims, keepdim=True)
        grad_alpha = grad_alpha * q2t_grad_factor(
            radius, elements_per_channel, ctx.grad_scale)
        return grad_x, grad_alpha, None, None
