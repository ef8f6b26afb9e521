# Copyright (c) mmtvmamba contributors. All rights reserved.
import sys

import pytest
import torch

from mmtvmamba.models.selective_scan import (get_scan_impl, linear_recurrence,
                                             scan_impl, selective_scan,
                                             selective_scan_chunked,
                                             selective_scan_ref)
from mmtvmamba.ops import extension_available

# mmtvmamba.models exports a function named selective_scan, which hides the
# submodule of that name from attribute access.
scan_module = sys.modules['mmtvmamba.models.selective_scan']


def _inputs(batch, channels, length, state, groups, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(batch, channels, length, generator=gen),
        delta=torch.randn(batch, channels, length, generator=gen),
        A=-torch.rand(channels, state, generator=gen) * 4,
        B=torch.randn(batch, groups, state, length, generator=gen),
        C=torch.randn(batch, groups, state, length, generator=gen),
        D=torch.randn(channels, generator=gen),
        delta_bias=torch.randn(channels, generator=gen),
        delta_softplus=True)


@pytest.mark.parametrize('length', [1, 2, 15, 16, 17, 63, 64, 65, 300, 4100])
@pytest.mark.parametrize('chunk_size', [4, 64])
def test_chunked_matches_sequential(length, chunk_size):
    args = _inputs(2, 8, length, 2, 4)
    expected = selective_scan_ref(**args)
    actual = selective_scan_chunked(**args, chunk_size=chunk_size)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_chunked_gradients_match_sequential():
    args = _inputs(1, 4, 70, 3, 2, seed=1)
    for key in ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias'):
        args[key].requires_grad_()
    grad_out = torch.randn(1, 4, 70)
    grads = []
    for fn in (selective_scan_ref, selective_scan_chunked):
        outputs = torch.autograd.grad((fn(**args) * grad_out).sum(), [
            args[k] for k in ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')
        ])
        grads.append(outputs)
    for expected, actual in zip(*grads):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_selective_scan_without_optional_terms():
    args = _inputs(2, 6, 33, 1, 3)
    args.update(D=None, delta_bias=None, delta_softplus=False)
    args['delta'] = args['delta'].abs()
    torch.testing.assert_close(
        selective_scan(**args), selective_scan_ref(**args), rtol=1e-5,
        atol=1e-5)


def test_strong_decay_does_not_overflow():
    args = _inputs(1, 4, 257, 16, 1)
    args['A'] = -torch.full((4, 16), 50.0)
    args['delta'] = torch.full((1, 4, 257), 5.0)
    out = selective_scan_chunked(**args, chunk_size=32)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, selective_scan_ref(**args))


def test_linear_recurrence_matches_loop():
    decay = torch.rand(3, 100, 2)
    drive = torch.randn(3, 100, 2)
    state = torch.zeros(3, 2)
    expected = []
    for t in range(100):
        state = decay[:, t] * state + drive[:, t]
        expected.append(state)
    torch.testing.assert_close(
        linear_recurrence(decay, drive, chunk_size=8),
        torch.stack(expected, 1))


