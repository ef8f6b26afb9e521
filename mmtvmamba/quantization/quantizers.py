# Copyright (c) mmtvmamba contributors. All rights reserved.
"""The Q2T activation quantizer applied to the inputs of linear
projections."""
import logging
from functools import partial
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .base import ActQuantizer
from .functional import (GRAD_SCALE_MODES, NormalizedQ2TFunction,
                         channels_first, rms_normalize, sparse_topk_mean)
from .scale_groups import (GroupScaleFunction, assign_scale_groups,
                           contiguous_scale_groups)

__all__ = ['Q2TQuantizer']

logger = logging.getLogger(__name__)


class Q2TQuantizer(ActQuantizer):
    """Quinary-to-ternary (Q2T) activation quantizer.

    Every token is first divided by its RMS over the channels, then each
    channel ``c`` is quantized to ``alpha_c * clip(round(x / alpha_c), -Q_c,
    Q_c)`` with a learnable scale ``alpha_c`` and an integer radius ``Q_c``:
    radius 2 gives five levels, radius 1 gives ternary codes. The output is
    multiplied by the token's RMS again, so in full precision the layer
    computes the same function as before quantization. At deployment the
    RMS is a per-token scale applied after the integer matrix multiply.

    ``alpha_c`` multiplies each input channel inside the sum of the
    following matrix multiply, so a bitwise kernel that accumulates integer
    products over 32-channel words applies per-channel scales only
    approximately, or exactly at up to 32 times the work. With
    ``scale_groups=G`` the channels share their scale within at most G
    groups. ``alpha`` then contains one learnable scale per group and the
    ``scale_group`` buffer maps every channel to its group, so the deployed
    projection computes the quantized function exactly at full speed.

    The scale starts at ``init_alpha``. On the first training step of a
    quantizer whose ``initialized`` buffer is 0, it is reset from the batch
    with LSQ's rule ``2 * mean(|x_c|) / sqrt(Q_c)``, averaged over ranks in
    distributed training. With scale groups, the channels are then sorted
    by that scale and cut into groups of whole 32-channel words, and each
    group starts at the mean of its channels. Checkpoints store the buffers,
    so a trained quantizer keeps its scales and groups when loaded.

    Channel scoring: while ``scoring`` is True, each training forward
    registers a gradient hook on the output. With ``g`` the gradient of the
    loss with respect to the output and ``dx`` the five-level minus the
    ternary quantization of the same input, the hook adds the influence
    score ``TopKMean(-g * dx)`` of every channel to ``scores``: the
    first-order estimate of the drop in loss when the channel is switched
    from ternary to five levels, averaged over its largest share
    ``score_topk`` of elements.

    Args:
        num_channels (int): Number of channels C.
        dim (int): Channel axis of the inputs. Defaults to 1 (NCHW).
        groups (int): Number of contiguous channel groups that are
            RMS-normalized separately, e.g. the four scan directions of
            stacked projections. Defaults to 1.
        radius (int): Initial radius of every channel, 1 or 2.
            Defaults to 2.
        grad_scale (str): Rescaling of the scale gradient: ``'paper'`` for
            ``1 / (sqrt(N_c) * Q_c)`` as the TVMamba paper prints it, or
            ``'lsq'`` for ``1 / sqrt(N_c * Q_c)``. Defaults to ``'paper'``.
        init_alpha (float): Scale before data initialization.
            Defaults to 1.0.
        eps (float): Added to the mean square in the RMS normalization.
            Defaults to 1e-6.
        deploy_radius (int, optional): Radius of every channel in eval mode,
            1 for strict ternary deployment (TVMamba-T); None keeps the
            trained per-channel radius (TVMamba-F). Training forwards always
            use the ``radius`` buffer. Defaults to None.
        scale_groups (int, optional): Maximum number of channel groups
            that share a scale, per RMS group (``groups``), because the
            deployed model runs each RMS group as its own projection. The
            scale groups are whole 32-channel words, so an RMS group of
            C_g channels has at most ``ceil(C_g / 32)`` of them. None
            gives every channel its own scale. Defaults to None.
        layer (str): Name of the quantized projection. Defaults to ``''``.
    """

    def __init__(self,
                 num_channels: int,
                 dim: int = 1,
                 groups: int = 1,
                 radius: int = 2,
                 grad_scale: str = 'paper',
                 init_alpha: float = 1.0,
                 eps: float = 1e-6,
                 deploy_radius: Optional[int] = None,
                 scale_groups: Optional[int] = None,
                 layer: str = '') -> None:
        super().__init__(num_channels, dim, layer)
        if num_channels % groups:
            raise ValueError(f'num_channels={num_channels} must be '
                             f'divisible by groups={groups}')
        if radius not in (1, 2):
            raise ValueError(f'invalid radius {radius}; use 1 (ternary) or '
                             '2 (five levels)')
        if deploy_radius not in (None, 1, 2):
            raise ValueError(f'invalid deploy_radius {deploy_radius}; use '
                             'None (trained radius), 1 or 2')
        if grad_scale not in GRAD_SCALE_MODES:
            raise ValueError(f'invalid grad_scale {grad_scale!r}; use one of '
                             f'{GRAD_SCALE_MODES}')
        if init_alpha <= 0:
            raise ValueError(f'init_alpha={init_alpha} must be positive')
        if scale_groups is not None and (not isinstance(scale_groups, int)
                                         or scale_groups < 1):
            raise ValueError(f'invalid scale_groups {scale_groups!r}; use a '
                             'positive int, or None for one scale per '
                             'channel')
        self.groups = groups
        self.grad_scale = grad_scale
        self.eps = eps
        self.deploy_radius = deploy_radius
        self.scale_groups = scale_groups
        self.scoring = False
        self.score_topk = 1.0
        self.scores: Optional[Tensor] = None
        self._init_scale_groups(init_alpha)
        self.register_buffer(
            'radius', torch.full((num_channels, ), radius, dtype=torch.int8))
        self.register_buffer('initialized', torch.zeros((), dtype=torch.uint8))

    def extra_repr(self) -> str:
        return (f'num_channels={self.num_channels}, dim={self.dim}, '
                f'groups={self.groups}, grad_scale={self.grad_scale!r}, '
                f'scale_groups={self.scale_groups}, layer={self.layer!r}')

    def _init_scale_groups(self, init_alpha: float) -> None:
        if self.scale_groups is None:
            self.alpha = nn.Parameter(
                torch.full((self.num_channels, ), init_alpha))
            return
        # Until data initialization, groups follow the channel order.
        group = contiguous_scale_groups(self.num_channels, self.scale_groups,
                                        self.groups)
        self.alpha = nn.Parameter(
            torch.full((int(group[-1]) + 1, ), init_alpha))
        self.register_buffer('scale_group', group)

    def channel_alpha(self) -> Tensor:
        """Return the (C,) scale of every channel, differentiable with
        respect to ``alpha``."""
        if self.scale_groups is None:
            return self.alpha
        return GroupScaleFunction.apply(self.alpha, self.scale_group)

    def set_scoring(self, enabled: bool, topk_ratio: float = 1.0) -> None:
        """Switch influence scoring on or off and clear ``scores``.

        Args:
            enabled (bool): Score the channels in the next training steps.
            topk_ratio (float): Share of each channel's elements averaged
                by the score, in (0, 1]. Defaults to 1.0.
        """
        if not 0 < topk_ratio <= 1:
            raise ValueError(f'score top-k ratio {topk_ratio} must be in '
                             '(0, 1]')
        self.scoring = enabled
        self.score_topk = topk_ratio
        self.scores = None

    def current_radius(self) -> Tensor:
        """Return the radius the next forward uses, as an int8 (C, )."""
        if not self.training and self.deploy_radius is not None:
            return torch.full_like(self.radius, self.deploy_radius)
        return self.radius

    def forward(self, x: Tensor) -> Tensor:
        """Return the fake-quantized ``x``, shaped and typed like ``x``."""
        if x.shape[self.dim] != self.num_channels:
            raise ValueError(
                f'input has {x.shape[self.dim]} channels on axis {self.dim} '
                f'but the quantizer was built for {self.num_channels}')
        if self.training and not self.initialized:
            x_bar, _ = rms_normalize(x.float(), self.dim, self.groups,
                                     self.eps)
            self._init_alpha(x_bar)

        # The output gets a gradient exactly when an input has one and
        # autograd records, and only then can the scoring hook run.
        scoring = (
            self.training and self.scoring and torch.is_grad_enabled()
            and (x.requires_grad or self.alpha.requires_grad))
        y = NormalizedQ2TFunction.apply(x, self.channel_alpha(),
                                        self.current_radius().float(),
                                        self.dim, self.groups, self.eps,
                                        self.grad_scale, scoring)
        if scoring:
            y, drop = y
            y.register_hook(partial(self._add_scores, drop))

        self.record_error(y, x)
        return y

    @torch.no_grad()
    def _add_scores(self, drop: Tensor, grad: Tensor) -> None:
        # The first-order gain of five levels is -g * (x^(5) - x^(3)).
        gain = torch.mul(drop, grad)
        # Gains are 0 wherever |x_bar / alpha| < 1.5, which is most
        # elements, so the sparse form usually skips the selection.
        scores = sparse_topk_mean(
            channels_first(gain, self.dim), self.score_topk)
        self.scores = scores if self.scores is None else self.scores + scores

    @torch.no_grad()
    def _init_alpha(self, x_bar: Tensor) -> None:
        dims = [i for i in range(x_bar.dim()) if i != self.dim % x_bar.dim()]
        mean_abs = x_bar.abs().mean(dims)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(mean_abs)
            mean_abs /= dist.get_world_size()
        alpha = (2 * mean_abs / self.radius.float().sqrt()).clamp(min=1e-4)
        if self.scale_groups is None:
            self.alpha.copy_(alpha)
        else:
            group, group_alpha = assign_scale_groups(
                alpha, self.scale_groups, self.groups)
            self.scale_group.copy_(group)
            self.alpha.copy_(group_alpha)
        self.initialized.fill_(1)
        logger.debug('Q2T quantizer with %d channels: scale initialized '
                     'from data, mean %.4f', self.num_channels,
                     alpha.mean().item())
