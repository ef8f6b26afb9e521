# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the fused quantize, pack and matmul op q2t_linear."""
import pytest
import torch

import mmtvmamba.ops as ops
from mmtvmamba.ops import (q2t_linear, q2t_linear_reference,
                           q2t_pack_reference)
from mmtvmamba.ops import ternary_reference as reference

HAS_EXT = ops.extension_available()
requires_ext = pytest.mark.skipif(
    not HAS_EXT, reason='mmtvmamba._ext is not built')

# Tokens as (batch, length): M = 1, 15, 17 and 49, with 16-token groups
# that span two images.
TOKENS = [(1, 1), (3, 5), (1, 17), (7, 7)]
POSITIONS = [1, 63, 96, 100]

# (batch, length, channels, positions, N): calls large enough to run in
# parallel tasks. M = 12 splits the columns as well as the rows. M = 49,
# 200 and 1000 split the rows only, at 2 threads into blocks of 8, 28 and
# 64 tokens that do not start at 16-token group bounds. N = 100 ends in a
# partial weight group.
LARGE = [(3, 4, 1000, 1024, 1000), (1, 49, 768, 768, 768),
         (4, 50, 90, 100, 1400), (2, 500, 96, 96, 100)]


def make_layout(channels, positions, permutation, generator):
    """Return index and alpha of ``positions`` kernel positions.

    A permutation layout uses each channel once and pads the rest, so the
    AVX-512 pack takes its byte-permute path. The other layout repeats
    channels and pads at random positions.
    """
    if permutation:
        used = min(channels, positions)
        index = torch.cat([
            torch.randperm(channels, generator=generator)[:used],
            torch.full((positions - used, ), channels)
        ])
    else:
        index = torch.randint(0, channels + 1, (positions, ),
                              generator=generator)
    alpha = torch.rand(positions, generator=generator) + 0.3
    return index, alpha


