# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Ternary weights with a per-tensor absmean scale."""
from typing import Tuple

import torch
from torch import Tensor

__all__ = ['absmean_scale', 'ternarize_weight', 'TernaryWeightSTE']


def absmean_scale(weight: Tensor, eps: float = 1e-5) -> Tensor:
    """Return the per-tensor scale ``max(mean(|W|), eps)`` as a 0-d tensor.

    Args:
        weight (Tensor): Full-precision weight of any shape.
        eps (float): Lower bound of the scale, so an all-zero weight does
            not divide by zero. Defaults to 1e-5.
    """
    return weight.detach().abs().mean().clamp(min=eps)


def ternarize_weight(weight: Tensor,
                     eps: float = 1e-5) -> Tuple[Tensor, Tensor]:
    """Return the ternary codes ``clip(round(W / s), -1, 1)`` and scale ``s``.

    Args:
        weight (Tensor): Full-precision weight of any shape.
        eps (float): Lower bound of the scale. Defaults to 1e-5.

    Returns:
        tuple[Tensor, Tensor]: Codes in {-1, 0, 1} with the dtype of
        ``weight``, and the 0-d scale.
    """
    scale = absmean_scale(weight, eps)
    codes = torch.round(weight.detach() / scale).clamp_(-1, 1)
    return codes, scale


class TernaryWeightSTE(torch.autograd.Function):
    """Fake-quantize a weight to ``s * clip(round(W / s), -1, 1)``.

    The backward pass is the straight-through estimator: the incoming
    gradient passes to the latent full-precision weight unchanged, and the
    scale is treated as a constant of the step.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, eps: float) -> Tensor:
        codes, scale = ternarize_weight(weight, eps)
        return codes * scale

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return grad_output, None
