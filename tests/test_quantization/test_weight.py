# Copyright (c) mmtvmamba contributors. All rights reserved.
import pytest
import torch

from mmtvmamba.quantization import (TernaryWeightSTE, absmean_scale,
                                    ternarize_weight)


def test_absmean_scale_value():
    weight = torch.tensor([[1.0, -2.0], [0.5, -0.5]])
    assert absmean_scale(weight).item() == 1.0


def test_absmean_scale_floor_on_zero_weight():
    weight = torch.zeros(3, 4)
    assert absmean_scale(weight, eps=1e-5).item() == pytest.approx(1e-5)


def test_ternarize_codes_and_rounding():
    # scale = mean(|W|) = 1.0, so codes are round(W) clipped to [-1, 1].
    weight = torch.tensor([0.4, 0.6, -0.6, 3.0, -3.0, 0.0, 1.5, -0.5])
    weight = weight * (1.0 / weight.abs().mean())
    codes, scale = ternarize_weight(weight)
    expected = torch.clamp(torch.round(weight / scale), -1, 1)
    assert torch.equal(codes, expected)
    assert set(codes.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_ternarize_exact_half_rounds_to_even():
    weight = torch.tensor([0.5, -0.5, 1.5, -1.5])  # mean |W| = 1
    codes, scale = ternarize_weight(weight)
    assert scale.item() == 1.0
    assert codes.tolist() == [0.0, 0.0, 1.0, -1.0]


def test_ternary_weight_ste_forward():
    weight = torch.randn(16, 8)
    codes, scale = ternarize_weight(weight)
    assert torch.equal(TernaryWeightSTE.apply(weight, 1e-5), codes * scale)


def test_ternary_weight_ste_gradient_is_identity():
    weight = torch.randn(16, 8, requires_grad=True)
    grad = torch.randn(16, 8)
    TernaryWeightSTE.apply(weight, 1e-5).backward(grad)
    assert torch.equal(weight.grad, grad)
