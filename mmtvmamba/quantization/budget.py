# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Budgeted choice of the five-level channels of Q2T quantizers.

Keeping a channel five-level (radius 2) costs one budget unit. Given the
influence score ``Delta R_c`` of every channel and a budget ``B``, the 0-1
knapsack with unit costs is solved exactly by keeping the ``B`` channels of
highest score. Two refinements stabilize the choice:

- dwell: a channel that enters the five-level set is locked there for the
  next ``D`` selection rounds. Locked channels are selected before any
  other. If the budget is smaller than their number, the best scored of
  them are selected;
- groups: with group size ``G``, contiguous groups of ``G`` channels are
  ranked by the sum of their scores and kept or dropped together, ``G``
  units each.
"""
import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ['DECAY_MODES', 'budget_ratio', 'select_groups', 'select_channels']

DECAY_MODES = ('linear', 'cosine')


def budget_ratio(progress: float,
                 start: float = 1 / 3,
                 final_ratio: float = 0.0,
                 decay: str = 'linear') -> float:
    """Return the share of channels allowed to stay five-level.

    The share is 1 until ``start``, then decays to ``final_ratio`` at
    ``progress == 1``.

    Args:
        progress (float): Share of training done, in [0, 1].
        start (float): Progress at which the decay begins, in [0, 1).
            Defaults to 1/3.
        final_ratio (float): Share at the end of training, in [0, 1].
            Defaults to 0 (strict ternary).
        decay (str): ``'linear'`` or ``'cosine'``. Defaults to ``'linear'``.
    """
    if not 0 <= start < 1:
        raise ValueError(f'budget start {start} must be in [0, 1)')
    if not 0 <= final_ratio <= 1:
        raise ValueError(f'final_ratio {final_ratio} must be in [0, 1]')
    if decay not in DECAY_MODES:
        raise ValueError(f'invalid budget decay {decay!r}; use one of '
                         f'{DECAY_MODES}')
    progress = min(max(progress, 0.0), 1.0)
    if progress <= start:
        return 1.0
    done = (progress - start) / (1 - start)
    if decay == 'linear':
        remaining = 1.0 - done
    else:
        remaining = 0.5 * (1.0 + math.cos(math.pi * done))
    return final_ratio + (1.0 - final_ratio) * remaining


def select_groups(scores: Tensor, num_kept: int, locked: Tensor) -> Tensor:
    """Return the mask of the ``num_kept`` groups to keep five-level.

    Locked groups come first, then the rest; within each set the order is
    by descending score, ties broken by the lower index.

    Args:
        scores (Tensor): (M, ) group scores.
        num_kept (int): Number of groups to keep, clipped to [0, M].
        locked (Tensor): (M, ) bool, groups still inside their dwell time.

    Returns:
        Tensor: (M, ) bool mask of the kept groups.
    """
    if scores.shape != locked.shape or scores.dim() != 1:
        raise ValueError(f'scores {tuple(scores.shape)} and locked '
                         f'{tuple(locked.shape)} must be equal 1-D shapes')
    num_kept = min(max(int(num_kept), 0), scores.numel())
    order = torch.sort(scores.double(), descending=True, stable=True).indices
    order = order[torch.sort(
        locked[order].to(torch.uint8), descending=True, stable=True).indices]
    mask = torch.zeros_like(locked, dtype=torch.bool)
    mask[order[:num_kept]] = True
    return mask


def select_channels(scores: Sequence[Tensor],
                    budget: int,
                    dwell: Sequence[Tensor],
                    kept: Sequence[Tensor],
                    dwell_rounds: int = 0,
                    group_size: int = 1) -> Tuple[List[Tensor], List[Tensor]]:
    """Choose the five-level channels of several quantizers together.

    Args:
        scores (Sequence[Tensor]): (C_j, ) channel scores of each quantizer.
        budget (int): Maximum number of five-level channels in total. With
            groups, ``budget // group_size`` groups are kept.
        dwell (Sequence[Tensor]): (C_j, ) integer rounds each channel stays
            locked; > 0 means locked.
        kept (Sequence[Tensor]): (C_j, ) bool, five-level before this round.
        dwell_rounds (int): Rounds ``D`` a newly kept channel stays locked.
            Defaults to 0.
        group_size (int): Channels per group ``G``; every ``C_j`` must be a
            multiple of it. Defaults to 1.

    Returns:
        tuple[list[Tensor], list[Tensor]]: The new (C_j, ) bool masks and
        the new dwell counters of each quantizer.
    """
    if not len(scores) == len(dwell) == len(kept):
        raise ValueError('scores, dwell and kept need one entry per '
                         'quantizer')
    if group_size < 1 or dwell_rounds < 0 or budget < 0:
        raise ValueError(f'group_size={group_size} must be >= 1, '
                         f'dwell_rounds={dwell_rounds} and budget={budget} '
                         '>= 0')
    sizes = [score.numel() for score in scores]
    bad = [size for size in sizes if size % group_size]
    if bad:
        raise ValueError(f'channel counts {bad} are not multiples of '
                         f'group_size={group_size}; choose a group size '
                         'that divides every quantized width')

    group_scores = torch.cat(
        [score.float().view(-1, group_size).sum(1) for score in scores])
    group_locked = torch.cat(
        [(count > 0).view(-1, group_size).any(1) for count in dwell])
    group_mask = select_groups(group_scores, budget // group_size,
                               group_locked)
    group_dwell = torch.cat(
        [count.view(-1, group_size).amax(1) for count in dwell])
    group_kept = torch.cat(
        [before.view(-1, group_size).all(1) for before in kept])

    entered = group_mask & ~group_kept
    group_dwell = torch.where(entered, torch.full_like(group_dwell,
                                                       dwell_rounds),
                              (group_dwell - 1).clamp(min=0))
    group_dwell = torch.where(group_mask, group_dwell,
                              torch.zeros_like(group_dwell))

    masks, counters = [], []
    for mask, counter in zip(
            group_mask.split([s // group_size for s in sizes]),
            group_dwell.split([s // group_size for s in sizes])):
        masks.append(mask.repeat_interleave(group_size))
        counters.append(counter.repeat_interleave(group_size))
    return masks, counters
