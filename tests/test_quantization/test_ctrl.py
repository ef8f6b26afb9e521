# Copyright (c) mmtvmamba contributors. All rights reserved.
import math

import pytest
import torch

from mmtvmamba.quantization import channel_errors, ctrl_loss, topk_mean


def _direct_ctrl(x_hat, x, ratio):
    """CTRL written out with loops: per channel, per image of the batch."""
    batch, channels = x.shape[:2]
    total = 0.0
    for c in range(channels):
        errors = sorted(
            (float(((x_hat[i, c] - x[i, c])**2).sum()) for i in range(batch)),
            reverse=True)
        k = max(1, math.ceil(ratio * batch))
        total += sum(errors[:k]) / k
    return total


@pytest.mark.parametrize('ratio', [0.1, 0.5, 1.0])
def test_ctrl_matches_direct_formula(ratio):
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3, 5)
    x_hat = x + 0.3 * torch.randn_like(x)
    loss = ctrl_loss([channel_errors(x_hat, x, dim=1)], ratio)
    assert loss.item() == pytest.approx(_direct_ctrl(x_hat, x, ratio),
                                        rel=1e-5)


def test_ctrl_sums_layers():
    torch.manual_seed(0)
    x1, x2 = torch.randn(4, 3, 2, 2), torch.randn(4, 5, 6)
    e1 = channel_errors(x1 + 0.1, x1, dim=1)
    e2 = channel_errors(x2 * 1.1, x2, dim=1)
    expected = ctrl_loss([e1], 0.5) + ctrl_loss([e2], 0.5)
    assert torch.allclose(ctrl_loss([e1, e2], 0.5), expected)


def test_channel_errors_token_unit_shape():
    x = torch.randn(2, 3, 4, 5)
    errors = channel_errors(x + 1.0, x, dim=1, unit='token')
    assert errors.shape == (3, 40)
    assert torch.allclose(errors, torch.ones(3, 40))


def test_channel_errors_half_inputs_get_half_grads():
    # Multiples of 1/4 below 8 and their sums with 0.5 are exact in bfloat16.
    x = (torch.arange(24.).view(2, 3, 4) / 4).to(torch.bfloat16)
    x_hat = (x + 0.5).requires_grad_()
    x.requires_grad_()
    errors = channel_errors(x_hat, x, dim=1, unit='token')
    errors.sum().backward()
    assert errors.dtype == torch.float32
    assert x_hat.grad.dtype == torch.bfloat16
    assert x.grad.dtype == torch.bfloat16
    assert torch.allclose(x_hat.grad.float(), torch.ones(2, 3, 4))
    assert torch.allclose(x.grad.float(), -torch.ones(2, 3, 4))


def test_channel_errors_image_unit_channel_last():
    x = torch.randn(2, 7, 3)
    errors = channel_errors(x + 1.0, x, dim=-1)
    assert errors.shape == (3, 2)
    assert torch.allclose(errors, torch.full((3, 2), 7.0))


@pytest.mark.parametrize('kwargs, match', [
    (dict(unit='pixel'), 'invalid CTRL unit'),
    (dict(dim=0), 'batch axis'),
])
def test_channel_errors_rejects_bad_arguments(kwargs, match):
    args = dict(dim=1)
    args.update(kwargs)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=match):
        channel_errors(x, x, **args)


@pytest.mark.parametrize('ratio', [0.01, 0.1, 0.5, 1.0])
def test_topk_mean_matches_torch_topk(ratio):
    torch.manual_seed(1)
    values = torch.randn(5, 40, dtype=torch.double, requires_grad=True)
    k = max(1, math.ceil(ratio * 40))
    expected = values.topk(k, dim=1).values.mean(1)
    weights = torch.randn(5, dtype=torch.double)
    expected_grad, = torch.autograd.grad(expected, values, weights)

    result = topk_mean(values, ratio)
    grad, = torch.autograd.grad(result, values, weights)
    assert torch.allclose(result, expected)
    assert torch.equal(grad, expected_grad)


def test_topk_mean_ties_share_weight():
    values = torch.tensor([[3., 1., 1., 1., 0.], [2., 2., 2., 2., 2.]],
                          requires_grad=True)
    result = topk_mean(values, 0.4)
    result.sum().backward()
    assert result.tolist() == [2.0, 2.0]
    expected = torch.tensor([[1 / 2, 1 / 6, 1 / 6, 1 / 6, 0.],
                             [1 / 5, 1 / 5, 1 / 5, 1 / 5, 1 / 5]])
    assert torch.allclose(values.grad, expected)


