# Copyright (c) mmtvmamba contributors. All rights reserved.
import pytest
import torch

from mmtvmamba.quantization import (LSQTernaryQuantizer, QuantConfig,
                                    SlenderQuantizer, build_act_quantizer,
                                    rms_normalize)


def test_lsq_forward_matches_formula():
    torch.manual_seed(0)
    quantizer = LSQTernaryQuantizer(4, init_ratio=0.6).eval()
    quantizer.alpha.data = torch.tensor([0.5, 1.0, 1.5, 2.0])
    x = torch.randn(2, 4, 3, 3)
    x_bar, rms = rms_normalize(x, dim=1)
    rms = rms.flatten(1, 2)
    alpha = quantizer.alpha.view(1, 4, 1, 1)
    expected = alpha * torch.sign(x_bar) * (x_bar.abs() >= 0.6 * alpha)
    assert torch.allclose(quantizer(x), expected * rms)


def test_lsq_gradients_reach_scale_and_ratio():
    torch.manual_seed(0)
    quantizer = LSQTernaryQuantizer(4)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    quantizer(x).pow(2).sum().backward()
    assert quantizer.alpha.grad.abs().sum() > 0
    assert quantizer.ratio.grad.abs().sum() > 0
    assert x.grad is not None


def test_lsq_initializes_scale_from_data():
    quantizer = LSQTernaryQuantizer(4)
    quantizer(torch.randn(2, 4, 3, 3))
    assert quantizer.initialized.item() == 1
    assert not torch.equal(quantizer.alpha.detach(), torch.ones(4))


@pytest.mark.parametrize('scale', ['absmax', 'absmean'])
def test_slender_output_is_ternary_per_token(scale):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3, 3)
    y = SlenderQuantizer(6, scale=scale)(x)
    if scale == 'absmax':
        s = x.abs().amax(1, keepdim=True)
    else:
        s = x.abs().mean(1, keepdim=True)
    codes = y / s
    assert torch.allclose(codes, codes.round(), atol=1e-5)
    assert codes.abs().max() <= 1 + 1e-5


def test_slender_gradient_is_identity():
    x = torch.randn(2, 6, 3, 3, requires_grad=True)
    SlenderQuantizer(6)(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize('act, cls', [
    (dict(type='LSQ', init_ratio=0.4), LSQTernaryQuantizer),
    (dict(type='Slender', scale='absmean'), SlenderQuantizer),
])
def test_config_selects_baseline(act, cls):
    quant = QuantConfig.from_cfg(dict(act=act))
    quantizer = build_act_quantizer(quant, 'fc1', 8)
    assert isinstance(quantizer, cls)
    assert quantizer.layer == 'fc1'


@pytest.mark.parametrize('cfg, match', [
    (dict(act=dict(type='LSQ', radius=2)), 'unknown activation quantizer'),
    (dict(act=dict(type='PACT')), 'unknown activation quantizer'),
    (dict(deploy='binary'), 'invalid quant deploy'),
])
def test_config_rejects_bad_act(cfg, match):
    with pytest.raises(ValueError, match=match):
        QuantConfig.from_cfg(cfg)


def test_slender_rejects_bad_scale():
    with pytest.raises(ValueError, match='invalid Slender scale'):
        SlenderQuantizer(4, scale='max')


def test_lsq_rejects_bad_ratio():
    with pytest.raises(ValueError, match='init_ratio'):
        LSQTernaryQuantizer(4, init_ratio=2.0)
