# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of Q2T scales shared by channel groups."""
import pytest
import torch

from mmtvmamba.quantization import Q2TQuantizer, QuantConfig
from mmtvmamba.quantization.scale_groups import (GroupScaleFunction,
                                                 assign_scale_groups)


def test_assign_groups_sorted_whole_words():
    alpha = torch.rand(100) + 0.1
    group, group_alpha = assign_scale_groups(alpha, 3)

    # 100 channels are 4 words: groups of 64, 32 and 4 channels.
    assert torch.bincount(group).tolist() == [64, 32, 4]
    order = torch.argsort(alpha)
    assert group[order].tolist() == sorted(group[order].tolist())
    for g in range(3):
        mean = alpha[group == g].double().mean().float()
        assert group_alpha[g] == mean


def test_assign_groups_keeps_equal_scales_exact():
    alpha = torch.full((96, ), 0.1)
    _, group_alpha = assign_scale_groups(alpha, 3)

    assert torch.equal(group_alpha, torch.full((3, ), 0.1))


def test_group_scale_gradient_is_rescaled_sum():
    group_alpha = torch.tensor([0.5, 2.0], requires_grad=True)
    group = torch.tensor([0, 1, 1, 0, 1, 1])
    grad = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])

    channel_alpha = GroupScaleFunction.apply(group_alpha, group)
    channel_alpha.backward(grad)

    assert channel_alpha.tolist() == [0.5, 2.0, 2.0, 0.5, 2.0, 2.0]
    expected = torch.tensor([5.0 / 2 ** 0.5, 16.0 / 2.0])
    torch.testing.assert_close(group_alpha.grad, expected)


def test_quantizer_groups_from_data():
    torch.manual_seed(0)
    quantizer = Q2TQuantizer(96, dim=1, scale_groups=8)
    # Channel c has scale about proportional to c + 1.
    x = torch.randn(4, 96, 5, 5) * torch.arange(1, 97).view(1, 96, 1, 1)
    quantizer(x)

    # 96 channels are 3 words, so at most 3 groups, lowest scales first.
    assert quantizer.alpha.shape == (3, )
    assert torch.bincount(quantizer.scale_group).tolist() == [32, 32, 32]
    assert quantizer.scale_group[:10].eq(0).all()
    assert quantizer.scale_group[-10:].eq(2).all()
    assert quantizer.channel_alpha().unique().numel() == 3
    assert torch.all(quantizer.alpha[1:] > quantizer.alpha[:-1])


def test_quantizer_matches_per_channel_scales():
    torch.manual_seed(1)
    grouped = Q2TQuantizer(64, dim=1, scale_groups=2)
    x = torch.randn(2, 64, 4, 4)
    grouped(x)
    single = Q2TQuantizer(64, dim=1)
    single.alpha.data = grouped.channel_alpha().detach().clone()
    single.initialized.fill_(1)

    x = (torch.randn(2, 64, 4, 4) * 2).requires_grad_()
    grad = torch.randn(2, 64, 4, 4)
    grouped(x).backward(grad)
    x_single = x.detach().clone().requires_grad_()
    single(x_single).backward(grad)

    assert torch.equal(x.grad, x_single.grad)
    counts = torch.bincount(grouped.scale_group).float()
    expected = torch.zeros(2).index_add_(0, grouped.scale_group,
                                         single.alpha.grad) / counts.sqrt()
    torch.testing.assert_close(grouped.alpha.grad, expected)


def test_quantizer_groups_survive_state_dict():
    torch.manual_seed(2)
    trained = Q2TQuantizer(64, dim=1, scale_groups=2)
    trained(torch.randn(2, 64, 3, 3) * torch.rand(1, 64, 1, 1))
    loaded = Q2TQuantizer(64, dim=1, scale_groups=2)
    loaded.load_state_dict(trained.state_dict())

    assert torch.equal(loaded.scale_group, trained.scale_group)
    x = torch.randn(1, 64, 3, 3)
    assert torch.equal(loaded.eval()(x), trained.eval()(x))


@pytest.mark.parametrize('value', [0, -2, 1.5, '8'])
def test_quantizer_rejects_bad_scale_groups(value):
    with pytest.raises(ValueError, match='invalid scale_groups'):
        Q2TQuantizer(64, scale_groups=value)


def test_quant_config_accepts_scale_groups():
    quant = QuantConfig.from_cfg(
        dict(mode='ternary', act=dict(type='Q2T', scale_groups=8)))

    assert quant.act['scale_groups'] == 8


def test_assign_groups_within_parts():
    # Two parts of 48 channels with opposite scale orders: each part gets
    # its own two groups, lowest scales first.
    alpha = torch.cat([torch.arange(48.0), torch.arange(48.0, 0, -1)])
    group, group_alpha = assign_scale_groups(alpha, 8, parts=2)

    assert group[:32].eq(0).all()
    assert group[32:48].eq(1).all()
    assert group[48:64].eq(3).all()
    assert group[64:].eq(2).all()
    assert group_alpha.shape == (4, )


def test_quantizer_groups_per_rms_group():
    torch.manual_seed(3)
    quantizer = Q2TQuantizer(96, dim=1, groups=4, scale_groups=8)
    quantizer(torch.randn(2, 96, 4, 4) * torch.rand(1, 96, 1, 1))

    # Four directions of 24 channels, each with one shared scale.
    assert quantizer.alpha.shape == (4, )
    for part in range(4):
        members = quantizer.scale_group[24 * part:24 * (part + 1)]
        assert members.eq(part).all()
