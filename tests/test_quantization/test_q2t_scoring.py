# Copyright (c) mmtvmamba contributors. All rights reserved.
import pytest
import torch
import torch.nn.functional as F

from mmtvmamba.quantization import (Q2TQuantizer, QuantConfig,
                                    sparse_topk_mean, topk_mean)
from mmtvmamba.quantization.layers import TernaryLinear2d


def _tiny_layer():
    torch.manual_seed(0)
    layer = TernaryLinear2d(4, 3, quant=QuantConfig.from_cfg({}),
                            layer='in_proj')
    layer.act_quant.alpha.data = torch.tensor([0.3, 0.4, 0.5, 0.6])
    layer.act_quant.initialized.fill_(1)
    layer.act_quant.radius.fill_(1)
    x = torch.randn(2, 4, 3, 3) * torch.tensor([1., 3., .5, 2.]).view(
        1, 4, 1, 1)
    # A distant target makes the loss nearly linear in the toggled inputs,
    # so the first-order score and the true change agree closely.
    target = torch.randn(2, 3, 3, 3) * 50
    return layer, x, target


def _loss(layer, x, target):
    return 0.5 * F.mse_loss(layer(x), target, reduction='sum')


def test_scores_match_finite_difference():
    layer, x, target = _tiny_layer()
    quantizer = layer.act_quant
    quantizer.set_scoring(True, topk_ratio=1.0)
    base = _loss(layer, x, target)
    base.backward()
    elements = x.numel() // 4
    predicted = quantizer.scores * elements

    quantizer.set_scoring(False)
    with torch.no_grad():
        for c in range(4):
            quantizer.radius.fill_(1)
            quantizer.radius[c] = 2
            drop = base - _loss(layer, x, target)
            assert predicted[c].item() == pytest.approx(
                drop.item(), rel=0.05, abs=1e-3), f'channel {c}'


def test_scores_rank_like_finite_difference():
    layer, x, target = _tiny_layer()
    quantizer = layer.act_quant
    quantizer.set_scoring(True, topk_ratio=1.0)
    base = _loss(layer, x, target)
    base.backward()
    drops = []
    with torch.no_grad():
        for c in range(4):
            quantizer.radius.fill_(1)
            quantizer.radius[c] = 2
            drops.append((base - _loss(layer, x, target)).item())
    assert quantizer.scores.argsort().tolist() == torch.tensor(
        drops).argsort().tolist()


def test_scoring_off_leaves_scores_empty():
    layer, x, target = _tiny_layer()
    _loss(layer, x, target).backward()
    assert layer.act_quant.scores is None


def test_topk_score_is_tail_mean():
    quantizer = Q2TQuantizer(2, dim=1)
    quantizer.alpha.data.fill_(0.2)
    quantizer.initialized.fill_(1)
    quantizer.set_scoring(True, topk_ratio=0.25)
    x = torch.randn(8, 2, requires_grad=True) * 3
    grad = torch.randn(8, 2)
    y = quantizer(x)
    y.backward(grad)
    x_bar = x.detach() / x.detach().pow(2).mean(1, keepdim=True).add(
        1e-6).sqrt()
    u = x_bar / 0.2
    delta = 0.2 * (u.round().clamp(-2, 2) - u.round().clamp(-1, 1))
    delta = delta * x.detach().pow(2).mean(1, keepdim=True).add(1e-6).sqrt()
    gain = (-grad * delta).t()
    expected = gain.topk(2, dim=1).values.mean(1)
    assert torch.allclose(quantizer.scores, expected, atol=1e-5)


def test_deploy_ternary_forces_radius_one_in_eval():
    torch.manual_seed(0)
    trained = Q2TQuantizer(4)
    deployed = Q2TQuantizer(4, deploy_radius=1)
    ternary = Q2TQuantizer(4, radius=1)
    for quantizer in (trained, deployed, ternary):
        quantizer.alpha.data.fill_(0.3)
        quantizer.eval()
    x = torch.randn(2, 4, 5, 5) * 3
    assert torch.equal(deployed(x), ternary(x))
    assert not torch.equal(trained(x), ternary(x))


def test_deploy_radius_ignored_in_training():
    quantizer = Q2TQuantizer(4, deploy_radius=1)
    assert quantizer.current_radius().tolist() == [2, 2, 2, 2]


def test_config_deploy_reaches_quantizer():
    layer = TernaryLinear2d(
        4, 3, quant=QuantConfig.from_cfg(dict(deploy='ternary')),
        layer='fc1')
    assert layer.act_quant.deploy_radius == 1


def _mostly_zero_rows():
    torch.manual_seed(6)
    values = torch.randn(4, 200)
    keep = torch.rand(4, 200) < 0.08
    values = torch.where(keep, values, torch.zeros(()))
    # Row 1: more positive entries than k = 20.
    values[1, :60] = torch.rand(60) + 0.1
    # Row 2: too few zeros, so negative entries reach the top k.
    values[2] = -torch.rand(200) - 0.1
    values[2, :5] = 0.
    # Row 3: all zero.
    values[3] = 0.
    return values


def test_sparse_topk_mean_equals_topk_mean():
    values = _mostly_zero_rows()
    expected = topk_mean(values, 0.1)
    result = sparse_topk_mean(values, 0.1)
    assert torch.allclose(result, expected, atol=1e-6)


@pytest.mark.parametrize('ratio', [0.01, 0.5, 1.0])
def test_sparse_topk_mean_other_ratios(ratio):
    values = _mostly_zero_rows()
    assert torch.allclose(
        sparse_topk_mean(values, ratio), topk_mean(values, ratio), atol=1e-6)


@pytest.mark.parametrize('values, ratio, match', [
    (torch.zeros(3), 0.1, r'\(C, N\) matrix'),
    (torch.zeros(2, 3), 1.5, r'must be in \(0, 1\]'),
    (torch.zeros(2, 3, dtype=torch.int64), 0.5, 'floating-point'),
])
def test_sparse_topk_mean_rejects_bad_arguments(values, ratio, match):
    with pytest.raises(ValueError, match=match):
        sparse_topk_mean(values, ratio)