def test_topk_mean_gradient_keeps_layout():
    x = torch.randn(4, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    squared = x.pow(2).requires_grad_()
    errors = squared.movedim(1, 0).reshape(6, -1)
    topk_mean(errors, 0.1).sum().backward()
    assert squared.grad.stride() == x.stride()


@pytest.mark.parametrize('unit', ['image', 'token'])
def test_ctrl_gradient_matches_direct_formula(unit):
    torch.manual_seed(2)
    x = torch.randn(4, 3, 5, 5).requires_grad_()
    x_hat = (x.detach() + 0.3 * torch.randn(4, 3, 5, 5)).requires_grad_()
    ctrl_loss([channel_errors(x_hat, x, dim=1, unit=unit)], 0.2).backward()

    x_ref = x.detach().clone().requires_grad_()
    x_hat_ref = x_hat.detach().clone().requires_grad_()
    squared = (x_hat_ref - x_ref).pow(2).transpose(0, 1)
    if unit == 'image':
        errors = squared.flatten(2).sum(2)
    else:
        errors = squared.flatten(1)
    k = math.ceil(0.2 * errors.shape[1])
    errors.topk(k, dim=1).values.mean(1).sum().backward()
    assert torch.allclose(x_hat.grad, x_hat_ref.grad)
    assert torch.allclose(x.grad, x_ref.grad)


@pytest.mark.parametrize('kwargs, match', [
    (dict(values=torch.zeros(3), ratio=0.5), r'\(C, N\) matrix'),
    (dict(values=torch.zeros(2, 3), ratio=0.0), r'must be in \(0, 1\]'),
    (dict(values=torch.zeros(2, 3), ratio=0.5, rows=torch.tensor([0.5])),
     'rows must be a 1-D integer tensor'),
])
def test_topk_mean_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        topk_mean(**kwargs)


def test_topk_mean_rows_match_selected_rows():
    torch.manual_seed(3)
    values = torch.randn(6, 30, dtype=torch.double, requires_grad=True)
    rows = torch.tensor([4, 1, 3])
    weights = torch.randn(3, dtype=torch.double)
    result = topk_mean(values, 0.2, rows)
    grad, = torch.autograd.grad(result, values, weights)

    expected = values[rows].topk(6, dim=1).values.mean(1)
    expected_grad, = torch.autograd.grad(expected, values, weights)
    assert torch.allclose(result, expected)
    assert torch.equal(grad, expected_grad)
    assert grad[[0, 2, 5]].abs().sum() == 0


def test_topk_mean_rows_with_ties():
    values = torch.tensor([[5., 4., 3.], [1., 1., 1.], [2., 0., 2.]],
                          requires_grad=True)
    result = topk_mean(values, 0.5, torch.tensor([1, 2]))
    result.sum().backward()
    assert result.tolist() == [1.0, 2.0]
    expected = torch.tensor([[0., 0., 0.], [1 / 3, 1 / 3, 1 / 3],
                             [1 / 2, 0., 1 / 2]])
    assert torch.allclose(values.grad, expected)


def test_ctrl_full_channel_ratio_is_exact():
    torch.manual_seed(4)
    errors = torch.rand(5, 40)
    exact = ctrl_loss([errors], 0.1)
    # ceil(0.9 * 5) = 5, so every channel is drawn.
    assert torch.equal(ctrl_loss([errors], 0.1, channel_ratio=0.9), exact)


def test_ctrl_channel_sampling_is_unbiased():
    torch.manual_seed(5)
    scale = torch.arange(1., 9.)[:, None]
    errors = (torch.rand(8, 50) * scale).requires_grad_()
    exact = ctrl_loss([errors], 0.1)
    exact_grad, = torch.autograd.grad(exact, errors)

    draws = 4000
    estimates = torch.zeros(draws)
    grad_sum = torch.zeros_like(errors)
    for i in range(draws):
        estimate = ctrl_loss([errors], 0.1, channel_ratio=0.25)
        grad, = torch.autograd.grad(estimate, errors)
        estimates[i] = estimate.detach()
        grad_sum += grad
    # Two channels of eight per draw: every estimate differs from the exact
    # loss, but their mean converges to it.
    assert not torch.any(estimates == exact.detach())
    standard_error = estimates.std() / math.sqrt(draws)
    assert abs(estimates.mean() - exact.detach()) < 4 * standard_error
    # A top-5 entry gets 4 / 5 with probability 1 / 4 in a draw, else 0.
    grad_error = 0.8 * math.sqrt(0.25 * 0.75 / draws)
    assert torch.allclose(grad_sum / draws, exact_grad, atol=5 * grad_error)


@pytest.mark.parametrize('ratio', [0.0, 1.5])
def test_ctrl_rejects_bad_channel_ratio(ratio):
    with pytest.raises(ValueError, match='channel_ratio'):
        ctrl_loss([torch.rand(2, 4)], 0.5, channel_ratio=ratio)
