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
multiplies a code is approximated. The layout is exact in two cases. When
the quantizer shares its scales within channel groups and a part has at
most ``alpha_groups`` distinct scales, each distinct scale becomes one
group. With one group per channel, each padded to a word, the layout is
exact for any quantizer but up to 32 times more work.
"""
import math
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor

from mmtvmamba.quantization.scale_groups import WORD_BITS, split_groups

__all__ = ['WORD_BITS', 'PartLayout', 'split_groups', 'build_part_layout']


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


def build_part_layout(channels: Tensor,
                      alpha: Tensor,
                      radius: int,
                      groups: Optional[int],
                      num_channels: int,
                      shared_scales: bool = False) -> PartLayout:
    """Build the kernel layout of the input ``channels`` of one part.

    Args:
        channels (Tensor): int64 indices of the part's input channels.
        alpha (Tensor): float32 (num_channels,) scales of all channels.
        radius (int): Code radius of the part, 1 or 2.
        groups (int, optional): Number of scale groups; None for one per
            channel.
        num_channels (int): Input channels of the projection; index
            ``num_channels`` is the zero padding column.
        shared_scales (bool): The quantizer shares its scales within
            channel groups, so a part with at most ``groups`` distinct
            scales gets one group per scale and an exact layout. Without
            it, a few channels with distinct scales stay in one word
            instead of taking a word each. Defaults to False.

    Returns:
        PartLayout: The part's order, scales and word scales.
    """
    order = channels[torch.argsort(alpha[channels], stable=True)]
    # The empty first entries let a part without channels concatenate.
    index = [channels.new_empty(0)]
    position_alpha = [alpha.new_empty(0)]
    k_scale = [alpha.new_empty(0)]
    start = 0
    for size in _group_sizes(alpha[order], groups, shared_scales):
        members = order[start:start + size]
        start += size
        words = math.ceil(size / WORD_BITS)
        pad = words * WORD_BITS - size

        index.append(members)
        index.append(members.new_full((pad, ), num_channels))
        position_alpha.append(alpha[members])
        position_alpha.append(alpha.new_ones(pad))
        # A float64 mean keeps a group of equal scales at that exact value.
        k_scale.append(alpha[members].double().mean().expand(words))

    return PartLayout(
        index=torch.cat(index),
        alpha=torch.cat(position_alpha).float(),
        k_scale=torch.cat(k_scale).float().contiguous(),
        radius=radius)


def _group_sizes(sorted_alpha: Tensor, groups: Optional[int],
                 shared_scales: bool) -> List[int]:
    """Return the group sizes of a part whose scales are sorted.

    With shared scales and at most ``groups`` distinct scales, every
    distinct scale gets its own group, which makes the layout exact. All
    other parts get the word groups of :func:`split_groups`.
    """
    if shared_scales and groups is not None and len(sorted_alpha):
        _, counts = torch.unique_consecutive(sorted_alpha, return_counts=True)
        if len(counts) <= groups:
            return counts.tolist()
    return split_groups(len(sorted_alpha), groups)
