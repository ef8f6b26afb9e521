# Copyright (c) mmtvmamba contributors. All rights reserved.
import math

import pytest
import torch

from mmtvmamba.quantization import channel_errors, ctrl_loss


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
