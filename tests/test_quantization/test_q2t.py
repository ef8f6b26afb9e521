# Copyright (c) mmtvmamba contributors. All rights reserved.
import math

import pytest
import torch

from mmtvmamba.quantization import (NormalizedQ2TFunction, Q2TFunction,
                                    Q2TQuantizer, q2t_grad_factor,
                                    rms_normalize, token_rms)


def _q2t(x, alpha, radius, mode='paper'):
    """Apply Q2TFunction with per-channel alpha/radius on axis 1 of (N, C)."""
    return Q2TFunction.apply(x, alpha.view(1, -1), radius.view(1, -1), mode)


@pytest.mark.parametrize('radius', [1, 2])
def test_q2t_forward_levels(radius):
    alpha = torch.tensor([0.5, 2.0])
    x = torch.linspace(-6, 6, 101)[:, None].repeat(1, 2)
    y = _q2t(x, alpha, torch.full((2, ), float(radius)))
    levels = y / alpha
    assert torch.equal(levels, torch.round(levels))
    assert levels.abs().max().item() == radius
    assert len(levels[:, 0].unique()) == 2 * radius + 1


def test_q2t_forward_matches_formula():
    torch.manual_seed(0)
    x = torch.randn(50, 3) * 3
    alpha = torch.tensor([0.7, 1.1, 0.3])
    radius = torch.tensor([2.0, 1.0, 2.0])
    y = _q2t(x, alpha, radius)
    expected = alpha * torch.maximum(
        torch.minimum(torch.round(x / alpha), radius), -radius)
    assert torch.equal(y, expected)


def _expected_grads(x, alpha, radius, g, mode):
    u = x / alpha
    q = torch.maximum(torch.minimum(torch.round(u), radius), -radius)
    inside = (u.abs() <= radius).float()
    n_c = x.shape[0]
    if mode == 'paper':
        factor = 1 / (math.sqrt(n_c) * radius)
    else:
        factor = 1 / torch.sqrt(n_c * radius)
    return g * inside, (g * (q - u * inside)).sum(0) * factor


@pytest.mark.parametrize('mode', ['paper', 'lsq'])
def test_q2t_gradients_match_formula(mode):
    torch.manual_seed(1)
    x = (torch.randn(64, 4) * 2).requires_grad_()
    alpha = torch.tensor([0.5, 1.0, 1.5, 0.8], requires_grad=True)
    radius = torch.tensor([1.0, 2.0, 1.0, 2.0])
    g = torch.randn(64, 4)
    _q2t(x, alpha, radius, mode).backward(g)
    grad_x, grad_alpha = _expected_grads(x.detach(), alpha.detach(), radius,
                                         g, mode)
    assert torch.allclose(x.grad, grad_x)
    assert torch.allclose(alpha.grad, grad_alpha, atol=1e-6)


@pytest.mark.parametrize('radius', [1.0, 2.0])
def test_q2t_gradient_exactly_on_bound(radius):
    # u = +-Q counts as inside: the input gradient passes and the scale
    # gradient is q - u = 0 there; just outside the bound it is +-Q.
    alpha = torch.tensor([0.5], requires_grad=True)
    x = torch.tensor([[radius * 0.5], [-radius * 0.5], [radius * 0.5 + 0.01]],
                     requires_grad=True)
    g = torch.ones(3, 1)
    _q2t(x, alpha, torch.tensor([radius])).backward(g)
    assert x.grad[:, 0].tolist() == [1.0, 1.0, 0.0]
    expected_alpha = radius / (math.sqrt(3) * radius)
    assert alpha.grad.item() == pytest.approx(expected_alpha)


def test_q2t_grad_factor_modes():
    radius = torch.tensor([1.0, 2.0])
    paper = q2t_grad_factor(radius, 16, 'paper')
    lsq = q2t_grad_factor(radius, 16, 'lsq')
    assert torch.allclose(paper, torch.tensor([1 / 4, 1 / 8]))
    assert torch.allclose(lsq, torch.tensor([1 / 4, 1 / math.sqrt(32)]))
    with pytest.raises(ValueError, match='invalid grad_scale'):
        q2t_grad_factor(radius, 16, 'other')