def make_call(batch, length, channels, positions, n, radius, options,
              seed=0):
    """Return the positional arguments of one q2t_linear call.

    ``options`` is a set of: ``'channels_last'`` (x with channel stride
    1), ``'permutation'``, ``'norm'``, ``'residual'`` (a transposed,
    strided residual), ``'gelu'``, ``'k_scale'`` (two scale runs),
    ``'column_scale'`` (one weight scale per column) and ``'bias'``.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, length, generator=generator) * 3
    if 'channels_last' in options:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    index, alpha = make_layout(channels, positions, 'permutation' in options,
                               generator)
    codes = torch.randint(-1, 2, (n, positions), dtype=torch.int8,
                          generator=generator)
    w_packed = ops.pack_ternary(codes)

    words = (positions + 31) // 32
    col_scale = (torch.rand(n, generator=generator) + 0.5
                 if 'column_scale' in options else torch.tensor([0.7]))
    bias = (torch.randn(n, generator=generator)
            if 'bias' in options else None)
    k_scale = None
    if 'k_scale' in options:
        first = (words + 1) // 2
        k_scale = torch.cat([
            torch.full((first, ), 0.8),
            torch.full((words - first, ), 1.3)
        ])
    residual = None
    if 'residual' in options:
        residual = torch.randn(n, batch * length, generator=generator).t()
    activation = 'gelu' if 'gelu' in options else 'none'
    norm = (None, None)
    if 'norm' in options:
        norm = (torch.rand(channels, generator=generator) + 0.5,
                torch.randn(channels, generator=generator))
    return (x, index, alpha, radius, 1e-6, w_packed, col_scale, bias,
            k_scale, residual, activation, norm[0], norm[1], 1e-5)


def unfused(args):
    """Compute a q2t_linear call with the C++ q2t_pack and matmul ops."""
    (x, index, alpha, radius, eps, w_packed, col_scale, bias, k_scale,
     residual, activation, norm_weight, norm_bias, norm_eps) = args
    cpp = torch.ops.mmtvmamba
    packed, rms = cpp.q2t_pack(x, index, alpha, radius, eps, norm_weight,
                               norm_bias, norm_eps)
    matmul = cpp.quinary_mm if radius == 2 else cpp.ternary_mm
    return matmul(packed, w_packed, index.numel(), rms, col_scale, bias,
                  k_scale, residual, activation)


# Option sets of the bit-equality tests: the plain call, every epilogue
# step at once, and the fused LayerNorm on both pack paths.
OPTION_SETS = [
    set(),
    {'channels_last', 'permutation', 'residual', 'gelu', 'k_scale',
     'column_scale', 'bias'},
    {'norm', 'permutation', 'k_scale', 'bias'},
    {'norm', 'residual', 'gelu'},
]


@pytest.mark.parametrize('batch, length', TOKENS)
@pytest.mark.parametrize('positions', POSITIONS)
@pytest.mark.parametrize('radius', [1, 2])
def test_q2t_linear_equals_unfused_ops(isa, threads, batch, length,
                                       positions, radius):
    channels = max(1, positions - 4)
    for options in OPTION_SETS:
        args = make_call(batch, length, channels, positions, 40, radius,
                         options, seed=positions + radius)
        fused = q2t_linear(*args)
        assert fused.shape == (batch * length, 40), sorted(options)
        assert torch.equal(fused, unfused(args)), sorted(options)


@pytest.mark.parametrize('batch, length, channels, positions, n', LARGE)
@pytest.mark.parametrize('radius', [1, 2])
def test_q2t_linear_parallel_equals_unfused_ops(isa, threads, batch, length,
                                                channels, positions, n,
                                                radius):
    for options in OPTION_SETS:
        args = make_call(batch, length, channels, positions, n, radius,
                         options, seed=n)
        assert torch.equal(q2t_linear(*args), unfused(args)), sorted(options)


@pytest.mark.parametrize('batch, length', TOKENS + [(4, 50)])
@pytest.mark.parametrize('positions', POSITIONS)
@pytest.mark.parametrize('radius', [1, 2])
def test_q2t_linear_exact_against_reference(isa, batch, length, positions,
                                            radius):
    # Without scales, bias and epilogue, each output is the exact integer
    # product times the token RMS, rounded once.
    channels = max(1, positions - 4)
    args = make_call(batch, length, channels, positions, 40, radius,
                     {'channels_last'}, seed=positions)
    x, index, alpha, _, eps, w_packed = args[:6]
    packed, _ = q2t_pack_reference(x, index, alpha, radius, eps)
    matmul_int = (reference.quinary_mm_int if radius == 2 else
                  reference.ternary_mm_int)
    products = matmul_int(packed, w_packed, positions)
    _, rms = ops.q2t_pack(x, index, alpha, radius, eps)

    out = q2t_linear(x, index, alpha, radius, eps, w_packed,
                     torch.ones(1))

    assert torch.equal(out, products.float() * rms.view(-1, 1))


@pytest.mark.parametrize('radius', [1, 2])
def test_q2t_linear_reference_matches_op(radius):
    options = {'norm', 'residual', 'gelu', 'k_scale', 'bias'}
    args = make_call(4, 50, 90, 100, 70, radius, options, seed=5)
    expected = q2t_linear_reference(*args)
    torch.testing.assert_close(q2t_linear(*args), expected, rtol=1e-4,
                               atol=1e-4)


def test_q2t_linear_rejects_bad_input():
    args = list(make_call(1, 5, 90, 100, 40, 1, {'bias'}))
    bad_radius = args.copy()
    bad_radius[3] = 3
    with pytest.raises(ValueError, match='radius must be 1'):
        q2t_linear(*bad_radius)
    with pytest.raises(ValueError, match='radius must be 1'):
        q2t_linear_reference(*bad_radius)
    bad_norm = args.copy()
    bad_norm[12] = torch.zeros(90)
    with pytest.raises(ValueError, match='norm_bias needs norm_weight'):
        q2t_linear(*bad_norm)
    if not HAS_EXT:
        return

    narrow = args.copy()
    narrow[5] = ops.pack_ternary(torch.zeros(40, 64, dtype=torch.int8))
    with pytest.raises(ValueError,
                       match=r'w_packed has 4 words per row, but index has '
                       r'100 positions, which need 8 .*pack_ternary'):
        q2t_linear(*narrow)
    bad_bias = args.copy()
    bad_bias[7] = torch.zeros(39)
    with pytest.raises(ValueError,
                       match=r'q2t_linear: bias must have shape \(40\), '
                       r'but got shape \[39\]'):
        q2t_linear(*bad_bias)
    bad_k_scale = args.copy()
    bad_k_scale[8] = torch.ones(3)
    with pytest.raises(ValueError,
                       match=r'k_scale must have shape \(4\)'):
        q2t_linear(*bad_k_scale)
    bad_residual = args.copy()
    bad_residual[9] = torch.zeros(4, 40)
    with pytest.raises(ValueError,
                       match=r'residual must have the output shape '
                       r'\(5, 40\)'):
        q2t_linear(*bad_residual)
    bad_activation = args.copy()
    bad_activation[10] = 'relu'
    with pytest.raises(ValueError, match="invalid activation 'relu'"):
        q2t_linear(*bad_activation)
    bad_index = args.copy()
    bad_index[1] = torch.full((100, ), 91)
    with pytest.raises(ValueError,
                       match=r'q2t_linear: index values must be in '
                       r'\[0, 90\]'):
        q2t_linear(*bad_index)
    double_x = args.copy()
    double_x[0] = args[0].double()
    with pytest.raises(TypeError, match='q2t_linear: x must be float32'):
        q2t_linear(*double_x)


@requires_ext
@pytest.mark.parametrize('radius', [1, 2])
def test_q2t_linear_opcheck(radius):
    op = torch.ops.mmtvmamba.q2t_linear.default
    plain = make_call(2, 9, 40, 64, 24, radius, set(), seed=7)
    torch.library.opcheck(op, plain)
    options = {'norm', 'residual', 'gelu', 'k_scale', 'bias', 'permutation'}
    torch.library.opcheck(
        op, make_call(2, 9, 40, 64, 24, radius, options, seed=8))
