# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Selective scan (the S6 recurrence) with one entry point.

:func:`selective_scan` computes, for every channel ``d`` and state ``n``::

    delta = softplus(delta + delta_bias)          (if delta_softplus)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t   = sum_n C_t * h_t + D * u_t

B and C are shared by groups of channels: with ``B`` of shape
(batch, G, N, L), channel ``d`` uses group ``d // (D_total // G)``. This is
how SS2D stores one B and C per scan direction.

Implementations, chosen per call by :func:`selective_scan`:

* ``fused``: the C++ forward op :func:`mmtvmamba.ops.selective_scan_fwd`.
  It runs on CPU tensors when ``mmtvmamba._ext`` is built and has no
  backward, so it serves inference.
* ``torch``: :func:`selective_scan_chunked`, a chunked pure-PyTorch form
  whose loop has about 2 * sqrt(L) steps, that supports autograd and that
  matches the sequential :func:`selective_scan_ref` up to float rounding.
* On CUDA tensors, mamba_ssm's kernel when that package is installed.

The setting ``auto`` (the default) uses mamba_ssm on CUDA when it is
installed, the fused op on CPU when the extension is built and no
gradient is needed (``torch.is_grad_enabled()`` is False or no input
requires grad), and the ``torch`` form otherwise. ``torch`` forces the
chunked form on every device. ``fused`` forces the C++ op and raises when
it cannot run (extension not built, tensors not on the CPU, or a gradient
needed).

Select the setting with the environment variable ``MMTVMAMBA_SCAN_IMPL``
(``auto``, ``torch`` or ``fused``, read at every call) or, taking
precedence, for a block of code::

    with scan_impl('torch'):
        model(inputs)

The override is process-wide, so it also applies to other threads while
the block runs.

