# Copyright (c) mmtvmamba contributors. All rights reserved.
"""The channel tail-risk loss (CTRL) on quantized activations.

For a quantized layer with full-precision input ``x`` and fake-quantized
input ``x_hat``, the error of channel ``c`` on example ``i`` is
``e_{c,i} = ||x_hat_{c,i} - x_{c,i}||_2^2``. The loss of the layer is
``sum_c TopKMean_i(e_{c,i})``: the mean of the largest ``k`` share of the
errors of each channel, summed over channels.
"""
import math
from typing import Iterable

import torch
from torch import Tensor

from .functional import channels_first, topk_mean

__all__ = [
    'CTRL_UNITS', 'SquaredErrorFunction', 'channel_errors', 'ctrl_loss'
]

#: Units of one CTRL example ``i``. ``'image'`` sums the squared error over
#: the tokens of one sample of the batch (axis 0). ``'token'`` takes every
#: element of the channel as its own example.
CTRL_UNITS = ('image', 'token')


class SquaredErrorFunction(torch.autograd.Function):
    """Elementwise ``(x_hat - x)^2`` in float32, in the layout of ``x_hat``.

    The backward pass computes ``2 * (x_hat - x) * g`` once from the saved
    difference and returns it and its negation. Autograd's backward of
    ``pow(2)`` (torch 2.14) writes ``(x_hat - x)^1`` and two products into
    three new full-size tensors.
    """

    @staticmethod
    def forward(ctx, x_hat: Tensor, x: Tensor) -> Tensor:
        difference = x_hat.float() - x.float()
        ctx.save_for_backward(difference)
        ctx.dtypes = x_hat.dtype, x.dtype
        return difference.square()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        difference, = ctx.saved_tensors
        grad_x_hat = torch.mul(difference, grad_output).mul_(2)
        grad_x = grad_x_hat.neg()
        return grad_x_hat.to(ctx.dtypes[0]), grad_x.to(ctx.dtypes[1])


def channel_errors(x_hat: Tensor,
                   x: Tensor,
                   dim: int,
                   unit: str = 'image') -> Tensor:
    """Return the per-channel, per-example squared errors ``e``.

    Args:
        x_hat (Tensor): Fake-quantized activations, with the batch on axis 0.
        x (Tensor): Full-precision activations, shaped like ``x_hat``.
        dim (int): Channel axis, not 0.
        unit (str): ``'image'`` or ``'token'``, see :data:`CTRL_UNITS`.
            Defaults to ``'image'``.

    Returns:
        Tensor: A (C, N) matrix with N the batch size for ``'image'`` and
        the number of elements per channel for ``'token'``.
    """
    if x_hat.shape != x.shape:
        raise ValueError(f'x_hat {tuple(x_hat.shape)} and x '
                         f'{tuple(x.shape)} must have the same shape')
    dim = dim % x.dim()
    if dim == 0:
        raise ValueError('the channel axis must not be the batch axis 0')
    squared = SquaredErrorFunction.apply(x_hat, x)
    if unit == 'token':
        return channels_first(squared, dim)
    if unit == 'image':
        # (B, C, ...) -> (C, B): sum the tokens of each sample.
        per_sample = squared.movedim(dim, 1).flatten(2).sum(2)
        return per_sample.t()
    raise ValueError(f'invalid CTRL unit {unit!r}; use one of {CTRL_UNITS}')


def ctrl_loss(errors: Iterable[Tensor],
              topk_ratio: float,
              channel_ratio: float = 1.0) -> Tensor:
    """Sum the CTRL of several layers.

    With ``channel_ratio < 1`` the result is a stochastic estimate. Each
    layer draws ``m = ceil(channel_ratio * C)`` of its C channels uniformly
    without replacement from the global torch generator, computes their
    exact tail means and multiplies the sum by ``C / m``. The expected value
    of the estimate and of its gradient equals the exact CTRL and its
    gradient, and the top-k selection runs on ``m`` rows instead of C.

    Args:
        errors (Iterable[Tensor]): One (C, N) error matrix per layer, from
            :func:`channel_errors`.
        topk_ratio (float): Share ``k`` of the largest errors averaged per
            channel, in (0, 1].
        channel_ratio (float): Share of the channels of each layer drawn
            per call, in (0, 1]. Defaults to 1.0, the exact loss.

    Returns:
        Tensor: ``sum over layers and channels of TopKMean(e_c)``, a 0-d
        tensor; 0 when ``errors`` is empty.
    """
    if not 0 < channel_ratio <= 1:
        raise ValueError(f'CTRL channel_ratio {channel_ratio} must be in '
                         '(0, 1]; use 1.0 for the exact loss')
    total = None
    for error in errors:
        term = _layer_ctrl(error, topk_ratio, channel_ratio)
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


def _layer_ctrl(error: Tensor, topk_ratio: float,
                channel_ratio: float) -> Tensor:
    channels = error.shape[0]
    drawn = max(1, math.ceil(channel_ratio * channels))
    if drawn >= channels:
        return topk_mean(error, topk_ratio).sum()
    rows = torch.randperm(channels, device=error.device)[:drawn]
    return topk_mean(error, topk_ratio, rows).sum() * (channels / drawn)
