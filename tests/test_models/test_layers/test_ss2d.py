# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of SS2D's channels-last inference path against its training
path."""
import importlib

import pytest
import torch

from mmtvmamba.models.layers import SS2D
from mmtvmamba.models.selective_scan import scan_impl
from mmtvmamba.ops import extension_available
from mmtvmamba.quantization import QuantConfig

# The package re-exports the function under the module's name.
scan_module = importlib.import_module('mmtvmamba.models.selective_scan')

requires_ext = pytest.mark.skipif(
    not extension_available(), reason='mmtvmamba._ext is not built')

QUANTS = {
    'fp': None,
    'q2t': dict(mode='ternary', weight=True, act=dict(type='Q2T', radius=2)),
    'lsq': dict(mode='ternary', weight=True, act=dict(type='LSQ')),
    'slender': dict(mode='ternary', weight=True, act=dict(type='Slender')),
}


def build_ss2d(quant, d_model=24, d_state=1, seed=0):
    """Return an SS2D in eval mode with decays spread over (0, 1) and, when
    quantized, scales initialized from data."""
    torch.manual_seed(seed)
    config = QuantConfig.from_cfg(quant)
    ssm = SS2D(d_model, d_state=d_state, quant=config)
    with torch.no_grad():
        # At initialization every A is -1 and dt is small, so every decay
        # is close to 1.
        ssm.A_logs.normal_(0, 1.5)
        ssm.dt_projs_bias.normal_(0, 1.5)
    ssm.train()
    ssm(torch.randn(2, d_model, 6, 5))
    return ssm.eval()


@pytest.fixture
def op_calls(monkeypatch):
    """Record the input shapes of the fused cross selective scan op."""
    calls = []
    fused = scan_module.cross_selective_scan_fwd

    def counted(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return fused(*args, **kwargs)

    monkeypatch.setattr(scan_module, 'cross_selective_scan_fwd', counted)
    monkeypatch.delenv(scan_module.SCAN_IMPL_ENV, raising=False)
    return calls


@requires_ext
@pytest.mark.parametrize('quant', list(QUANTS))
@pytest.mark.parametrize('d_state, height, width', [(1, 7, 5), (2, 1, 6),
                                                    (1, 4, 1)])
def test_channels_last_path_matches_cross_scan(op_calls, quant, d_state,
                                               height, width):
    ssm = build_ss2d(QUANTS[quant], d_state=d_state)
    x = torch.randn(2, 24, height, width)

    with torch.no_grad():
        out = ssm(x)
        assert op_calls == [(2, height, width, 24)]
        with scan_impl('torch'):
            expected = ssm(x)
    assert len(op_calls) == 1

    assert out.shape == (2, 24, height, width)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@requires_ext
def test_channels_last_input(op_calls):
    ssm = build_ss2d(QUANTS['q2t'])
    x = torch.randn(1, 24, 6, 8)

    with torch.no_grad():
        out = ssm(x.to(memory_format=torch.channels_last))
        expected = ssm(x)

    assert len(op_calls) == 2
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@requires_ext
def test_forward_core_paths_agree(op_calls):
    ssm = build_ss2d(QUANTS['fp'], d_state=2)
    x = torch.randn(2, 24, 5, 6)

    with torch.no_grad():
        channels_last = ssm.forward_core(x)
        with scan_impl('torch'):
            cross_scan_path = ssm.forward_core(x)

    assert len(op_calls) == 1
    assert channels_last.shape == cross_scan_path.shape
    torch.testing.assert_close(
        channels_last, cross_scan_path, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('quant', ['fp', 'q2t'])
def test_training_keeps_cross_scan_path(op_calls, quant):
    ssm = build_ss2d(QUANTS[quant]).train()
    x = torch.randn(2, 24, 4, 5, requires_grad=True)

    out = ssm(x)
    out.square().sum().backward()
    with scan_impl('torch'):
        forced = ssm(x)

    assert op_calls == []
    assert x.grad is not None
    assert ssm.A_logs.grad is not None
    assert torch.equal(out, forced)


@requires_ext
def test_training_without_grad_keeps_cross_scan_path(op_calls):
    # A calibration pass runs in training mode under no_grad; it keeps the
    # cross scan path of training.
    ssm = build_ss2d(QUANTS['q2t']).train()
    x = torch.randn(2, 24, 4, 5)

    with torch.no_grad():
        out = ssm(x)
        with scan_impl('torch'):
            forced = ssm(x)

    assert op_calls == []
    assert torch.equal(out, forced)


@requires_ext
def test_eval_with_grad_keeps_cross_scan_path(op_calls):
    ssm = build_ss2d(QUANTS['fp'])
    x = torch.randn(1, 24, 3, 4)

    out = ssm(x)

    assert op_calls == []
    assert out.requires_grad


@requires_ext
def test_compile_and_export_trace_ss2d():
    ssm = build_ss2d(QUANTS['fp'])
    x = torch.randn(2, 24, 5, 7)

    with torch.no_grad():
        expected = ssm(x)
        compiled = torch.compile(ssm, backend='aot_eager', fullgraph=True)
        out = compiled(x)
        exported = torch.export.export(ssm, (x, ))

    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(
            exported.module()(x), expected, rtol=0, atol=0)
    targets = [node.target for node in exported.graph.nodes]
    assert torch.ops.mmtvmamba.cross_selective_scan_fwd.default in targets
