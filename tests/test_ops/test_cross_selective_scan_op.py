# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the fused cross selective scan op and its Python wrapper."""
import importlib

import pytest
import torch

import mmtvmamba.ops as ops
from mmtvmamba.models.layers import cross_merge, cross_scan
from mmtvmamba.models.selective_scan import scan_impl, selective_scan_ref
from mmtvmamba.ops import cross_selective_scan_op, cross_selective_scan_ref

# The package re-exports the function under the module's name.
scan_module = importlib.import_module('mmtvmamba.models.selective_scan')

HAS_EXT = ops.extension_available()
requires_ext = pytest.mark.skipif(
    not HAS_EXT, reason='mmtvmamba._ext is not built')

# (with Ds, with delta_bias, delta_softplus)
OPTIONS = [(True, True, True), (False, False, False), (True, False, True),
           (False, True, False)]

# (batch, H, W, D, N): H != W, H or W = 1, D below 16, D not a multiple of
# 16, D over 64 (two kernel chunks), several states.
SHAPES = [(1, 3, 5, 7, 1), (2, 4, 4, 33, 2), (1, 1, 9, 16, 1),
          (2, 6, 1, 20, 3), (1, 5, 3, 81, 1), (2, 2, 3, 130, 2),
          (1, 1, 1, 5, 4)]