def test_q2t_function_rejects_misshaped_scale():
    with pytest.raises(ValueError, match='same shape'):
        Q2TFunction.apply(torch.randn(4, 3), torch.ones(3), torch.ones(3),
                          'paper')


def test_rms_normalize_unit_rms_per_token():
    x = torch.randn(2, 6, 5, 7) * 4
    x_bar, rms = rms_normalize(x, dim=1)
    assert rms.shape == (2, 1, 1, 5, 7)
    assert torch.allclose(x_bar.pow(2).mean(1), torch.ones(2, 5, 7),
                          atol=1e-4)


def test_rms_normalize_groups_are_independent():
    x = torch.cat([torch.ones(1, 3, 4), 10 * torch.ones(1, 3, 4)], dim=1)
    x_bar, _ = rms_normalize(x, dim=1, groups=2, eps=0.0)
    assert torch.allclose(x_bar, torch.ones_like(x))


def test_quantizer_output_is_rms_times_levels():
    torch.manual_seed(2)
    quantizer = Q2TQuantizer(8, dim=1, radius=2).eval()
    x = torch.randn(2, 8, 3, 3)
    y = quantizer(x)
    x_bar, rms = rms_normalize(x, dim=1, eps=quantizer.eps)
    levels = (y / rms.squeeze(1)) / quantizer.alpha.view(1, -1, 1, 1)
    assert torch.allclose(levels, torch.round(levels), atol=1e-4)
    assert levels.abs().max() <= 2 + 1e-4


def test_quantizer_initializes_scale_from_data_once():
    torch.manual_seed(3)
    quantizer = Q2TQuantizer(4, dim=-1, radius=2)
    x = torch.randn(32, 4)
    quantizer(x)
    x_bar, _ = rms_normalize(x, dim=-1, eps=quantizer.eps)
    expected = 2 * x_bar.abs().mean(0) / math.sqrt(2)
    assert torch.allclose(quantizer.alpha.detach(), expected)
    assert quantizer.initialized.item() == 1
    quantizer(x * 5 + 1)
    assert torch.allclose(quantizer.alpha.detach(), expected)


def test_quantizer_eval_keeps_default_scale():
    quantizer = Q2TQuantizer(4, dim=-1).eval()
    quantizer(torch.randn(8, 4))
    assert torch.equal(quantizer.alpha.detach(), torch.ones(4))
    assert quantizer.initialized.item() == 0


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_channels=0), 'positive'),
    (dict(num_channels=6, groups=4), 'divisible'),
    (dict(num_channels=4, radius=3), 'invalid radius'),
    (dict(num_channels=4, grad_scale='x'), 'invalid grad_scale'),
    (dict(num_channels=4, init_alpha=0.0), 'init_alpha'),
])
def test_quantizer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Q2TQuantizer(**kwargs)


def test_quantizer_rejects_wrong_channel_count():
    quantizer = Q2TQuantizer(4)
    with pytest.raises(ValueError, match='built for 4'):
        quantizer(torch.randn(2, 5, 3, 3))


def _chained_q2t(x, alpha, radius, dim, groups, mode, eps=1e-6):
    """RMS normalization, Q2TFunction and the RMS restored, under
    autograd."""
    dim = dim % x.dim()
    x_bar, rms = rms_normalize(x, dim, groups, eps)
    shape = [1] * x.dim()
    shape[dim] = -1
    y = Q2TFunction.apply(x_bar, alpha.view(shape), radius.view(shape), mode)
    return (y.unflatten(dim, (groups, -1)) * rms).flatten(dim, dim + 1)


