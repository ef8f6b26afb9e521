# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the channel layout of deployed projections."""
import pytest
import torch

from mmtvmamba.deploy import build_part_layout, split_groups


@pytest.mark.parametrize('channels, groups, expected', [
    (96, 3, [32, 32, 32]),
    (100, 2, [64, 36]),
    (384, 8, [64, 64, 64, 64, 32, 32, 32, 32]),
    (16, 4, [4, 4, 4, 4]),
    (10, 3, [4, 3, 3]),
    (6, None, [1] * 6),
    (6, 8, [1] * 6),
])
def test_split_groups_sizes(channels, groups, expected):
    assert split_groups(channels, groups) == expected


def test_split_groups_rejects_zero():
    with pytest.raises(ValueError, match='alpha_groups=0'):
        split_groups(10, 0)


def test_layout_sorts_pads_and_scales():
    alpha = torch.tensor([4.0, 1.0, 3.0, 2.0])
    layout = build_part_layout(torch.arange(4), alpha, 1, 2, 4)

    # Two groups of two channels, each padded to one 32-position word.
    assert layout.index.tolist()[:2] == [1, 3]
    assert layout.index.tolist()[32:34] == [2, 0]
    assert (layout.index[2:32] == 4).all()
    assert (layout.index[34:] == 4).all()
    assert layout.alpha[:2].tolist() == [1.0, 2.0]
    assert (layout.alpha[2:32] == 1).all()
    assert layout.k_scale.tolist() == [1.5, 3.5]
    assert layout.radius == 1


def test_layout_of_empty_part():
    layout = build_part_layout(
        torch.zeros(0, dtype=torch.int64), torch.ones(5), 2, 8, 5)

    assert layout.index.numel() == 0
    assert layout.k_scale.numel() == 0