def make_inputs(batch, height, width, channels, states, seed=0,
                positive_steps=False):
    """Return random operands with a negative A, as in Mamba."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, height, width, channels)
    deltas = [torch.randn(shape, generator=gen) for _ in range(4)]
    delta_bias = torch.randn(4 * channels, generator=gen)
    if positive_steps:
        # Without softplus, negative steps would make decays above 1 that
        # grow without bound over long walks.
        deltas = [delta.abs() for delta in deltas]
        delta_bias = delta_bias.abs()
    return dict(
        u=torch.randn(shape, generator=gen),
        deltas=deltas,
        A=-torch.rand(4 * channels, states, generator=gen) * 4,
        Bs=torch.randn(batch, height, width, 4, states, generator=gen),
        Cs=torch.randn(batch, height, width, 4, states, generator=gen),
        Ds=torch.randn(4 * channels, generator=gen),
        delta_bias=delta_bias)


def call_op(args, delta_softplus):
    return torch.ops.mmtvmamba.cross_selective_scan_fwd(
        args['u'], args['deltas'], args['A'], args['Bs'], args['Cs'],
        args['Ds'], args['delta_bias'], delta_softplus)


def replace(args, **changes):
    updated = dict(args)
    updated.update(changes)
    return updated


@pytest.fixture(params=['cpp', 'fallback'])
def impl(request, monkeypatch):
    """Run the wrapper on the C++ op or on its pure-PyTorch fallback."""
    if request.param == 'cpp' and not HAS_EXT:
        pytest.skip('mmtvmamba._ext is not built')
    if request.param == 'fallback':
        monkeypatch.setattr(cross_selective_scan_op, 'extension_available',
                            lambda: False)
    return request.param


def test_reference_equals_cross_scan_composition():
    # The reference spelled out: scan order per direction, the sequential
    # scan, then the merge of the four outputs.
    args = make_inputs(2, 3, 4, 5, 2, seed=1)
    batch, height, width, channels = args['u'].shape
    length = height * width

    def order(tensor, k):
        return cross_scan(tensor.permute(0, 3, 1, 2))[:, k]

    ys = selective_scan_ref(
        cross_scan(args['u'].permute(0, 3, 1, 2)).reshape(batch, -1, length),
        torch.cat([order(d, k) for k, d in enumerate(args['deltas'])], 1),
        args['A'],
        torch.stack([order(args['Bs'][..., k, :], k) for k in range(4)], 1),
        torch.stack([order(args['Cs'][..., k, :], k) for k in range(4)], 1),
        args['Ds'], args['delta_bias'], True)
    expected = cross_merge(ys.view(batch, 4, channels, length), height, width)

    out = cross_selective_scan_ref(**args, delta_softplus=True)

    assert out.shape == (batch, height, width, channels)
    torch.testing.assert_close(
        out.permute(0, 3, 1, 2).flatten(2), expected, rtol=0, atol=0)


@pytest.mark.parametrize('with_d, with_bias, softplus', OPTIONS)
@pytest.mark.parametrize('shape', SHAPES)
def test_op_matches_reference(scan_isa, shape, with_d, with_bias, softplus):
    args = make_inputs(*shape, seed=sum(shape), positive_steps=not softplus)
    args['Ds'] = args['Ds'] if with_d else None
    args['delta_bias'] = args['delta_bias'] if with_bias else None

    out = call_op(args, softplus)

    expected = cross_selective_scan_ref(**args, delta_softplus=softplus)
    assert out.dtype == torch.float32
    assert out.shape == shape[:4]
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@requires_ext
def test_isa_paths_agree():
    if 'avx512' not in ops.available_scan_isas():
        pytest.skip('this CPU does not support the avx512 path')
    args = make_inputs(2, 17, 23, 100, 2, seed=2)
    outputs = []
    for name in ('avx512', 'portable'):
        ops.set_scan_isa(name)
        outputs.append(call_op(args, True))
    ops.set_scan_isa('auto')

    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


@requires_ext
@pytest.mark.parametrize('channels', [96, 40])
def test_thread_counts_give_identical_results(scan_isa, threads, channels):
    # The task width depends on the thread count, but every channel is
    # computed alone, so the results are bitwise equal.
    args = make_inputs(3, 12, 10, channels, 1, seed=3)

    out = call_op(args, True)

    torch.set_num_threads(1)
    single = call_op(args, True)
    assert torch.equal(out, single)
    torch.testing.assert_close(
        out, cross_selective_scan_ref(**args, delta_softplus=True),
        rtol=1e-5, atol=1e-5)


def test_strided_inputs(impl):
    args = make_inputs(2, 5, 6, 24, 2, seed=4)
    # u as an NCHW tensor permuted to NHWC (channel stride H * W), deltas
    # with unit channel stride but padded rows, Bs and Cs as slices of a
    # projection output.
    x_dbl = torch.cat([args['Bs'], args['Cs'], args['Bs']], dim=-1)
    views = dict(
        u=args['u'].permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1),
        deltas=[
            torch.cat([d, d], dim=-1)[..., :24] for d in args['deltas']
        ],
        A=args['A'].t().contiguous().t(),
        Bs=x_dbl[..., :2],
        Cs=x_dbl[..., 2:4],
        Ds=torch.stack([args['Ds'], args['Ds']], dim=1)[:, 0],
        delta_bias=args['delta_bias'])
    for name in ('u', 'A', 'Bs', 'Cs', 'Ds'):
        assert not views[name].is_contiguous(), name
    assert not views['deltas'][0].is_contiguous()

    out = ops.cross_selective_scan_fwd(**views, delta_softplus=True)

    expected = ops.cross_selective_scan_fwd(**args, delta_softplus=True)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_tuple_of_deltas(impl):
    args = make_inputs(1, 3, 3, 8, 1, seed=5)

    out = ops.cross_selective_scan_fwd(
        **replace(args, deltas=tuple(args['deltas'])), delta_softplus=True)

    torch.testing.assert_close(
        out, cross_selective_scan_ref(**args, delta_softplus=True),
        rtol=1e-5, atol=1e-5)


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_other_float_dtypes_are_converted(dtype):
    args = make_inputs(1, 4, 3, 20, 1, seed=6)
    converted = {
        name: ([d.to(dtype) for d in value]
               if name == 'deltas' else value.to(dtype))
        for name, value in args.items()
    }
    as_float = {
        name: ([d.float() for d in value]
               if name == 'deltas' else value.float())
        for name, value in converted.items()
    }

    out = call_op(converted, True)

    assert out.dtype == torch.float32
    assert torch.equal(out, call_op(as_float, True))


@requires_ext
@pytest.mark.parametrize('shape', [(0, 3, 4, 8), (2, 0, 4, 8), (2, 3, 0, 8),
                                   (2, 3, 4, 0)])
def test_empty_dimensions_give_empty_output(shape):
    args = make_inputs(*shape, 1)

    out = call_op(args, True)

    assert out.shape == shape
    assert out.dtype == torch.float32


def test_fallback_matches_reference(monkeypatch):
    monkeypatch.setattr(cross_selective_scan_op, 'extension_available',
                        lambda: False)
    args = make_inputs(2, 6, 5, 12, 2, seed=7)

    out = ops.cross_selective_scan_fwd(**args, delta_softplus=True)

    torch.testing.assert_close(
        out, cross_selective_scan_ref(**args, delta_softplus=True),
        rtol=1e-5, atol=1e-5)
    empty = ops.cross_selective_scan_fwd(
        **make_inputs(0, 2, 2, 4, 1), delta_softplus=True)
    assert empty.shape == (0, 2, 2, 4)


@requires_ext
def test_opcheck_cross_selective_scan():
    args = make_inputs(2, 3, 5, 20, 2, seed=8)
    op = torch.ops.mmtvmamba.cross_selective_scan_fwd.default
    x_dbl = torch.cat([args['Bs'], args['Cs']], dim=-1)
    cases = [
        (args['u'], args['deltas'], args['A'], args['Bs'], args['Cs'],
         args['Ds'], args['delta_bias'], True),
        (args['u'], args['deltas'], args['A'][:, :1], args['Bs'][..., :1],
         args['Cs'][..., :1], None, None, False),
        (args['u'], args['deltas'], args['A'], x_dbl[..., :2],
         x_dbl[..., 2:], args['Ds'], None, True),
    ]

    for case in cases:
        torch.library.opcheck(op, case)


@requires_ext
def test_compile_and_export_trace_op():
    args = make_inputs(1, 4, 5, 8, 1, seed=9)
    inputs = (args['u'], *args['deltas'], args['A'], args['Bs'], args['Cs'],
              args['Ds'], args['delta_bias'])

    class Scan(torch.nn.Module):

        def forward(self, u, d0, d1, d2, d3, A, Bs, Cs, Ds, delta_bias):
            return ops.cross_selective_scan_fwd(u, [d0, d1, d2, d3], A, Bs,
                                                Cs, Ds, delta_bias, True)

    module = Scan()
    compiled = torch.compile(module, backend='aot_eager', fullgraph=True)
    exported = torch.export.export(module, inputs)

    expected = module(*inputs)
    torch.testing.assert_close(compiled(*inputs), expected, rtol=0, atol=0)
    torch.testing.assert_close(
        exported.module()(*inputs), expected, rtol=0, atol=0)
    targets = [node.target for node in exported.graph.nodes]
    assert torch.ops.mmtvmamba.cross_selective_scan_fwd.default in targets


@requires_ext
def test_backward_through_op_raises():
    args = make_inputs(1, 2, 2, 4, 1, seed=10)
    args['u'].requires_grad_()

    out = call_op(args, True)

    with pytest.raises(RuntimeError, match='derivative for '
                       'mmtvmamba::cross_selective_scan_fwd is not '
                       'implemented'):
        out.sum().backward()


def _deltas(count, shape=(2, 3, 4, 8)):
    return [torch.randn(shape) for _ in range(count)]


BAD_INPUTS = [
    (dict(u=torch.randn(2, 12, 8)), ValueError, r'u must be 4-D'),
    (dict(deltas=_deltas(3)), ValueError,
     r'deltas must contain 4 tensors, one per scan direction, but got 3'),
    (dict(deltas=_deltas(3) + [torch.randn(2, 4, 3, 8)]), ValueError,
     r'deltas\[3\] must have the shape of u \[2, 3, 4, 8\]'),
    (dict(A=torch.randn(24, 2)), ValueError,
     r'A must have shape \(4 \* D, N\) = \(32, N\)'),
    (dict(A=torch.randn(32, 0)), ValueError, r'with N >= 1'),
    (dict(Bs=torch.randn(2, 3, 4, 3, 2)), ValueError,
     r'Bs must have shape \(batch, H, W, 4, N\) = \(2, 3, 4, 4, 2\)'),
    (dict(Bs=torch.randn(2, 3, 4, 4, 3)), ValueError, r'Bs must have shape'),
    (dict(Cs=torch.randn(2, 4, 3, 4, 2)), ValueError,
     r'Cs must have the shape of Bs \[2, 3, 4, 4, 2\]'),
    (dict(Ds=torch.randn(8)), ValueError, r'Ds must have shape \(32\)'),
    (dict(delta_bias=torch.randn(32, 1)), ValueError,
     r'delta_bias must have shape \(32\)'),
    (dict(u=torch.ones(2, 3, 4, 8, dtype=torch.int64)), TypeError,
     r'u must be a floating-point tensor'),
    (dict(deltas=_deltas(3) + [torch.ones(2, 3, 4, 8, dtype=torch.int32)]),
     TypeError, r'deltas\[3\] must be a floating-point tensor'),
    (dict(Cs=torch.ones(2, 3, 4, 4, 2, dtype=torch.complex64)), TypeError,
     r'Cs must be a floating-point tensor'),
    (dict(A=torch.randn(32, 2, device='meta')), RuntimeError,
     r'A must be a CPU tensor, but it is on meta'),
]


@pytest.mark.parametrize('changes, error, match', BAD_INPUTS)
def test_invalid_inputs_raise(impl, changes, error, match):
    args = replace(make_inputs(2, 3, 4, 8, 2), **changes)

    with pytest.raises(error, match=match):
        ops.cross_selective_scan_fwd(**args, delta_softplus=True)


def test_deltas_must_be_a_list(impl):
    args = make_inputs(2, 3, 4, 8, 2)

    with pytest.raises(TypeError, match='deltas must be a list of 4 '
                       'tensors, one per scan direction, but got Tensor'):
        ops.cross_selective_scan_fwd(
            **replace(args, deltas=torch.stack(args['deltas'])))


@requires_ext
@pytest.mark.parametrize('changes, error, match', [
    case for case in BAD_INPUTS if 'meta' not in case[2]
])
def test_op_rejects_invalid_inputs(changes, error, match):
    args = replace(make_inputs(2, 3, 4, 8, 2), **changes)

    with pytest.raises(error, match=match):
        call_op(args, True)


@pytest.fixture
def op_calls(monkeypatch):
    """Count the calls of the fused op made by cross_selective_scan."""
    calls = []
    fused = scan_module.cross_selective_scan_fwd

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return fused(*args, **kwargs)

    monkeypatch.setattr(scan_module, 'cross_selective_scan_fwd', counted)
    monkeypatch.delenv(scan_module.SCAN_IMPL_ENV, raising=False)
    return calls


@requires_ext
def test_dispatch_uses_op_without_grad(op_calls):
    args = make_inputs(2, 5, 4, 12, 1, seed=11)
    args['u'].requires_grad_()

    with torch.no_grad():
        fused = scan_module.cross_selective_scan(**args, delta_softplus=True)
    assert op_calls == [(2, 5, 4, 12)]

    with torch.no_grad(), scan_impl('torch'):
        chunked = scan_module.cross_selective_scan(**args,
                                                   delta_softplus=True)
    assert len(op_calls) == 1
    torch.testing.assert_close(fused, chunked, rtol=1e-5, atol=1e-5)


def test_dispatch_composes_when_grad_needed(op_calls):
    args = make_inputs(1, 3, 4, 8, 1, seed=12)
    args['u'].requires_grad_()

    out = scan_module.cross_selective_scan(**args, delta_softplus=True)
    out.sum().backward()

    assert op_calls == []
    assert args['u'].grad is not None
    torch.testing.assert_close(
        out.detach(),
        cross_selective_scan_ref(**args, delta_softplus=True).detach(),
        rtol=1e-5, atol=1e-5)


def test_forced_fused_rejects_grad():
    args = make_inputs(1, 3, 4, 8, 1)
    args['u'].requires_grad_()

    with scan_impl('fused'), pytest.raises(
            RuntimeError, match='the fused selective scan'):
        scan_module.cross_selective_scan(**args, delta_softplus=True)
