# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Channel layout of a deployed projection: order, padding and scales.

A Q2T quantizer multiplies every input channel ``c`` by its own scale
``alpha_c`` before the matrix multiply, so the exact product is
``sum_c w_c * alpha_c * q_c``. The bitwise kernel sums integer products
over 32-channel words and can scale each word, not each channel. The
deploy layout therefore

1. splits the channels by radius into a five-level part and a ternary part,
   because each part runs through its own kernel;
2. sorts each part by ``alpha`` and cuts it into at most ``alpha_groups``
   groups of neighbouring scales, each a whole number of 32-channel words;
3. gives each word the mean ``alpha`` of its group as the kernel's K scale.

Channels still round with their own ``alpha``, so only the scale that
multiplies a code is approximated. With one group per channel, each padded
to a word, the layout is exact but up to 32 times more work.
"""
import math
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor

__all__ = ['WORD_BITS', 'PartLayout', 'split_groups', 'build_part_layout']

WORD_BITS = 32


@dataclass
class PartLayout:
    """Input channels of one kernel call, in kernel order.

    Attributes:
        index (Tensor): int64 (K_padded,) source channel of every kernel
            position; padding positions point at channel ``num_channels``,
            a zero column appended to the input.
        alpha (Tensor): float32 (K_padded,) scale used to round each
            position, 1 on padding.
        k_scale (Tensor): float32 (K_padded / 32,) scale of every word.
        radius (int): 1 for ternary codes, 2 for five levels.
    """

    index: Tensor
    alpha: Tensor
    k_scale: Tensor
    radius: int


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


def build_part_layout(channels: Tensor, alpha: Tensor, radius: int,
                      groups: Optional[int], num_channels: int) -> PartLayout:
    """Build the kernel layout of the input ``channels`` of one part.

    Args:
        channels (Tensor): int64 indices of the part's input channels.
        alpha (Tensor): float32 (num_channels,) scales of all channels.
        radius (int): Code radius of the part, 1 or 2.
        groups (int, optional): Number of scale groups; None for one per
            channel.
        num_channels (int): Input channels of the projection; index
            ``num_channels`` is the zero padding column.

    Returns:
        PartLayout: The part's order, scales and word scales.
    """
    order = channels[torch.argsort(alpha[channels], stable=True)]
    # The empty first entries let a part without channels concatenate.
    index = [channels.new_empty(0)]
    position_alpha = [alpha.new_empty(0)]
    k_scale = [alpha.new_empty(0)]
    start = 0
    for size in split_groups(len(order), groups):
        members = order[start:start + size]
        start += size
        words = math.ceil(size / WORD_BITS)
        pad = words * WORD_BITS - size

        index.append(members)
        index.append(members.new_full((pad, ), num_channels))
        position_alpha.append(alpha[members])
        position_alpha.append(alpha.new_ones(pad))
        k_scale.append(alpha[members].mean().expand(words))

    return PartLayout(
        index=torch.cat(index),
        alpha=torch.cat(position_alpha).float(),
        k_scale=torch.cat(k_scale).float().contiguous(),
        radius=radius)