@pytest.mark.parametrize('shape, dim, groups, channels_last', [
    ((4, 8, 5, 6), 1, 1, True),
    ((4, 8, 5, 6), 1, 2, False),
    ((3, 12, 7), 1, 4, False),
    ((10, 6), -1, 3, False),
])
@pytest.mark.parametrize('mode', ['paper', 'lsq'])
def test_normalized_q2t_matches_chained_autograd(shape, dim, groups,
                                                 channels_last, mode):
    torch.manual_seed(4)
    x = torch.randn(shape) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    channels = x.shape[dim]
    alpha = torch.rand(channels) * 0.5 + 0.2
    radius = torch.randint(1, 3, (channels, )).float()
    grad = torch.randn(shape)

    x_ref = x.clone().requires_grad_()
    alpha_ref = alpha.clone().requires_grad_()
    y_ref = _chained_q2t(x_ref, alpha_ref, radius, dim, groups, mode)
    y_ref.backward(grad)

    x_new = x.clone().requires_grad_()
    alpha_new = alpha.clone().requires_grad_()
    y_new = NormalizedQ2TFunction.apply(x_new, alpha_new, radius, dim, groups,
                                        1e-6, mode)
    y_new.backward(grad)

    assert torch.equal(y_new, y_ref)
    assert torch.allclose(x_new.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(alpha_new.grad, alpha_ref.grad, atol=1e-5)
    assert x_new.grad.stride() == x.stride()


def test_normalized_q2t_keeps_half_dtype():
    x = torch.randn(2, 4, 3, 3).to(torch.bfloat16).requires_grad_()
    alpha = torch.full((4, ), 0.5, requires_grad=True)
    y = NormalizedQ2TFunction.apply(x, alpha, torch.full((4, ), 2.), 1, 1,
                                    1e-6, 'paper')
    y.sum().backward()
    assert y.dtype == torch.bfloat16
    assert x.grad.dtype == torch.bfloat16
    assert alpha.grad.dtype == torch.float32


@pytest.mark.parametrize('alpha_shape, grad_scale, match', [
    ((3, ), 'paper', 'must both have shape'),
    ((4, ), 'other', 'invalid grad_scale'),
])
def test_normalized_q2t_rejects_bad_arguments(alpha_shape, grad_scale,
                                              match):
    with pytest.raises(ValueError, match=match):
        NormalizedQ2TFunction.apply(
            torch.randn(2, 4, 3), torch.ones(alpha_shape), torch.ones(4), 1,
            1, 1e-6, grad_scale)


def test_token_rms_matches_rms_normalize():
    x = torch.randn(3, 8, 4, 5) * 2
    _, expected = rms_normalize(x, dim=1, groups=2)
    assert torch.allclose(token_rms(x, dim=1, groups=2), expected)


def test_quantizer_training_matches_chained_autograd():
    torch.manual_seed(5)
    quantizer = Q2TQuantizer(6, dim=1, groups=2)
    quantizer.alpha.data = torch.rand(6) * 0.5 + 0.3
    quantizer.radius[:3] = 1
    quantizer.initialized.fill_(1)
    x = (torch.randn(2, 6, 4, 4) * 2).requires_grad_()
    grad = torch.randn(2, 6, 4, 4)
    quantizer(x).backward(grad)

    x_ref = x.detach().clone().requires_grad_()
    alpha_ref = quantizer.alpha.detach().clone().requires_grad_()
    _chained_q2t(x_ref, alpha_ref, quantizer.radius.float(), 1, 2,
                 'paper').backward(grad)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(quantizer.alpha.grad, alpha_ref.grad, atol=1e-5)


def test_normalized_q2t_drop_is_three_minus_five():
    torch.manual_seed(6)
    x = torch.randn(3, 4, 5) * 3
    alpha = torch.tensor([0.4, 0.6, 0.8, 1.0])
    radius = torch.tensor([1., 2., 1., 2.])
    y, drop = NormalizedQ2TFunction.apply(x, alpha, radius, 1, 1, 1e-6,
                                          'paper', True)

    x_bar, rms = rms_normalize(x, dim=1)
    u = x_bar / alpha.view(1, 4, 1)
    step = alpha.view(1, 4, 1) * rms.squeeze(1)
    five = u.round().clamp(-2, 2) * step
    three = u.round().clamp(-1, 1) * step
    assert torch.allclose(drop, three - five, atol=1e-6)
    assert not drop.requires_grad
    assert torch.equal(
        y, NormalizedQ2TFunction.apply(x, alpha, radius, 1, 1, 1e-6, 'paper'))
