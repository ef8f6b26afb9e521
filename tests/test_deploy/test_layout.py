# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the channel layout of deployed projections."""
import pytest
import torch

from mmtvmamba.deploy import build_part_layout, split_groups


@pytest.mark.parametrize('channels, groups, expected', [
    (96, 3, [32, 32, 32]),
    (96, 8, [32, 32, 32]),
    (100, 2, [64, 36]),
    (384, 8, [64, 64, 64, 64, 32, 32, 32, 32]),
    (16, 4, [16]),
    (6, None, [1] * 6),
    (6, 8, [6]),
])
def test_split_groups_sizes(channels, groups, expected):
    assert split_groups(channels, groups) == expected


def test_split_groups_rejects_zero():
    with pytest.raises(ValueError, match='alpha_groups=0'):
        split_groups(10, 0)


def test_layout_sorts_and_scales_words():
    alpha = torch.arange(64, 0, -1).float()
    layout = build_part_layout(torch.arange(64), alpha, 1, 2, 64)

    # Two one-word groups, the 32 smallest scales first.
    assert layout.index.tolist() == list(range(63, -1, -1))
    assert layout.alpha.tolist() == list(range(1, 65))
    assert layout.k_scale.tolist() == [16.5, 48.5]
    assert layout.radius == 1


def test_layout_per_channel_pads_words():
    alpha = torch.tensor([4.0, 1.0, 3.0])
    layout = build_part_layout(torch.arange(3), alpha, 2, None, 3)

    # One word per channel; padding points at the zero column 3.
    assert layout.index.tolist()[::32] == [1, 2, 0]
    assert (layout.index[1:32] == 3).all()
    assert (layout.alpha[1:32] == 1).all()
    assert layout.k_scale.tolist() == [1.0, 3.0, 4.0]
    assert layout.radius == 2


def test_layout_of_empty_part():
    layout = build_part_layout(
        torch.zeros(0, dtype=torch.int64), torch.ones(5), 2, 8, 5)

    assert layout.index.numel() == 0
    assert layout.k_scale.numel() == 0


def test_layout_groups_equal_scales_exactly():
    # Three distinct scales in runs of 40, 20 and 4 channels: one group
    # each, padded to whole words, with the exact scale as K scale.
    alpha = torch.cat([torch.full((40, ), 0.3), torch.full((20, ), 0.1),
                       torch.full((4, ), 0.7)])
    layout = build_part_layout(torch.arange(64), alpha, 1, 8, 64,
                               shared_scales=True)

    assert layout.index.numel() == 4 * 32
    assert layout.k_scale.tolist() == pytest.approx([0.1, 0.3, 0.3, 0.7])
    assert layout.k_scale[1] == alpha[0]
    assert (layout.alpha[:20] == alpha[40]).all()
    assert (layout.index[20:32] == 64).all()


def test_layout_with_more_scales_than_groups_uses_words():
    alpha = torch.arange(1, 65).float()
    layout = build_part_layout(torch.arange(64), alpha, 1, 8, 64)

    assert layout.index.numel() == 64
    assert layout.k_scale.tolist() == [16.5, 48.5]


def test_layout_without_shared_scales_keeps_words():
    # Six channels with distinct scales share one word unless the
    # quantizer shares scales.
    alpha = torch.arange(1, 7).float()
    words = build_part_layout(torch.arange(6), alpha, 1, 8, 6)
    exact = build_part_layout(torch.arange(6), alpha, 1, 8, 6,
                              shared_scales=True)

    assert words.k_scale.tolist() == [3.5]
    assert exact.k_scale.tolist() == [1, 2, 3, 4, 5, 6]
