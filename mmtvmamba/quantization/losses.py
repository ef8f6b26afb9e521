# Copyright (c) mmtvmamba contributors. All rights reserved.
"""The channel tail-risk loss (CTRL) on quantized activations.

For a quantized layer with full-precision input ``x`` and fake-quantized
input ``x_hat``, the error of channel ``c`` on example ``i`` is
``e_{c,i} = ||x_hat_{c,i} - x_{c,i}||_2^2``. The loss of the layer is
``sum_c TopKMean_i(e_{c,i})``: the mean of the largest ``k`` share of the
errors of each channel, summed over channels.
"""
from typing import Iterable

import torch
from torch import Tensor

from .functional import channels_first, topk_mean

__all__ = ['CTRL_UNITS', 'channel_errors', 'ctrl_loss']

#: Units of one CTRL example ``i``. ``'image'`` sums the squared error over
#: the tokens of one sample of the batch (axis 0). ``'token'`` takes every
#: element of the channel as its own example.
CTRL_UNITS = ('image', 'token')


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
    squared = (x_hat.float() - x.float()).pow(2)
    if unit == 'token':
        return channels_first(squared, dim)
    if unit == 'image':
        # (B, C, ...) -> (C, B): sum the tokens of each sample.
        per_sample = squared.movedim(dim, 1).flatten(2).sum(2)
        return per_sample.t()
    raise ValueError(f'invalid CTRL unit {unit!r}; use one of {CTRL_UNITS}')


def ctrl_loss(errors: Iterable[Tensor], topk_ratio: float) -> Tensor:
    """Sum the CTRL of several layers.

    Args:
        errors (Iterable[Tensor]): One (C, N) error matrix per layer, from
            :func:`channel_errors`.
        topk_ratio (float): Share ``k`` of the largest errors averaged per
            channel, in (0, 1].

    Returns:
        Tensor: ``sum over layers and channels of TopKMean(e_c)``, a 0-d
        tensor; 0 when ``errors`` is empty.
    """
    total = None
    for error in errors:
        term = topk_mean(error, topk_ratio).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total