:func:`cross_selective_scan` runs the four-direction scan of SS2D on a
channels-last feature map with the same choice: the fused C++ op
:func:`mmtvmamba.ops.cross_selective_scan_fwd` where :func:`selective_scan`
would run the fused op (see :func:`fused_scan_applies`), else the cross
scan, :func:`selective_scan` and the cross merge.
"""
import contextlib
import math
import os
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmtvmamba.ops import (cross_selective_scan_fwd, fused_scan_available,
                           selective_scan_fwd)
from mmtvmamba.ops.cross_selective_scan_op import \
    compose_cross_selective_scan

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:  # mamba_ssm is optional and needs CUDA.
    selective_scan_fn = None

__all__ = [
    'selective_scan', 'selective_scan_ref', 'selective_scan_chunked',
    'linear_recurrence', 'scan_impl', 'get_scan_impl', 'SCAN_IMPLS',
    'cross_selective_scan', 'fused_scan_applies'
]

SCAN_IMPLS = ('auto', 'torch', 'fused')
SCAN_IMPL_ENV = 'MMTVMAMBA_SCAN_IMPL'

# Setting of the innermost active scan_impl() block, or None outside them.
_impl_override: Optional[str] = None


def _check_impl(name: str, source: str) -> str:
    if name not in SCAN_IMPLS:
        raise ValueError(f'invalid selective scan implementation {name!r} '
                         f'from {source}; expected one of '
                         f'{", ".join(SCAN_IMPLS)}')
    return name


def get_scan_impl() -> str:
    """Return the scan implementation setting in effect.

    Returns:
        str: The setting of the innermost :func:`scan_impl` block, else the
        value of ``MMTVMAMBA_SCAN_IMPL``, else ``'auto'``.
    """
    if _impl_override is not None:
        return _impl_override
    value = os.environ.get(SCAN_IMPL_ENV, '').strip().lower()
    if not value:
        return 'auto'
    return _check_impl(value, f'the environment variable {SCAN_IMPL_ENV}')


@contextlib.contextmanager
def scan_impl(name: str) -> Iterator[str]:
    """Force the selective scan implementation inside a ``with`` block.

    Blocks nest, and the previous setting returns on exit. The setting is
    process-wide, not per thread.

    Args:
        name (str): ``'auto'``, ``'torch'`` or ``'fused'``, as described
            in the module docstring.

    Yields:
        str: ``name``.
    """
    global _impl_override
    _check_impl(name, 'scan_impl()')
    previous = _impl_override
    _impl_override = name
    try:
        yield name
    finally:
        _impl_override = previous


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    """Return float32 views shaped (batch, G, D/G, L, N) for the scan."""
    batch, channels, length = u.shape
    groups = B.shape[1]
    if channels % groups:
        raise ValueError(f'{channels} channels cannot be split into '
                         f'{groups} groups of B and C')
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    shape = (batch, groups, channels // groups, length, 1)
    delta = delta.reshape(shape)
    u = u.float().reshape(shape)
    A = A.float().reshape(1, groups, channels // groups, 1, -1)
    B = B.float().transpose(2, 3)[:, :, None]
    C = C.float().transpose(2, 3)[:, :, None]
    return u, delta, A, B, C


def _finish(y, u, D, shape):
    y = y.reshape(shape)
    if D is not None:
        y = y + u.float() * D.float()[:, None]
    return y


def selective_scan_ref(u: Tensor,
                       delta: Tensor,
                       A: Tensor,
                       B: Tensor,
                       C: Tensor,
                       D: Optional[Tensor] = None,
                       delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = False) -> Tensor:
    """Compute the selective scan with a sequential loop over time.

    The slow, obvious reference against which faster forms are tested.

    Args:
        u (Tensor): Input of shape (batch, D, L).
        delta (Tensor): Time steps of shape (batch, D, L).
        A (Tensor): State matrix of shape (D, N), real and negative.
        B (Tensor): Input projection of shape (batch, G, N, L).
        C (Tensor): Output projection of shape (batch, G, N, L).
        D (Tensor, optional): Skip weight of shape (D, ). Defaults to None.
        delta_bias (Tensor, optional): Bias of shape (D, ) added to
            ``delta``. Defaults to None.
        delta_softplus (bool): Apply softplus to ``delta``.
            Defaults to False.

    Returns:
        Tensor: Output of shape (batch, D, L) in float32.
    """
    u5, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias,
                                  delta_softplus)
    decay = torch.exp(delta * A)
    drive = delta * B * u5
    state = torch.zeros_like(decay[..., 0, :])
    outputs = []
    for t in range(u.shape[-1]):
        state = decay[..., t, :] * state + drive[..., t, :]
        outputs.append((state * C[..., t, :]).sum(-1))
    y = torch.stack(outputs, dim=-1)
    return _finish(y, u, D, u.shape)


def _scan_chunks(decay: Tensor, drive: Tensor):
    """Run ``h_t = decay_t * h_{t-1} + drive_t`` along axis -2 of every
    chunk at once.

    The loop runs over positions inside a chunk, so its length is the chunk
    size, and each step updates all chunks and channels together. Returns
    the running products of the decays and the states, shaped like the
    inputs.
    """
    state = torch.zeros_like(drive[..., 0, :])
    product = torch.ones_like(state)
    states, products = [], []
    # unbind gives views whose backward is one stack; indexing a step at a
    # time would allocate a full-size gradient per step.
    for decay_t, drive_t in zip(decay.unbind(-2), drive.unbind(-2)):
        state = decay_t * state + drive_t
        product = product * decay_t
        states.append(state)
        products.append(product)
    return torch.stack(products, -2), torch.stack(states, -2)


def linear_recurrence(decay: Tensor,
                      drive: Tensor,
                      chunk_size: Optional[int] = None) -> Tensor:
    """Return all states of ``h_t = decay_t * h_{t-1} + drive_t``, h_0 = 0.

    Time runs along axis -2. The sequence is cut into chunks that are
    scanned together, the states at the chunk ends are scanned the same way
    (recursively), and each chunk then adds its carried-in state times its
    running decay product. The Python loop thus has about 2 * sqrt(L) steps
    instead of L. Decays lie in [0, 1], so no product overflows.

    Args:
        decay (Tensor): Decays in [0, 1], shape (..., L, N).
        drive (Tensor): Inputs, shaped like ``decay``.
        chunk_size (int, optional): Chunk length; None picks
            ``max(16, isqrt(L))``. Defaults to None.
    """
    length = decay.shape[-2]
    if chunk_size is None:
        chunk_size = max(16, math.isqrt(length))
    if length <= chunk_size:
        return _scan_chunks(decay, drive)[1]

    num_chunks = -(-length // chunk_size)
    pad = num_chunks * chunk_size - length
    if pad:
        decay = F.pad(decay, (0, 0, 0, pad), value=1.0)
        drive = F.pad(drive, (0, 0, 0, pad), value=0.0)
    decay = decay.unflatten(-2, (num_chunks, chunk_size))
    drive = drive.unflatten(-2, (num_chunks, chunk_size))

    products, chunk_states = _scan_chunks(decay, drive)
    end_states = linear_recurrence(products[..., -1, :],
                                   chunk_states[..., -1, :])
    carried = F.pad(end_states[..., :-1, :], (0, 0, 1, 0))
    states = chunk_states + products * carried.unsqueeze(-2)
    return states.flatten(-3, -2)[..., :length, :]


def selective_scan_chunked(u: Tensor,
                           delta: Tensor,
                           A: Tensor,
                           B: Tensor,
                           C: Tensor,
                           D: Optional[Tensor] = None,
                           delta_bias: Optional[Tensor] = None,
                           delta_softplus: bool = False,
                           chunk_size: Optional[int] = None) -> Tensor:
    """Compute the selective scan with a chunked linear recurrence.

    Takes the arguments of :func:`selective_scan_ref` plus ``chunk_size``
    and returns the same float32 output up to rounding.
    """
    u5, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias,
                                  delta_softplus)
    decay = torch.exp(delta * A)
    drive = delta * B * u5
    states = linear_recurrence(decay, drive, chunk_size)
    y = (states * C).sum(-1)
    return _finish(y, u, D, u.shape)


def _needs_grad(*tensors: Optional[Tensor]) -> bool:
    """Return whether autograd would record an op on ``tensors``."""
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def _check_fused_usable(u: Tensor, needs_grad: bool) -> None:
    """Raise if the fused op was forced but cannot run on these inputs."""
    if u.device.type != 'cpu':
        raise ValueError('the fused selective scan runs on CPU tensors only, '
                         f'but u is on {u.device}; use scan_impl("auto") or '
                         'MMTVMAMBA_SCAN_IMPL=auto')
    if not fused_scan_available():
        raise RuntimeError('the fused selective scan was requested, but '
                           'mmtvmamba._ext is not built; build it with '
                           '`python setup.py build_ext --inplace` or use '
                           'the "torch" implementation')
    if needs_grad:
        raise RuntimeError('the fused selective scan has no backward, but an '
                           'input requires grad; run under torch.no_grad() '
                           'or use the "auto" or "torch" implementation')


def selective_scan(u: Tensor,
                   delta: Tensor,
                   A: Tensor,
                   B: Tensor,
                   C: Tensor,
                   D: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = False) -> Tensor:
    """Compute the selective scan with the implementation in effect.

    Takes the arguments of :func:`selective_scan_ref` and returns a float32
    tensor of shape (batch, D, L). The module docstring lists how the
    implementation is chosen.
    """
    impl = get_scan_impl()
    args = (u, delta, A, B, C, D, delta_bias, delta_softplus)
    if impl == 'torch':
        return selective_scan_chunked(*args)

    needs_grad = _needs_grad(u, delta, A, B, C, D, delta_bias)
    if impl == 'fused':
        _check_fused_usable(u, needs_grad)
        return selective_scan_fwd(*args)

    if u.is_cuda and selective_scan_fn is not None:
        y = selective_scan_fn(u, delta, A, B.contiguous(), C.contiguous(), D,
                              None, delta_bias, delta_softplus)
        return y.float()
    if u.device.type == 'cpu' and not needs_grad and fused_scan_available():
        return selective_scan_fwd(*args)
    return selective_scan_chunked(*args)


def fused_scan_applies(*tensors: Optional[Tensor]) -> bool:
    """Return whether :func:`selective_scan` would run the fused C++ op.

    That is the case when the setting is not ``'torch'``, every tensor is
    on the CPU, ``mmtvmamba._ext`` is built and no gradient is needed. With
    the setting ``'fused'`` and one of these conditions unmet, it returns
    False, so the caller's :func:`selective_scan` raises the error.

    Args:
        *tensors (Tensor, optional): The operands of the scan and the
            tensors they are computed from; None entries are skipped.

    Returns:
        bool: Whether the fused path applies.
    """
    if get_scan_impl() == 'torch':
        return False
    present = [t for t in tensors if t is not None]
    if any(t.device.type != 'cpu' for t in present):
        return False
    return fused_scan_available() and not _needs_grad(*present)


def cross_selective_scan(u: Tensor,
                         deltas: Sequence[Tensor],
                         A: Tensor,
                         Bs: Tensor,
                         Cs: Tensor,
                         Ds: Optional[Tensor] = None,
                         delta_bias: Optional[Tensor] = None,
                         delta_softplus: bool = False) -> Tensor:
    """Compute SS2D's four-direction scan with the implementation in effect.

    Takes the arguments of :func:`mmtvmamba.ops.cross_selective_scan_fwd`
    and returns its float32 (batch, H, W, D) output. Runs that op when
    :func:`fused_scan_applies`, else puts the operands in scan order with
    the cross scan, runs :func:`selective_scan` and merges the directions.
    """
    if fused_scan_applies(u, *deltas, A, Bs, Cs, Ds, delta_bias):
        return cross_selective_scan_fwd(u, deltas, A, Bs, Cs, Ds, delta_bias,
                                        delta_softplus)
    return compose_cross_selective_scan(selective_scan, u, deltas, A, Bs, Cs,
                                        Ds, delta_bias, delta_softplus)
