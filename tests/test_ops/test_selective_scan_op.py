# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the fused selective scan op and its Python wrapper."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import mmtvmamba.ops as ops
from mmtvmamba.models.selective_scan import selective_scan_ref
from mmtvmamba.ops import selective_scan_op

HAS_EXT = ops.extension_available()
requires_ext = pytest.mark.skipif(
    not HAS_EXT, reason='mmtvmamba._ext is not built')

# The machine epsilon of float32 is 2**-23. The kernels' softplus and exp
# are checked to a few of those.
EPS = torch.finfo(torch.float32).eps

# (with D, with delta_bias, delta_softplus)
OPTIONS = [(True, True, True), (False, False, False), (True, False, True),
           (False, True, False)]


def make_inputs(batch, channels, length, states, groups, seed=0,
                positive_steps=False):
    """Return random scan operands with a negative A, as in Mamba."""
    gen = torch.Generator().manual_seed(seed)
    delta = torch.randn(batch, channels, length, generator=gen)
    delta_bias = torch.randn(channels, generator=gen)
    if positive_steps:
        # Without softplus, negative steps would make decays above 1 that
        # grow without bound over long sequences.
        delta, delta_bias = delta.abs(), delta_bias.abs()
    return dict(
        u=torch.randn(batch, channels, length, generator=gen),
        delta=delta,
        A=-torch.rand(channels, states, generator=gen) * 4,
        B=torch.randn(batch, groups, states, length, generator=gen),
        C=torch.randn(batch, groups, states, length, generator=gen),
        D=torch.randn(channels, generator=gen),
        delta_bias=delta_bias)


def call_op(args, delta_softplus):
    return torch.ops.mmtvmamba.selective_scan_fwd(
        args['u'], args['delta'], args['A'], args['B'], args['C'],
        args['D'], args['delta_bias'], delta_softplus)


@pytest.fixture(params=['cpp', 'fallback'])
def impl(request, monkeypatch):
    """Run the wrapper on the C++ op or on its pure-PyTorch fallback."""
    if request.param == 'cpp' and not HAS_EXT:
        pytest.skip('mmtvmamba._ext is not built')
    if request.param == 'fallback':
        monkeypatch.setattr(selective_scan_op, 'extension_available',
                            lambda: False)
    return request.param


@pytest.mark.parametrize('with_d, with_bias, softplus', OPTIONS)
@pytest.mark.parametrize('length', [1, 7, 64, 300])
@pytest.mark.parametrize('states', [1, 4])
@pytest.mark.parametrize('groups', [1, 4])
@pytest.mark.parametrize('batch', [1, 2])
def test_fused_matches_reference(scan_isa, batch, groups, states, length,
                                 with_d, with_bias, softplus):
    args = make_inputs(
        batch, 3 * groups, length, states, groups, seed=length + states,
        positive_steps=not softplus)
    args['D'] = args['D'] if with_d else None
    args['delta_bias'] = args['delta_bias'] if with_bias else None

    out = call_op(args, softplus)

    expected = selective_scan_ref(**args, delta_softplus=softplus)
    assert out.dtype == torch.float32
    assert out.shape == (batch, 3 * groups, length)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@requires_ext
@pytest.mark.parametrize('states', [1, 3])
def test_thread_counts_give_identical_results(scan_isa, threads, states):
    # 128 rows of 600 steps make several tasks for the thread pool.
    args = make_inputs(2, 64, 600, states, 4, seed=3)

    out = call_op(args, True)

    torch.set_num_threads(1)
    single = call_op(args, True)
    assert torch.equal(out, single)
    torch.testing.assert_close(
        out, selective_scan_ref(**args, delta_softplus=True), rtol=1e-5,
        atol=1e-5)


@requires_ext
def test_isa_paths_agree():
    if 'avx512' not in ops.available_scan_isas():
        pytest.skip('this CPU does not support the avx512 path')
    args = make_inputs(2, 16, 1000, 2, 4, seed=4)
    outputs = []
    for name in ('avx512', 'portable'):
        ops.set_scan_isa(name)
        outputs.append(call_op(args, True))
    ops.set_scan_isa('auto')

    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_noncontiguous_inputs(impl):
    base = make_inputs(2, 8, 50, 2, 4, seed=5)
    contiguous = dict(base)
    views = dict(
        u=base['u'].transpose(1, 2).contiguous().transpose(1, 2),
        delta=torch.cat([base['delta'], base['delta']], dim=2)[..., ::2],
        A=base['A'].t().contiguous().t(),
        B=base['B'].transpose(2, 3).contiguous().transpose(2, 3),
        C=torch.stack([base['C'], base['C']], dim=-1)[..., 0],
        D=torch.stack([base['D'], base['D']], dim=1)[:, 1],
        delta_bias=base['delta_bias'])
    contiguous['delta'] = views['delta'].contiguous()
    for name in ('u', 'delta', 'A', 'B', 'C', 'D'):
        assert not views[name].is_contiguous(), name

    out = ops.selective_scan_fwd(**views, delta_softplus=True)

    expected = ops.selective_scan_fwd(**contiguous, delta_softplus=True)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float64, torch.float16,
                                   torch.bfloat16])
