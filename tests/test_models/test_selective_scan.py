# Copyright (c) mmtvmamba contributors. All rights reserved.
import pytest
import torch

from mmtvmamba.models.selective_scan import (linear_recurrence,
                                             selective_scan,
                                             selective_scan_chunked,
                                             selective_scan_ref)


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
