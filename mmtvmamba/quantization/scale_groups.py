# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Q2T scales shared by groups of channels.

The bitwise kernel sums integer products over 32-channel words and can
multiply each word by one scale, not each channel. A Q2T quantizer whose
channels share their scale within a few groups therefore deploys exactly:
every group becomes a run of words with one K scale. The groups are cut
from the channels sorted by their data-initialized scale, so each group
contains channels of similar range. Every group but the last spans whole
words, so the deployed layout needs no padding.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    'WORD_BITS', 'split_groups', 'contiguous_scale_groups',
    'assign_scale_groups', 'GroupScaleFunction'
]

WORD_BITS = 32


def split_groups(num_channels: int, groups: Optional[int]) -> List[int]:
    """Return the sizes of the contiguous channel groups of one part.

    Every group but the last is a whole number of words, so grouping adds
    no padding. A part of W words therefore has at most W groups: one
    scale per word is the finest grouping that costs nothing extra. None
    means one group per channel, each padded to a word, which is exact but
    multiplies the work by up to 32.

    Args:
        num_channels (int): Channels to split; 0 gives no groups.
        groups (int, optional): Maximum number of groups.

    Returns:
        list[int]: Sizes that sum to ``num_channels``.
    """
    if groups is None:
        return [1] * num_channels
    if groups < 1:
        raise ValueError(f'alpha_groups={groups} must be at least 1, or '
                         'None for one group per channel')
    words = math.ceil(num_channels / WORD_BITS)
    if words == 0:
        return []
    groups = min(groups, words)
    per_group = [words // groups + (g < words % groups) for g in range(groups)]
    sizes = [n * WORD_BITS for n in per_group]
    # The last group takes the partial word.
    sizes[-1] -= words * WORD_BITS - num_channels
    return sizes


def contiguous_scale_groups(num_channels: int,
                            groups: int,
                            parts: int = 1) -> Tensor:
    """Return the group of every channel in channel order.

    Each of the ``parts`` equal, contiguous channel ranges is cut into the
    sizes of :func:`split_groups`, and its groups follow those of the
    previous range.

    Args:
        num_channels (int): Number of channels C, divisible by ``parts``.
        groups (int): Maximum number of groups per part, at least 1.
        parts (int): Number of channel ranges grouped separately.
            Defaults to 1.

    Returns:
        Tensor: int64 (C,) group of every channel.
    """
    sizes = split_groups(num_channels // parts, groups)
    one_part = torch.repeat_interleave(torch.arange(len(sizes)),
                                       torch.tensor(sizes))
    return torch.cat([one_part + p * len(sizes) for p in range(parts)])


def assign_scale_groups(alpha: Tensor,
                        groups: int,
                        parts: int = 1) -> Tuple[Tensor, Tensor]:
    """Group channels by their scale and return each group's mean scale.

    Each of the ``parts`` equal, contiguous channel ranges is grouped on
    its own: its channels are sorted by ``alpha`` and cut into the sizes of
    :func:`split_groups`, so the smallest scales form its first group.
    Separate ranges suit a quantizer whose channel ranges are deployed as
    separate projections, e.g. the four scan directions of dt_proj.

    Args:
        alpha (Tensor): (C,) scale of every channel, C divisible by
            ``parts``.
        groups (int): Maximum number of groups per part, at least 1.
        parts (int): Number of channel ranges grouped separately.
            Defaults to 1.

    Returns:
        tuple[Tensor, Tensor]: The int64 (C,) group of every channel and
        the mean scale of every group, in ``alpha``'s dtype.
    """
    per_part = len(alpha) // parts
    sorted_group = contiguous_scale_groups(per_part, groups).to(alpha.device)
    groups_per_part = int(sorted_group[-1]) + 1
    group = torch.empty(len(alpha), dtype=torch.int64, device=alpha.device)
    for p, chunk in enumerate(alpha.split(per_part)):
        order = torch.argsort(chunk, stable=True) + p * per_part
        group[order] = sorted_group + p * groups_per_part

    # Means in float64 keep a group of equal scales exactly at that value.
    num_groups = groups_per_part * parts
    totals = torch.zeros(num_groups, dtype=torch.float64, device=alpha.device)
    totals.index_add_(0, group, alpha.double())
    counts = torch.bincount(group, minlength=num_groups)
    return group, (totals / counts).to(alpha.dtype)


class GroupScaleFunction(torch.autograd.Function):
    """Expand (G,) group scales to (C,) channel scales.

    The forward pass is ``group_alpha[group]``. The backward pass sums the
    gradients of a group's channels and divides the sum by the square
    root of the group's channel count. The channel gradients already carry
    the Q2T rescaling of one channel, ``1 / sqrt(N_c)`` times a radius
    term. The extra factor turns it into ``1 / sqrt(n_g * N_c)`` for a
    scale shared by ``n_g`` channels, as LSQ rescales a step size by the
    number of elements that share it.

    Args of ``apply``: ``group_alpha`` (Tensor, (G,)) and ``group``
    (Tensor, int64 (C,) group of every channel).
    """

    @staticmethod
    def forward(ctx, group_alpha: Tensor, group: Tensor) -> Tensor:
        ctx.save_for_backward(group)
        ctx.num_groups = len(group_alpha)
        return group_alpha[group]

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        group, = ctx.saved_tensors
        grad = grad_output.new_zeros(ctx.num_groups)
        grad.index_add_(0, group, grad_output)
        counts = torch.bincount(group, minlength=ctx.num_groups)
        return grad / counts.clamp(min=1).to(grad.dtype).sqrt(), None