def test_other_float_dtypes_are_converted(dtype):
    args = make_inputs(1, 8, 40, 1, 4, seed=6)
    args = {name: value.to(dtype) for name, value in args.items()}

    out = call_op(args, True)

    as_float = {name: value.float() for name, value in args.items()}
    assert out.dtype == torch.float32
    assert torch.equal(out, call_op(as_float, True))


def softplus_probe(x):
    """Return the op's softplus of x: with L = 1 and u = B = C = 1, y = dt."""
    n = x.numel()
    ones = torch.ones(1, n, 1)
    y = torch.ops.mmtvmamba.selective_scan_fwd(
        ones, x.view(1, n, 1), -torch.ones(n, 1), torch.ones(1, 1, 1, 1),
        torch.ones(1, 1, 1, 1), None, None, True)
    return y.view(-1)


@requires_ext
def test_softplus_matches_torch(scan_isa):
    # Results of x >= -80 are normal floats. The range covers both sides of
    # the threshold 20 and the point where log1p's argument falls below
    # 2**-24 (x ~ -16.6).
    x = torch.cat([
        torch.linspace(-80, 40, 100003),
        torch.tensor([-16.6355, 19.999998, 20.0, 20.000002, 0.0, -0.0])
    ])

    out = softplus_probe(x)

    expected = F.softplus(x.double()).float()
    torch.testing.assert_close(out, expected, rtol=3 * EPS, atol=0)


@requires_ext
def test_softplus_special_values(scan_isa):
    x = torch.tensor([float('inf'), float('-inf'), float('nan'), -200.0])

    out = softplus_probe(x)

    torch.testing.assert_close(
        out, F.softplus(x), rtol=0, atol=0, equal_nan=True)


@requires_ext
def test_decay_exp_matches_torch(scan_isa):
    # With u = (1e30, 0), delta = (1e-30, 1), B = C = 1 and A = x, the first
    # state is h0 = 1e-30 * 1e30 with decay exp(1e-30 * x) = 1, so the
    # second output is exp(x) * h0. exp(x) is normal for x in [-87, 88].
    x = torch.linspace(-87, 88, 100003)
    n = x.numel()
    u = torch.tensor([1e30, 0.0]).expand(1, n, 2).contiguous()
    delta = torch.tensor([1e-30, 1.0]).expand(1, n, 2).contiguous()
    first_state = torch.tensor(1e-30) * torch.tensor(1e30)

    out = torch.ops.mmtvmamba.selective_scan_fwd(u, delta, x.view(n, 1),
                                                 torch.ones(1, 1, 1, 2),
                                                 torch.ones(1, 1, 1, 2),
                                                 None, None, False)

    expected = (torch.exp(x.double()) * first_state.double()).float()
    torch.testing.assert_close(out[0, :, 1], expected, rtol=3 * EPS, atol=0)


@requires_ext
def test_empty_dimensions_give_empty_output():
    for batch, channels, length in [(0, 4, 5), (2, 0, 5), (2, 4, 0)]:
        args = make_inputs(batch, channels, length, 1, 1)
        out = call_op(args, True)
        assert out.shape == (batch, channels, length)


def test_fallback_matches_reference(monkeypatch):
    monkeypatch.setattr(selective_scan_op, 'extension_available',
                        lambda: False)
    args = make_inputs(2, 8, 70, 2, 4, seed=7)

    out = ops.selective_scan_fwd(**args, delta_softplus=True)

    torch.testing.assert_close(
        out, selective_scan_ref(**args, delta_softplus=True), rtol=1e-5,
        atol=1e-5)
    assert ops.get_scan_isa() == 'reference'
    assert ops.available_scan_isas() == []
    with pytest.raises(RuntimeError, match='mmtvmamba._ext is not built'):
        ops.set_scan_isa('portable')


@requires_ext
def test_opcheck_selective_scan():
    args = make_inputs(2, 8, 33, 2, 4, seed=8)
    op = torch.ops.mmtvmamba.selective_scan_fwd.default
    cases = [
        (args['u'], args['delta'], args['A'], args['B'], args['C'],
         args['D'], args['delta_bias'], True),
        (args['u'], args['delta'], args['A'][:, :1], args['B'][:, :, :1],
         args['C'][:, :, :1], None, None, False),
    ]

    for case in cases:
        torch.library.opcheck(op, case)