def test_channels_must_split_into_groups():
    args = _inputs(1, 6, 5, 1, 4)
    with pytest.raises(ValueError, match='cannot be split'):
        selective_scan(**args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_dispatch_matches_reference():
    args = _inputs(2, 8, 100, 1, 4)
    cuda_args = {k: v.cuda() if torch.is_tensor(v) else v
                 for k, v in args.items()}
    torch.testing.assert_close(
        selective_scan(**cuda_args).cpu(), selective_scan_ref(**args),
        rtol=1e-3, atol=1e-3)


HAS_EXT = extension_available()
requires_ext = pytest.mark.skipif(
    not HAS_EXT, reason='mmtvmamba._ext is not built')


@pytest.fixture
def calls(monkeypatch):
    """Count the calls of the fused op and of the chunked scan made by
    selective_scan."""
    counts = {'fused': 0, 'torch': 0}
    fused, chunked = scan_module.selective_scan_fwd, selective_scan_chunked

    def counted_fused(*args, **kwargs):
        counts['fused'] += 1
        return fused(*args, **kwargs)

    def counted_chunked(*args, **kwargs):
        counts['torch'] += 1
        return chunked(*args, **kwargs)

    monkeypatch.setattr(scan_module, 'selective_scan_fwd', counted_fused)
    monkeypatch.setattr(scan_module, 'selective_scan_chunked',
                        counted_chunked)
    monkeypatch.delenv(scan_module.SCAN_IMPL_ENV, raising=False)
    return counts


def _requires_grad(args):
    for key in ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias'):
        args[key].requires_grad_()
    return args


@requires_ext
def test_dispatch_uses_fused_under_no_grad(calls):
    args = _requires_grad(_inputs(2, 8, 70, 1, 4))

    with torch.no_grad():
        out = selective_scan(**args)

    assert calls == {'fused': 1, 'torch': 0}
    assert not out.requires_grad
    torch.testing.assert_close(
        out, selective_scan_ref(**args), rtol=1e-5, atol=1e-5)


@requires_ext
def test_dispatch_uses_fused_without_grad_inputs(calls):
    args = _inputs(2, 8, 70, 2, 4)

    out = selective_scan(**args)

    assert calls == {'fused': 1, 'torch': 0}
    with scan_impl('fused'):
        assert torch.equal(selective_scan(**args), out)


def test_dispatch_uses_torch_when_grad_needed(calls):
    args = _requires_grad(_inputs(2, 8, 70, 1, 4))

    out = selective_scan(**args)
    out.sum().backward()

    assert calls == {'fused': 0, 'torch': 1}
    assert args['u'].grad is not None
    with torch.no_grad(), scan_impl('torch'):
        assert torch.equal(selective_scan(**args), out.detach())


@requires_ext
def test_scan_impl_forces_each_path(calls):
    args = _inputs(1, 8, 50, 1, 4)
    outputs = {}

    for name in ('torch', 'fused', 'torch'):
        with scan_impl(name) as active:
            assert active == name
            assert get_scan_impl() == name
            outputs[name] = selective_scan(**args)

    assert calls == {'fused': 1, 'torch': 2}
    assert get_scan_impl() == 'auto'
    torch.testing.assert_close(
        outputs['fused'], outputs['torch'], rtol=1e-5, atol=1e-5)


def test_scan_impl_nests_and_restores_on_error(calls):
    with scan_impl('torch'):
        with pytest.raises(KeyError):
            with scan_impl('fused'):
                assert get_scan_impl() == 'fused'
                raise KeyError('inner')
        assert get_scan_impl() == 'torch'
    assert get_scan_impl() == 'auto'


def test_scan_impl_rejects_invalid_name():
    with pytest.raises(ValueError, match="implementation 'cuda' from "
                       r'scan_impl\(\)'):
        with scan_impl('cuda'):
            pass


@requires_ext
def test_env_var_selects_impl(calls, monkeypatch):
    args = _inputs(1, 8, 30, 1, 4)

    monkeypatch.setenv('MMTVMAMBA_SCAN_IMPL', 'torch')
    selective_scan(**args)
    assert calls == {'fused': 0, 'torch': 1}

    monkeypatch.setenv('MMTVMAMBA_SCAN_IMPL', 'FUSED')
    selective_scan(**args)
    assert calls == {'fused': 1, 'torch': 1}

    with scan_impl('torch'):
        selective_scan(**args)
    assert calls == {'fused': 1, 'torch': 2}


def test_env_var_rejects_invalid_value(monkeypatch):
    monkeypatch.setenv('MMTVMAMBA_SCAN_IMPL', 'fast')

    with pytest.raises(ValueError, match="implementation 'fast' from the "
                       'environment variable MMTVMAMBA_SCAN_IMPL'):
        selective_scan(**_inputs(1, 4, 5, 1, 1))


@requires_ext
def test_forced_fused_rejects_grad():
    args = _requires_grad(_inputs(1, 4, 5, 1, 1))

    with scan_impl('fused'), pytest.raises(RuntimeError,
                                           match='has no backward'):
        selective_scan(**args)


def test_forced_fused_rejects_missing_extension(monkeypatch):
    monkeypatch.setattr(scan_module, 'fused_scan_available', lambda: False)

    with scan_impl('fused'), pytest.raises(
            RuntimeError, match='mmtvmamba._ext is not built'):
        selective_scan(**_inputs(1, 4, 5, 1, 1))


def test_forced_fused_rejects_non_cpu_tensors():
    args = {
        key: value.to('meta') if torch.is_tensor(value) else value
        for key, value in _inputs(1, 4, 5, 1, 1).items()
    }

    with scan_impl('fused'), pytest.raises(
            ValueError, match='runs on CPU tensors only, but u is on meta'):
        selective_scan(**args)


def test_auto_without_extension_uses_torch(calls, monkeypatch):
    monkeypatch.setattr(scan_module, 'fused_scan_available', lambda: False)
    args = _inputs(1, 8, 30, 1, 4)

    with torch.no_grad():
        out = selective_scan(**args)

    assert calls == {'fused': 0, 'torch': 1}
    torch.testing.assert_close(
        out, selective_scan_ref(**args), rtol=1e-5, atol=1e-5)


@requires_ext
def test_compile_traces_fused_dispatch():
    args = _inputs(1, 8, 40, 1, 4)

    def scan(u, delta, A, B, C, D, delta_bias):
        return selective_scan(u, delta, A, B, C, D, delta_bias, True)

    with torch.no_grad():
        compiled = torch.compile(scan, backend='aot_eager', fullgraph=True)
        out = compiled(*(args[key] for key in ('u', 'delta', 'A', 'B', 'C',
                                                'D', 'delta_bias')))

    torch.testing.assert_close(out, selective_scan(**args), rtol=0, atol=0)
