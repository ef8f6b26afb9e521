# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the bitwise ternary matmul ops and their PyTorch reference."""
import builtins
import functools
import os
import subprocess
import sys

import pytest
import torch

import mmtvmamba.ops as ops
from mmtvmamba.ops import extension
from mmtvmamba.ops import ternary_reference as reference

HAS_EXT = ops.extension_available()
requires_ext = pytest.mark.skipif(
    not HAS_EXT, reason='mmtvmamba._ext is not built')

# (M, N, K): K tails around the 32-bit word, M or N of 1, partial 16-row
# groups, and sizes large enough to run on several threads and blocks.
SHAPES = [
    (1, 1, 1),
    (3, 5, 63),
    (16, 48, 64),
    (17, 1, 65),
    (1, 50, 96),
    (33, 70, 100),
    (70, 131, 1000),
    (100, 200, 1000),
]


def random_codes(rows, k, low=-1, high=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        low, high + 1, (rows, k), dtype=torch.int8, generator=generator)


def exact_product(a, w):
    """Return a @ w.T of int8 codes computed in int64."""
    return (a.to(torch.int64) @ w.to(torch.int64).T).to(torch.int32)


def cpp_ops():
    return torch.ops.mmtvmamba


@pytest.fixture(params=['cpp', 'reference'])
def impl(request):
    """Yield the C++ op namespace or the reference module."""
    if request.param == 'reference':
        yield reference
        return
    if not HAS_EXT:
        pytest.skip('mmtvmamba._ext is not built')
    yield cpp_ops()


@pytest.mark.parametrize('m, n, k', SHAPES)
def test_ternary_mm_int_exact(isa, threads, m, n, k):
    a = random_codes(m, k, seed=1)
    w = random_codes(n, k, seed=2)
    packed_a = ops.pack_ternary(a)
    packed_w = ops.pack_ternary(w)

    out = ops.ternary_mm_int(packed_a, packed_w, k)

    assert out.dtype == torch.int32
    assert out.shape == (m, n)
    assert torch.equal(out, exact_product(a, w))


@pytest.mark.parametrize('m, n, k', SHAPES)
def test_quinary_mm_int_exact(isa, threads, m, n, k):
    a = random_codes(m, k, low=-2, high=2, seed=3)
    w = random_codes(n, k, seed=4)

    out = ops.quinary_mm_int(ops.pack_quinary(a), ops.pack_ternary(w), k)

    assert out.dtype == torch.int32
    assert torch.equal(out, exact_product(a, w))


@pytest.mark.parametrize('value', [-1, 0, 1])
def test_ternary_mm_int_constant_extremes(isa, value):
    k = 1000
    a = torch.full((20, k), value, dtype=torch.int8)
    w = torch.full((18, k), value, dtype=torch.int8)
    w[1::2] = -value

    out = ops.ternary_mm_int(ops.pack_ternary(a), ops.pack_ternary(w), k)

    assert torch.equal(out[:, 0::2], torch.full((20, 9), value * value * k))
    assert torch.equal(out[:, 1::2], torch.full((20, 9), -value * value * k))


def test_quinary_mm_int_extremes(isa):
    k = 999
    a = torch.tensor([[2], [-2]], dtype=torch.int8).repeat(1, k)
    w = torch.ones(3, k, dtype=torch.int8)

    out = ops.quinary_mm_int(ops.pack_quinary(a), ops.pack_ternary(w), k)

    assert torch.equal(out[0], torch.full((3, ), 2 * k, dtype=torch.int32))
    assert torch.equal(out[1], torch.full((3, ), -2 * k, dtype=torch.int32))