@requires_ext
def test_compile_and_export_trace_op():
    args = make_inputs(1, 8, 40, 1, 4, seed=9)

    class Scan(torch.nn.Module):

        def forward(self, u, delta, A, B, C, D, delta_bias):
            return ops.selective_scan_fwd(u, delta, A, B, C, D, delta_bias,
                                          True)

    module = Scan()
    compiled = torch.compile(module, backend='aot_eager', fullgraph=True)
    exported = torch.export.export(module, tuple(args.values()))

    expected = module(*args.values())
    torch.testing.assert_close(
        compiled(*args.values()), expected, rtol=0, atol=0)
    torch.testing.assert_close(
        exported.module()(*args.values()), expected, rtol=0, atol=0)
    targets = [node.target for node in exported.graph.nodes]
    assert torch.ops.mmtvmamba.selective_scan_fwd.default in targets


@requires_ext
def test_backward_through_op_raises():
    args = make_inputs(1, 4, 10, 1, 1, seed=10)
    args['u'].requires_grad_()

    out = call_op(args, True)

    with pytest.raises(RuntimeError, match='derivative for '
                       'mmtvmamba::selective_scan_fwd is not implemented'):
        out.sum().backward()


def replace(args, **changes):
    updated = dict(args)
    updated.update(changes)
    return updated


BAD_INPUTS = [
    (dict(u=torch.randn(8, 20)), ValueError, r'u must be 3-D'),
    (dict(delta=torch.randn(2, 8, 19)), ValueError,
     r'delta must have the shape of u \[2, 8, 20\]'),
    (dict(A=torch.randn(7, 2)), ValueError,
     r'A must have shape \(D, N\) = \(8, N\)'),
    (dict(A=torch.randn(8, 0)), ValueError, r'with N >= 1'),
    (dict(B=torch.randn(2, 4, 2, 21)), ValueError,
     r'B must have shape \(batch, G, N, L\) = \(2, G, 2, 20\)'),
    (dict(B=torch.randn(2, 4, 3, 20)), ValueError, r'B must have shape'),
    (dict(C=torch.randn(2, 4, 2, 19)), ValueError,
     r'C must have the shape of B \[2, 4, 2, 20\]'),
    (dict(B=torch.randn(2, 3, 2, 20), C=torch.randn(2, 3, 2, 20)),
     ValueError, r'8 channels \(D\) cannot be split into 3 groups'),
    (dict(D=torch.randn(7)), ValueError, r'D must have shape \(8\)'),
    (dict(delta_bias=torch.randn(8, 1)), ValueError,
     r'delta_bias must have shape \(8\)'),
    (dict(u=torch.ones(2, 8, 20, dtype=torch.int64)), TypeError,
     r'u must be a floating-point tensor'),
    (dict(C=torch.ones(2, 4, 2, 20, dtype=torch.complex64)), TypeError,
     r'C must be a floating-point tensor'),
    (dict(A=torch.randn(8, 2, device='meta')), RuntimeError,
     r'A must be a CPU tensor, but it is on meta'),
]


@pytest.mark.parametrize('changes, error, match', BAD_INPUTS)
def test_invalid_inputs_raise(impl, changes, error, match):
    args = replace(make_inputs(2, 8, 20, 2, 4), **changes)

    with pytest.raises(error, match=match):
        ops.selective_scan_fwd(**args, delta_softplus=True)


@requires_ext
@pytest.mark.parametrize('changes, error, match', [
    case for case in BAD_INPUTS if 'meta' not in case[2]
])
def test_op_rejects_invalid_inputs(changes, error, match):
    args = replace(make_inputs(2, 8, 20, 2, 4), **changes)

    with pytest.raises(error, match=match):
        call_op(args, True)


def test_set_scan_isa_rejects_invalid_name():
    with pytest.raises(ValueError, match="invalid scan kernel path 'sse'"):
        ops.set_scan_isa('sse')


@requires_ext
def test_cpp_scan_isa_rejects_invalid_name():
    with pytest.raises(
            ValueError, match="invalid selective scan kernel path 'sse'"):
        torch.ops.mmtvmamba.set_selective_scan_isa('sse')

    assert ops.get_scan_isa() == ops.available_scan_isas()[0]


@requires_ext
def test_scan_isa_env_var_forces_path():
    import mmtvmamba._ext

    # Load the library alone, so the child process skips importing the
    # whole package.
    code = ('import sys, torch; torch.ops.load_library(sys.argv[1]); '
            'ops = torch.ops.mmtvmamba; '
            'x = torch.ones(1, 2, 3); b = torch.ones(1, 1, 1, 3); '
            'y = ops.selective_scan_fwd(x, x, -torch.ones(2, 1), b, b); '
            'print(float(y[0, 0, 0]), ops.selective_scan_isa())')
    env = dict(os.environ, MMTVMAMBA_SCAN_ISA='portable')

    result = subprocess.run(
        [sys.executable, '-c', code, mmtvmamba._ext.__file__],
        env=env,
        capture_output=True,
        text=True,
        check=True)

    assert result.stdout.split() == ['1.0', 'portable']
