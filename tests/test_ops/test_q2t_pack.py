# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the fused Q2T quantize-and-pack op."""
import pytest
import torch

import mmtvmamba.ops as ops
from mmtvmamba.ops import q2t_pack, q2t_pack_reference
from mmtvmamba.quantization.functional import q2t_codes, rms_normalize

HAS_EXT = ops.extension_available()

# (batch, channels, length, positions): padding inside and after words,
# partial 16-token groups, and groups that span two images.
CASES = [(1, 1, 1, 1), (1, 5, 7, 33), (2, 96, 49, 96), (3, 40, 100, 70),
         (2, 300, 20, 320)]


def random_layout(channels, positions, seed):
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, channels + 1, (positions, ), generator=generator)
    alpha = torch.rand(positions, generator=generator) + 0.3
    return index, alpha


@pytest.mark.parametrize('batch, channels, length, positions', CASES)
@pytest.mark.parametrize('radius', [1, 2])
@pytest.mark.parametrize('channels_last', [False, True])
def test_q2t_pack_matches_reference(isa, batch, channels, length, positions,
                                    radius, channels_last):
    x = torch.randn(batch, channels, length) * 3
    if channels_last:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    index, alpha = random_layout(channels, positions, seed=positions)

    packed, rms = q2t_pack(x, index, alpha, radius, 1e-6)
    expected_packed, expected_rms = q2t_pack_reference(
        x, index, alpha, radius, 1e-6)

    assert torch.equal(packed, expected_packed)
    torch.testing.assert_close(rms, expected_rms)


@pytest.mark.parametrize('batch, channels, length, positions', CASES)
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('with_bias', [False, True])
def test_q2t_pack_fused_norm_matches_reference(isa, batch, channels, length,
                                               positions, channels_last,
                                               with_bias):
    generator = torch.Generator().manual_seed(channels)
    x = torch.randn(batch, channels, length, generator=generator) * 3 + 1
    if channels_last:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    weight = torch.randn(channels, generator=generator)
    bias = torch.randn(channels, generator=generator) if with_bias else None
    index, alpha = random_layout(channels, positions, seed=positions)

    packed, rms = q2t_pack(x, index, alpha, 2, 1e-6, weight, bias, 1e-5)
    expected_packed, expected_rms = q2t_pack_reference(
        x, index, alpha, 2, 1e-6, weight, bias, 1e-5)

    assert torch.equal(packed, expected_packed)
    torch.testing.assert_close(rms, expected_rms)


def permutation_layout(channels, positions, seed):
    """Return a layout that uses every channel once, as deployed
    projections do, with padding positions spread among them."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.full((positions, ), channels)
    slots = torch.randperm(positions, generator=generator)[:channels]
    index[slots] = torch.randperm(channels, generator=generator)
    alpha = torch.rand(positions, generator=generator) + 0.3
    return index, alpha


# Channel counts around the 64-channel code blocks and 128-channel permute
# tables, with positions that leave padding and a partial last word.
PERMUTE_CASES = [(1, 1), (63, 64), (64, 64), (65, 96), (128, 160),
                 (129, 192), (300, 333), (1536, 1536)]


@pytest.mark.parametrize('channels, positions', PERMUTE_CASES)
@pytest.mark.parametrize('radius', [1, 2])
@pytest.mark.parametrize('with_norm', [False, True])
def test_q2t_pack_permutation_layout(isa, channels, positions, radius,
                                     with_norm):
    x = torch.randn(2, 20, channels).transpose(1, 2) * 3
    index, alpha = permutation_layout(channels, positions, seed=channels)
    norm = (torch.randn(channels), torch.randn(channels),
            1e-5) if with_norm else ()

    packed, rms = q2t_pack(x, index, alpha, radius, 1e-6, *norm)
    expected_packed, expected_rms = q2t_pack_reference(
        x, index, alpha, radius, 1e-6, *norm)

    assert torch.equal(packed, expected_packed)
    torch.testing.assert_close(rms, expected_rms)


def test_q2t_pack_fused_norm_equals_layer_norm_first():
    x = torch.randn(2, 48, 30)
    norm = torch.nn.LayerNorm(48)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    index, alpha = random_layout(48, 64, seed=5)

    with torch.no_grad():
        normed = norm(x.transpose(1, 2)).transpose(1, 2)
        fused = q2t_pack(x, index, alpha, 1, 1e-6, norm.weight, norm.bias,
                         norm.eps)
    separate = q2t_pack(normed, index, alpha, 1, 1e-6)

    assert torch.equal(fused[0], separate[0])
    torch.testing.assert_close(fused[1], separate[1])


def test_q2t_pack_codes_follow_quantizer():
    x = torch.randn(2, 24, 10) * 2
    alpha = torch.rand(24) + 0.5
    index = torch.arange(24)

    packed, rms = q2t_pack(x, index, alpha, 2, 1e-6)

    x_bar, expected_rms = rms_normalize(x, dim=1, eps=1e-6)
    codes = q2t_codes(x_bar / alpha.view(1, -1, 1), torch.tensor(2.0))
    expected = codes.to(torch.int8).permute(0, 2, 1).reshape(-1, 24)
    assert torch.equal(ops.unpack_quinary(packed, 24), expected)
    torch.testing.assert_close(rms, expected_rms.view(-1))


def test_q2t_pack_rounds_half_to_even():
    # Tokens of RMS 1 put u = x / alpha exactly on .5 boundaries.
    x = torch.tensor([[[0.5], [1.5], [-0.5], [-2.5], [1.0]]])
    x = x / x.pow(2).mean().sqrt()
    rms = x.pow(2).mean().add(1e-6).sqrt()
    alpha = (x.view(-1) / rms) / torch.tensor([0.5, 1.5, -0.5, -2.5, 1.0])

    packed, _ = q2t_pack(x, torch.arange(5), alpha, 2, 1e-6)

    assert ops.unpack_quinary(packed, 5).tolist() == [[0, 2, 0, -2, 1]]


def test_q2t_pack_rejects_bad_input():
    x = torch.randn(1, 4, 3)
    index, alpha = torch.arange(4), torch.ones(4)
    with pytest.raises((TypeError, ValueError, RuntimeError),
                       match='radius must be 1'):
        q2t_pack(x, index, alpha, 3, 1e-6)
    if HAS_EXT:
        with pytest.raises(ValueError, match=r'index values must be in'):
            q2t_pack(x, torch.tensor([0, 5]), torch.ones(2), 1, 1e-6)
        with pytest.raises(TypeError, match='x must be float32'):
            q2t_pack(x.double(), index, alpha, 1, 1e-6)
        with pytest.raises(ValueError, match=r'norm_weight and norm_bias '
                           r'must be float32 CPU tensors of shape \(4\)'):
            q2t_pack(x, index, alpha, 1, 1e-6, torch.ones(3))
    with pytest.raises(ValueError, match='norm_bias needs norm_weight'):
        q2t_pack(x, index, alpha, 1, 1e-6, None, torch.zeros(4))


def test_q2t_pack_opcheck():
    if not HAS_EXT:
        pytest.skip('mmtvmamba._ext is not built')
    x = torch.randn(2, 40, 9)
    index, alpha = random_layout(40, 64, seed=3)
    torch.library.opcheck(torch.ops.mmtvmamba.q2t_pack.default,
                          (x, index, alpha, 2, 1e-6))
    torch.library.opcheck(torch.ops.mmtvmamba.q2t_pack.default,
                          (x, index, alpha, 1, 1e-6, torch.rand(40),
                           torch.rand(40), 1e-5))