@pytest.mark.parametrize('quinary', [False, True])
def test_isa_paths_match_portable(isa, quinary):
    m, n, k = 45, 83, 333
    low = -2 if quinary else -1
    a = random_codes(m, k, low=low, high=-low, seed=5)
    w = random_codes(n, k, seed=6)
    pack = ops.pack_quinary if quinary else ops.pack_ternary
    matmul = ops.quinary_mm if quinary else ops.ternary_mm
    matmul_int = ops.quinary_mm_int if quinary else ops.ternary_mm_int
    row_scale = torch.rand(m) + 0.5
    col_scale = torch.rand(n) + 0.5
    bias = torch.randn(n)

    packed_a, packed_w = pack(a), ops.pack_ternary(w)
    out_int = matmul_int(packed_a, packed_w, k)
    out = matmul(packed_a, packed_w, k, row_scale, col_scale, bias)
    ops.set_isa('portable')
    expected_packed_a = pack(a)
    expected_int = matmul_int(packed_a, packed_w, k)
    expected = matmul(packed_a, packed_w, k, row_scale, col_scale, bias)

    assert torch.equal(packed_a, expected_packed_a)
    assert torch.equal(out_int, expected_int)
    # SIMD paths use a fused multiply-add in the epilogue.
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize('per_column', [False, True])
@pytest.mark.parametrize('with_row_scale', [False, True])
@pytest.mark.parametrize('with_bias', [False, True])
def test_ternary_mm_float_epilogue(isa, per_column, with_row_scale, with_bias):
    m, n, k = 37, 50, 96
    a = random_codes(m, k, seed=7)
    w = random_codes(n, k, seed=8)
    col_scale = torch.rand(n if per_column else 1) + 0.1
    row_scale = torch.rand(m) + 0.1 if with_row_scale else None
    bias = torch.randn(n) if with_bias else None

    out = ops.ternary_mm(
        ops.pack_ternary(a), ops.pack_ternary(w), k, row_scale, col_scale,
        bias)

    expected = exact_product(a, w).double() * col_scale.double()
    if row_scale is not None:
        expected = expected * row_scale.double().view(-1, 1)
    if bias is not None:
        expected = expected + bias.double()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-5)


def test_quinary_mm_float_epilogue(isa):
    m, n, k = 19, 33, 65
    a = random_codes(m, k, low=-2, high=2, seed=9)
    w = random_codes(n, k, seed=10)
    row_scale = torch.rand(m) + 0.1
    col_scale = torch.rand(1) + 0.1
    bias = torch.randn(n)

    out = ops.quinary_mm(
        ops.pack_quinary(a), ops.pack_ternary(w), k, row_scale, col_scale,
        bias)

    expected = (
        exact_product(a, w).double() * row_scale.double().view(-1, 1) *
        col_scale.double() + bias.double())
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize('rows, k', [(1, 1), (15, 63), (16, 64), (17, 65),
                                     (40, 100), (33, 1000)])
