# Copyright (c) mmtvmamba contributors. All rights reserved.
"""LSQ-Ternary: the learned-step-size baseline with a learned threshold.

Activations are RMS-normalized per token, then quantized with a learnable
per-channel scale ``alpha`` and threshold ratio ``k`` to
``q = alpha * sign(x) * 1(|x| >= k * alpha)``, the ternary quantizer with a
learnable threshold ``Delta = k * alpha``.
"""
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .base import ActQuantizer
from .functional import q2t_grad_factor, rms_normalize

__all__ = ['LSQTernaryFunction', 'LSQTernaryQuantizer']

#: Bounds of the threshold ratio k in the forward pass.
MIN_RATIO, MAX_RATIO = 0.05, 1.0


class LSQTernaryFunction(torch.autograd.Function):
    """Fake-quantize ``x`` to ``alpha * sign(x) * 1(|x| >= k * alpha)``.

    ``alpha`` and ``ratio`` broadcast against ``x`` as in
    :class:`~mmtvmamba.quantization.functional.Q2TFunction`. With
    ``u = x / alpha``, ``q = sign(u) * 1(|u| >= k)`` and ``M = 1(|u| <= 1)``,
    the backward pass is LSQ's straight-through estimator:

    - ``dL/dx = g * M``;
    - ``dL/dalpha_c = s_c * sum(g * (q - u * M))``;
    - ``dL/dk_c = -s_c * sum(g * alpha_c * sign(u) * 1(||u| - k_c| <= 1/2))``,
      the gradient of the step ``1(|u| >= k)`` replaced by that of a unit
      ramp centred on the threshold;

    with LSQ's per-channel factor ``s_c = 1 / sqrt(N_c)`` for one positive
    level.
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, ratio: Tensor) -> Tensor:
        u = x / alpha
        codes = torch.sign(u) * (u.abs() >= ratio).to(x.dtype)
        ctx.save_for_backward(x, alpha, ratio)
        return codes * alpha

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, alpha, ratio = ctx.saved_tensors
        u = x / alpha
        sign = torch.sign(u)
        codes = sign * (u.abs() >= ratio).to(x.dtype)
        inside = (u.abs() <= 1).to(x.dtype)
        ramp = ((u.abs() - ratio).abs() <= 0.5).to(x.dtype)

        token_dims = [i for i in range(x.dim()) if alpha.shape[i] == 1]
        factor = q2t_grad_factor(
            torch.ones_like(alpha), x.numel() // alpha.numel(), 'lsq')
        grad_x = grad_output * inside
        grad_alpha = (grad_output * (codes - u * inside)).sum(
            token_dims, keepdim=True) * factor
        grad_ratio = -(grad_output * alpha * sign * ramp).sum(
            token_dims, keepdim=True) * factor
        return grad_x, grad_alpha, grad_ratio


class LSQTernaryQuantizer(ActQuantizer):
    """LSQ-Ternary activation quantizer, a baseline of TVMamba.

    Each token is divided by its RMS over the channels, quantized by
    :class:`LSQTernaryFunction` with per-channel ``alpha`` and ``ratio``,
    and multiplied by the RMS again. ``ratio`` is clamped to [0.05, 1] in
    the forward pass. As in :class:`~mmtvmamba.quantization.Q2TQuantizer`,
    the scale is set from the first training batch (``2 * mean(|x_c|)``)
    unless the ``initialized`` buffer is set.

    Args:
        num_channels (int): Number of channels C.
        dim (int): Channel axis of the inputs. Defaults to 1.
        groups (int): Channel groups RMS-normalized separately.
            Defaults to 1.
        init_alpha (float): Scale before data initialization.
            Defaults to 1.0.
        init_ratio (float): Initial threshold ratio k, in [0.05, 1].
            Defaults to 0.5, the rounding threshold.
        eps (float): Added to the mean square of the RMS. Defaults to 1e-6.
        layer (str): Name of the quantized projection. Defaults to ``''``.
    """

    def __init__(self,
                 num_channels: int,
                 dim: int = 1,
                 groups: int = 1,
                 init_alpha: float = 1.0,
                 init_ratio: float = 0.5,
                 eps: float = 1e-6,
                 layer: str = '') -> None:
        super().__init__(num_channels, dim, layer)
        if num_channels % groups:
            raise ValueError(f'num_channels={num_channels} must be '
                             f'divisible by groups={groups}')
        if init_alpha <= 0:
            raise ValueError(f'init_alpha={init_alpha} must be positive')
        if not MIN_RATIO <= init_ratio <= MAX_RATIO:
            raise ValueError(f'init_ratio={init_ratio} must be in '
                             f'[{MIN_RATIO}, {MAX_RATIO}]')
        self.groups = groups
        self.eps = eps
        self.alpha = nn.Parameter(torch.full((num_channels, ), init_alpha))
        self.ratio = nn.Parameter(torch.full((num_channels, ), init_ratio))
        self.register_buffer('initialized', torch.zeros((), dtype=torch.uint8))

    def forward(self, x: Tensor) -> Tensor:
        """Return the fake-quantized ``x``, shaped and typed like ``x``."""
        self.check_channels(x)
        x_bar, rms = rms_normalize(x.float(), self.dim, self.groups, self.eps)
        if self.training and not self.initialized:
            self._init_alpha(x_bar)

        shape = [1] * x.dim()
        shape[self.dim % x.dim()] = self.num_channels
        alpha = self.alpha.float().view(shape)
        ratio = self.ratio.float().clamp(MIN_RATIO, MAX_RATIO).view(shape)
        y = LSQTernaryFunction.apply(x_bar, alpha, ratio)
        dim = self.dim % x.dim()
        y = (y.unflatten(dim, (self.groups, -1)) * rms).flatten(dim, dim + 1)
        y = y.to(x.dtype)
        self.record_error(y, x)
        return y

    @torch.no_grad()
    def _init_alpha(self, x_bar: Tensor) -> None:
        dims = [i for i in range(x_bar.dim()) if i != self.dim % x_bar.dim()]
        mean_abs = x_bar.abs().mean(dims)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(mean_abs)
            mean_abs /= dist.get_world_size()
        self.alpha.copy_((2 * mean_abs).clamp(min=1e-4))
        self.initialized.fill_(1)