def test_pack_matches_reference(isa, rows, k):
    codes = random_codes(rows, k, seed=11)
    codes5 = random_codes(rows, k, low=-2, high=2, seed=12)

    packed = ops.pack_ternary(codes)
    packed5 = ops.pack_quinary(codes5)

    assert packed.shape == (rows, 2 * ((k + 31) // 32))
    assert packed5.shape == (rows, 4 * ((k + 31) // 32))
    assert torch.equal(packed, reference.pack_ternary(codes))
    assert torch.equal(packed5, reference.pack_quinary(codes5))


@pytest.mark.parametrize('rows, k', [(1, 1), (17, 65), (33, 1000)])
def test_unpack_roundtrip(impl, rows, k):
    codes = random_codes(rows, k, seed=13)
    codes5 = random_codes(rows, k, low=-2, high=2, seed=14)

    assert torch.equal(impl.unpack_ternary(impl.pack_ternary(codes), k), codes)
    assert torch.equal(
        impl.unpack_quinary(impl.pack_quinary(codes5), k), codes5)


def test_pack_noncontiguous_codes(impl):
    base = random_codes(90, 130, seed=15)
    transposed = base.T
    sliced = base[5:60:2, 3:103]
    assert not transposed.is_contiguous()
    assert not sliced.is_contiguous()

    for codes in (transposed, sliced):
        packed = impl.pack_ternary(codes)
        assert torch.equal(packed, impl.pack_ternary(codes.contiguous()))
        assert torch.equal(impl.unpack_ternary(packed, codes.shape[1]), codes)


def test_ternary_mm_noncontiguous_codes(isa):
    a = random_codes(70, 40, seed=16).T
    w = random_codes(100, 90, seed=17)[::2, 10:80]

    out = ops.ternary_mm_int(ops.pack_ternary(a), ops.pack_ternary(w), 70)

    assert torch.equal(out, exact_product(a, w))


def test_public_api_exact_product():
    """Check the exported functions, which use the reference when the
    extension is not built."""
    m, n, k = 18, 21, 65
    a = random_codes(m, k, seed=29)
    a5 = random_codes(m, k, low=-2, high=2, seed=30)
    w = random_codes(n, k, seed=31)
    packed_w = ops.pack_ternary(w)
    col_scale = torch.full((1, ), 0.5)

    out = ops.ternary_mm_int(ops.pack_ternary(a), packed_w, k)
    out5 = ops.quinary_mm_int(ops.pack_quinary(a5), packed_w, k)
    scaled = ops.ternary_mm(ops.pack_ternary(a), packed_w, k, None, col_scale)

    assert torch.equal(out, exact_product(a, w))
    assert torch.equal(out5, exact_product(a5, w))
    assert torch.equal(scaled, exact_product(a, w).float() * 0.5)
    assert torch.equal(ops.unpack_quinary(ops.pack_quinary(a5), k), a5)
    assert ops.get_isa() in ('avx512', 'avx2', 'portable', 'reference')


@requires_ext
@pytest.mark.parametrize('m, n, k', [(1, 1, 1), (17, 50, 65), (70, 131, 1000)])
def test_reference_matches_extension(m, n, k):
    a = random_codes(m, k, seed=18)
    a5 = random_codes(m, k, low=-2, high=2, seed=19)
    w = random_codes(n, k, seed=20)
    row_scale = torch.rand(m)
    col_scale = torch.rand(n)
    bias = torch.randn(n)
    cpp = cpp_ops()
    packed_a, packed_a5 = cpp.pack_ternary(a), cpp.pack_quinary(a5)
    packed_w = cpp.pack_ternary(w)

    assert torch.equal(
        reference.ternary_mm_int(packed_a, packed_w, k),
        cpp.ternary_mm_int(packed_a, packed_w, k))
    assert torch.equal(
        reference.quinary_mm_int(packed_a5, packed_w, k),
        cpp.quinary_mm_int(packed_a5, packed_w, k))
    torch.testing.assert_close(
        reference.ternary_mm(packed_a, packed_w, k, row_scale, col_scale,
                             bias),
        cpp.ternary_mm(packed_a, packed_w, k, row_scale, col_scale, bias),
        rtol=1e-6,
        atol=1e-5)
    torch.testing.assert_close(
        reference.quinary_mm(packed_a5, packed_w, k, None, col_scale[:1]),
        cpp.quinary_mm(packed_a5, packed_w, k, None, col_scale[:1]),
        rtol=1e-6,
        atol=1e-5)


def test_reference_matches_exact_product():
    m, n, k = 21, 34, 130
    a = random_codes(m, k, seed=21)
    a5 = random_codes(m, k, low=-2, high=2, seed=22)
    w = random_codes(n, k, seed=23)
    packed_w = reference.pack_ternary(w)

    out = reference.ternary_mm_int(reference.pack_ternary(a), packed_w, k)
    out5 = reference.quinary_mm_int(reference.pack_quinary(a5), packed_w, k)

    assert torch.equal(out, exact_product(a, w))
    assert torch.equal(out5, exact_product(a5, w))


@requires_ext
def test_opcheck_registered_ops():
    k = 70
    a = random_codes(20, k, seed=24)
    a5 = random_codes(20, k, low=-2, high=2, seed=25)
    w = random_codes(18, k, seed=26)
    cpp = cpp_ops()
    packed_a, packed_a5 = cpp.pack_ternary(a), cpp.pack_quinary(a5)
    packed_w = cpp.pack_ternary(w)
    row_scale, col_scale, bias = torch.rand(20), torch.rand(18), torch.rand(18)
    cases = [
        (cpp.pack_ternary.default, (a, False)),
        (cpp.pack_quinary.default, (a5, True)),
        (cpp.unpack_ternary.default, (packed_a, k)),
        (cpp.unpack_quinary.default, (packed_a5, k)),
        (cpp.ternary_mm_int.default, (packed_a, packed_w, k)),
        (cpp.quinary_mm_int.default, (packed_a5, packed_w, k)),
        (cpp.ternary_mm.default, (packed_a, packed_w, k, row_scale, col_scale,
                                  bias)),
        (cpp.quinary_mm.default, (packed_a5, packed_w, k, None, col_scale[:1],
                                  None)),
        (cpp.ternary_mm.default, (packed_a, packed_w, k, row_scale, col_scale,
                                  bias, torch.tensor([0.5, 0.5, 2.0]))),
        (cpp.quinary_mm.default,
         (packed_a5, packed_w, k, row_scale, col_scale, bias, None,
          torch.randn(20, 18), 'gelu')),
    ]

    for op, args in cases:
        torch.library.opcheck(op, args)


@requires_ext
def test_compile_traces_ops():
    k = 100
    a = random_codes(24, k, seed=27)
    w = random_codes(40, k, seed=28)
    packed_w = ops.pack_ternary(w)
    col_scale = torch.rand(40)

    def linear(codes):
        packed = torch.ops.mmtvmamba.pack_ternary(codes)
        return torch.ops.mmtvmamba.ternary_mm(packed, packed_w, k, None,
                                              col_scale, None)

    compiled = torch.compile(linear, backend='aot_eager', fullgraph=True)

    torch.testing.assert_close(compiled(a), linear(a), rtol=0, atol=0)


class PackedLinear(torch.nn.Module):
    """Ternary linear layer over int8 activation codes, for export tests."""

    def __init__(self, weight_codes):
        super().__init__()
        self.k = weight_codes.shape[1]
        self.register_buffer('packed_weight', ops.pack_ternary(weight_codes))
        self.register_buffer('col_scale', torch.rand(weight_codes.shape[0]))

    def forward(self, codes, row_scale):
        packed = torch.ops.mmtvmamba.pack_ternary(codes)
        return torch.ops.mmtvmamba.ternary_mm(packed, self.packed_weight,
                                              self.k, row_scale,
                                              self.col_scale, None)


@requires_ext
def test_export_dynamic_rows():
    layer = PackedLinear(random_codes(40, 100, seed=32))
    rows = torch.export.Dim('rows', min=2)
    example = (random_codes(24, 100, seed=33), torch.rand(24))

    exported = torch.export.export(
        layer, example, dynamic_shapes=({
            0: rows
        }, {
            0: rows
        }))

    codes, row_scale = random_codes(37, 100, seed=34), torch.rand(37)
    assert torch.equal(exported.module()(codes, row_scale),
                       layer(codes, row_scale))


@pytest.mark.parametrize('bad, error, match', [
    (torch.zeros(4, 8), TypeError, 'codes must be int8'),
    (torch.zeros(8, dtype=torch.int8), ValueError, 'must be 2-D'),
    (torch.zeros(0, 8, dtype=torch.int8), ValueError, 'must not be empty'),
])
def test_pack_rejects_invalid_codes(impl, bad, error, match):
    with pytest.raises(error, match=match):
        impl.pack_ternary(bad)


def test_pack_check_rejects_out_of_range(impl, monkeypatch):
    codes = torch.zeros(3, 40, dtype=torch.int8)
    codes[1, 7] = 2

    with pytest.raises(ValueError, match=r'codes\[1, 7\] is 2, outside'):
        impl.pack_ternary(codes, True)
    assert impl.pack_quinary(codes, True).shape == (3, 8)
    codes[2, 39] = -3
    with pytest.raises(ValueError, match=r'codes\[2, 39\] is -3'):
        impl.pack_quinary(codes, True)

    monkeypatch.setenv('MMTVMAMBA_DEBUG_CHECKS', '1')
    with pytest.raises(ValueError, match=r'codes\[1, 7\] is 2'):
        impl.pack_ternary(codes)


def test_matmul_rejects_mismatched_k(impl):
    packed_a = impl.pack_ternary(random_codes(4, 64))
    packed_w = impl.pack_ternary(random_codes(5, 100))

    with pytest.raises(
            ValueError, match='w_packed has 8 words per row, but '
            'k=64 needs 4'):
        impl.ternary_mm_int(packed_a, packed_w, 64)
    with pytest.raises(
            ValueError, match='a_packed has 4 words per row, but '
            'k=100 needs 8'):
        impl.ternary_mm_int(packed_a, packed_w, 100)
    with pytest.raises(ValueError, match='k must be in'):
        impl.ternary_mm_int(packed_a, packed_w, 0)


def test_matmul_rejects_wrong_operands(impl):
    codes = random_codes(4, 64)
    packed = impl.pack_ternary(codes)

    with pytest.raises(ValueError, match='pack a_packed with pack_quinary'):
        impl.quinary_mm_int(packed, packed, 64)
    with pytest.raises(TypeError, match='a_packed must be an int32'):
        impl.ternary_mm_int(codes, packed, 64)
    with pytest.raises(ValueError, match='non-empty 2-D'):
        impl.ternary_mm_int(packed[:0], packed, 64)


def test_matmul_rejects_invalid_scales(impl):
    packed_a = impl.pack_ternary(random_codes(4, 64))
    packed_w = impl.pack_ternary(random_codes(6, 64))
    ones = torch.ones(1)

    with pytest.raises(
            ValueError, match=r'col_scale must have shape \(6\) '
            r'or \(1\)'):
        impl.ternary_mm(packed_a, packed_w, 64, None, torch.ones(5))
    with pytest.raises(ValueError, match=r'row_scale must have shape \(4\)'):
        impl.ternary_mm(packed_a, packed_w, 64, torch.ones(6), ones)
    with pytest.raises(ValueError, match=r'bias must have shape \(6\)'):
        impl.ternary_mm(packed_a, packed_w, 64, None, ones, torch.ones(4))
    with pytest.raises(TypeError, match='col_scale must be float32'):
        impl.ternary_mm(packed_a, packed_w, 64, None, ones.double())
    with pytest.raises(ValueError, match=r'k_scale must have shape \(2\)'):
        impl.ternary_mm(packed_a, packed_w, 64, None, ones, None, ones)


# Shapes with several row and column blocks, partial 16-column groups and
# a partial last vector of the epilogue.
EPILOGUE_SHAPES = [(1, 1, 1), (37, 50, 96), (300, 130, 200)]


@pytest.mark.parametrize('m, n, k', EPILOGUE_SHAPES)
@pytest.mark.parametrize('quinary', [False, True])
@pytest.mark.parametrize('activation', ['none', 'gelu'])
def test_residual_and_activation_epilogue(isa, threads, m, n, k, quinary,
                                          activation):
    low = -2 if quinary else -1
    a = random_codes(m, k, low=low, high=-low, seed=41)
    w = random_codes(n, k, seed=42)
    row_scale, col_scale, bias = torch.rand(m), torch.rand(1), torch.randn(n)
    # A transposed residual exercises the strided (scalar) path.
    residual = torch.randn(n, m).T if m > 1 else torch.randn(m, n)
    pack = ops.pack_quinary if quinary else ops.pack_ternary
    matmul = ops.quinary_mm if quinary else ops.ternary_mm
    k_scale = torch.rand((k + 31) // 32) + 0.5

    out = matmul(pack(a), ops.pack_ternary(w), k, row_scale, col_scale, bias,
                 k_scale, residual, activation)

    expected = k_scaled_product(a, w, k_scale, row_scale, col_scale, bias)
    expected = expected + residual.double()
    if activation == 'gelu':
        expected = torch.nn.functional.gelu(expected)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=2e-5)


def test_gelu_epilogue_accuracy(isa):
    # A zero product leaves the residual itself as the GELU input.
    x = torch.linspace(-12, 12, 48001)
    zeros = ops.pack_ternary(torch.zeros(len(x), 1, dtype=torch.int8))
    w = ops.pack_ternary(torch.zeros(1, 1, dtype=torch.int8))

    out = ops.ternary_mm(zeros, w, 1, None, torch.ones(1), None, None,
                         x.view(-1, 1), 'gelu').view(-1)

    expected = torch.nn.functional.gelu(x.double())
    error = (out.double() - expected).abs().max().item()
    assert error < 1e-6


def test_matmul_rejects_invalid_epilogue(impl):
    packed_a = impl.pack_ternary(random_codes(4, 64))
    packed_w = impl.pack_ternary(random_codes(6, 64))
    ones = torch.ones(1)

    with pytest.raises(ValueError, match="invalid activation 'relu'"):
        impl.ternary_mm(packed_a, packed_w, 64, None, ones, None, None, None,
                        'relu')
    with pytest.raises(ValueError, match=r'residual must have the output '
                       r'shape \(4, 6\)'):
        impl.ternary_mm(packed_a, packed_w, 64, None, ones, None, None,
                        torch.zeros(6, 4))
    with pytest.raises(TypeError, match='residual must be float32'):
        impl.ternary_mm(packed_a, packed_w, 64, None, ones, None, None,
                        torch.zeros(4, 6, dtype=torch.float64))


def k_scaled_product(a, w, k_scale, row_scale, col_scale, bias):
    """Return the float64 product with every 32-code word of K scaled."""
    k = a.shape[1]
    scale = k_scale.double().repeat_interleave(32)[:k]
    out = (a.double() * scale) @ w.double().T
    return out * row_scale.double()[:, None] * col_scale.double() + bias


# K scales with runs of equal words (merged into one segment), single
# words and a partial last word.
K_SCALE_CASES = [
    (1, 1, 1, [0.5]),
    (17, 33, 96, [0.25, 0.25, 3.0]),
    (40, 20, 100, [1.0, 2.0, 2.0, 0.5]),
    (300, 70, 1000, [0.5] * 10 + [1.5] * 12 + [0.75] * 10),
]


@pytest.mark.parametrize('m, n, k, k_scale', K_SCALE_CASES)
@pytest.mark.parametrize('quinary', [False, True])
def test_k_scale_matches_direct_sum(isa, threads, m, n, k, k_scale, quinary):
    low = -2 if quinary else -1
    a = random_codes(m, k, low=low, high=-low, seed=31)
    w = random_codes(n, k, seed=32)
    k_scale = torch.tensor(k_scale)
    row_scale, col_scale, bias = torch.rand(m), torch.rand(n), torch.rand(n)
    pack = ops.pack_quinary if quinary else ops.pack_ternary
    matmul = ops.quinary_mm if quinary else ops.ternary_mm

    out = matmul(pack(a), ops.pack_ternary(w), k, row_scale, col_scale, bias,
                 k_scale)

    expected = k_scaled_product(a, w, k_scale, row_scale, col_scale, bias)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_k_scale_reference_matches_extension():
    if not HAS_EXT:
        pytest.skip('mmtvmamba._ext is not built')
    a, w = random_codes(33, 200, seed=33), random_codes(21, 200, seed=34)
    k_scale = torch.tensor([0.5, 0.5, 1.0, 4.0, 4.0, 4.0, 0.25])
    args = (200, torch.rand(33), torch.rand(21), torch.rand(21), k_scale)
    packed = (reference.pack_ternary(a), reference.pack_ternary(w))

    torch.testing.assert_close(
        cpp_ops().ternary_mm(*packed, *args),
        reference.ternary_mm(*packed, *args))


def test_k_scale_of_ones_equals_plain_product(isa):
    a, w = random_codes(50, 130, seed=35), random_codes(40, 130, seed=36)
    packed = (ops.pack_ternary(a), ops.pack_ternary(w))
    col_scale = torch.rand(40)

    plain = ops.ternary_mm(*packed, 130, None, col_scale)
    scaled = ops.ternary_mm(*packed, 130, None, col_scale, None,
                            torch.ones(5))

    assert torch.equal(plain, scaled)


def test_reference_rejects_wrong_device():
    codes = torch.zeros(4, 8, dtype=torch.int8, device='meta')

    with pytest.raises(RuntimeError, match='must be a CPU tensor'):
        reference.pack_ternary(codes)


def test_set_isa_rejects_invalid_name():
    with pytest.raises(ValueError, match="invalid kernel path 'sse'"):
        ops.set_isa('sse')


@requires_ext
def test_cpp_isa_selection_rejects_invalid_name():
    with pytest.raises(ValueError, match="invalid ternary kernel path 'sse'"):
        cpp_ops().set_ternary_isa('sse')

    assert cpp_ops().ternary_isa() == ops.available_isas()[0]


@requires_ext
def test_set_isa_rejects_unsupported_path():
    missing = {'avx512', 'avx2'} - set(ops.available_isas())
    if not missing:
        pytest.skip('this CPU supports every kernel path')

    with pytest.raises(RuntimeError, match='does not support it'):
        ops.set_isa(missing.pop())


@requires_ext
def test_isa_env_var_forces_path():
    import mmtvmamba._ext

    # Load the library alone, so the child process skips importing the
    # whole package.
    code = ('import sys, torch; torch.ops.load_library(sys.argv[1]); '
            'ops = torch.ops.mmtvmamba; '
            'c = torch.ones(2, 3, dtype=torch.int8); '
            'out = ops.ternary_mm_int(ops.pack_ternary(c), '
            'ops.pack_ternary(c), 3); '
            'print(int(out[0, 0]), ops.ternary_isa())')
    env = dict(os.environ, MMTVMAMBA_TERNARY_ISA='portable')

    result = subprocess.run(
        [sys.executable, '-c', code, mmtvmamba._ext.__file__],
        env=env,
        capture_output=True,
        text=True,
        check=True)

    assert result.stdout.split() == ['3', 'portable']


def test_fallback_warns_once(monkeypatch):
    real_import = builtins.__import__
    messages = []

    def failing_import(name, *args, **kwargs):
        if name == 'mmtvmamba._ext':
            raise ImportError('simulated missing build')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', failing_import)
    monkeypatch.setattr(extension, '_warn', messages.append)
    available = functools.lru_cache(maxsize=None)(extension.load_extension)

    assert available() is False
    assert available() is False
    assert len(messages) == 1
    assert 'simulated missing build' in messages[0]
