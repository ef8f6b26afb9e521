# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fused CPU forward of the selective scan.

:func:`selective_scan_fwd` calls the C++ op
``torch.ops.mmtvmamba.selective_scan_fwd``, which computes softplus, the
decays and the recurrence in one pass per channel, threaded over
(batch, channel) rows. It has no backward: the model code calls it only
when no gradient is needed (see :mod:`mmtvmamba.models.selective_scan`).
When ``mmtvmamba._ext`` is not built, the function runs the chunked
pure-PyTorch scan instead.

The op picks its kernel at run time: ``'avx512'`` on CPUs with AVX-512F,
else ``'portable'`` (scalar C++). The environment variable
``MMTVMAMBA_SCAN_ISA`` (``auto``, ``avx512`` or ``portable``), read at the
first call, and :func:`set_scan_isa` override that choice.
"""
from typing import List, Optional

import torch
from torch import Tensor

from .extension import extension_available

SCAN_ISA_NAMES = ('auto', 'avx512', 'portable')

_OP = 'selective_scan_fwd'


def _check_cpu(tensor: Tensor, name: str) -> None:
    if tensor.device.type != 'cpu':
        raise RuntimeError(f'{_OP}: {name} must be a CPU tensor, but it is '
                           f'on {tensor.device}; move it with .cpu()')


def _check_float(tensor: Tensor, name: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f'{_OP}: {name} must be a torch.Tensor, but got '
                        f'{type(tensor).__name__}')
    _check_cpu(tensor, name)
    if not tensor.dtype.is_floating_point:
        raise TypeError(f'{_OP}: {name} must be a floating-point tensor, but '
                        f'got {tensor.dtype}; convert it with .float()')


def _check_channel_vector(tensor: Optional[Tensor], name: str,
                          channels: int) -> None:
    if tensor is None:
        return
    _check_float(tensor, name)
    if tensor.dim() != 1 or tensor.shape[0] != channels:
        raise ValueError(f'{_OP}: {name} must have shape ({channels}) = '
                         f'(D,), but got shape {list(tensor.shape)}')


def check_selective_scan_inputs(u: Tensor,
                                delta: Tensor,
                                A: Tensor,
                                B: Tensor,
                                C: Tensor,
                                D: Optional[Tensor] = None,
                                delta_bias: Optional[Tensor] = None) -> None:
    """Check the operands of :func:`selective_scan_fwd`.

    Applies the checks of the C++ op, with the same messages, so both paths
    reject the same inputs.

    Args:
        u (Tensor): Input of shape (batch, D, L).
        delta (Tensor): Time steps of shape (batch, D, L).
        A (Tensor): State matrix of shape (D, N).
        B (Tensor): Input projection of shape (batch, G, N, L).
        C (Tensor): Output projection of shape (batch, G, N, L).
        D (Tensor, optional): Skip weight of shape (D, ). Defaults to None.
        delta_bias (Tensor, optional): Time-step bias of shape (D, ).
            Defaults to None.

    Raises:
        RuntimeError: If an operand is not on the CPU.
        TypeError: If an operand is not a floating-point tensor.
        ValueError: If a shape does not match the others.
    """
    for name, tensor in (('u', u), ('delta', delta), ('A', A), ('B', B),
                         ('C', C)):
        _check_float(tensor, name)

    if u.dim() != 3:
        raise ValueError(f'{_OP}: u must be 3-D (batch, D, L), but got shape '
                         f'{list(u.shape)}')
    if delta.shape != u.shape:
        raise ValueError(f'{_OP}: delta must have the shape of u '
                         f'{list(u.shape)}, but got shape '
                         f'{list(delta.shape)}')
    batch, channels, length = u.shape

    if A.dim() != 2 or A.shape[0] != channels or A.shape[1] < 1:
        raise ValueError(f'{_OP}: A must have shape (D, N) = ({channels}, N) '
                         f'with N >= 1, but got shape {list(A.shape)}')
    states = A.shape[1]

    b_matches = (
        B.dim() == 4 and B.shape[0] == batch and B.shape[1] >= 1
        and B.shape[2] == states and B.shape[3] == length)
    if not b_matches:
        raise ValueError(f'{_OP}: B must have shape (batch, G, N, L) = '
                         f'({batch}, G, {states}, {length}) with G >= 1, but '
                         f'got shape {list(B.shape)}')
    if C.shape != B.shape:
        raise ValueError(f'{_OP}: C must have the shape of B '
                         f'{list(B.shape)}, but got shape {list(C.shape)}')
    groups = B.shape[1]
    if channels % groups:
        raise ValueError(f'{_OP}: {channels} channels (D) cannot be split '
                         f'into {groups} groups (G) of B and C; G must '
                         'divide D')

    _check_channel_vector(D, 'D', channels)
    _check_channel_vector(delta_bias, 'delta_bias', channels)


@torch.compiler.assume_constant_result
def fused_scan_available() -> bool:
    """Return whether the C++ op ``selective_scan_fwd`` is loaded.

    torch.compile evaluates this once while tracing and keeps the result as
    a constant, instead of tracing the library loading.
    """
    return extension_available()


def selective_scan_fwd(u: Tensor,
                       delta: Tensor,
                       A: Tensor,
                       B: Tensor,
                       C: Tensor,
                       D: Optional[Tensor] = None,
                       delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = False) -> Tensor:
    """Compute the selective scan forward with the fused C++ op.

    Computes, for channel ``d`` in group ``g = d // (D_total // G)``::

        dt  = softplus(delta + delta_bias)      (if delta_softplus)
        h_t = exp(dt_t * A[d]) * h_{t-1} + dt_t * u_t * B[g, :, t]
        y_t = sum_n C[g, n, t] * h_t[n] + D[d] * u_t

    with ``h_{-1} = 0`` and PyTorch's softplus (threshold 20). The result
    matches :func:`mmtvmamba.models.selective_scan_ref` up to float32
    rounding. The op has no backward: a backward pass through its output
    raises an error.

    All tensors must be floating-point CPU tensors. Other dtypes than
    float32 are converted to float32, and any strides are accepted.

    Args:
        u (Tensor): Input of shape (batch, D, L).
        delta (Tensor): Time steps of shape (batch, D, L).
        A (Tensor): State matrix of shape (D, N).
        B (Tensor): Input projection of shape (batch, G, N, L), with G
            dividing D.
        C (Tensor): Output projection of shape (batch, G, N, L).
        D (Tensor, optional): Skip weight of shape (D, ). Defaults to None.
        delta_bias (Tensor, optional): Bias of shape (D, ) added to
            ``delta``. Defaults to None.
        delta_softplus (bool): Apply softplus to ``delta + delta_bias``.
            Defaults to False.

    Returns:
        Tensor: float32 output of shape (batch, D, L).
    """
    if fused_scan_available():
        for name, tensor in (('u', u), ('delta', delta), ('A', A), ('B', B),
                             ('C', C), ('D', D), ('delta_bias', delta_bias)):
            # The dispatcher would route a CUDA operand to a missing CUDA
            # kernel, so the device gets its own message here.
            if isinstance(tensor, Tensor):
                _check_cpu(tensor, name)
        return torch.ops.mmtvmamba.selective_scan_fwd(u, delta, A, B, C, D,
                                                      delta_bias,
                                                      delta_softplus)

    check_selective_scan_inputs(u, delta, A, B, C, D, delta_bias)
    if u.numel() == 0:
        return torch.zeros(u.shape, dtype=torch.float32)
    # Imported here because mmtvmamba.models imports this package.
    from mmtvmamba.models.selective_scan import selective_scan_chunked
    return selective_scan_chunked(u, delta, A, B, C, D, delta_bias,
                                  delta_softplus)


def get_scan_isa() -> str:
    """Return the kernel path of the fused selective scan.

    Returns:
        str: ``'avx512'`` or ``'portable'``, or ``'reference'`` when the
        extension is not built. The first call of the C++ op reads
        ``MMTVMAMBA_SCAN_ISA``.
    """
    if not extension_available():
        return 'reference'
    return torch.ops.mmtvmamba.selective_scan_isa()


def available_scan_isas() -> List[str]:
    """Return the scan kernel paths this CPU and build support.

    Returns:
        list[str]: Path names, fastest first, or an empty list when the
        extension is not built.
    """
    if not extension_available():
        return []
    return list(torch.ops.mmtvmamba.selective_scan_isas())


def set_scan_isa(name: str) -> str:
    """Select the scan kernel path for all later calls in this process.

    Args:
        name (str): One of ``'auto'``, ``'avx512'`` or ``'portable'``.
            ``'auto'`` picks AVX-512 when the CPU supports it.

    Returns:
        str: The name of the path now active.
    """
    if name not in SCAN_ISA_NAMES:
        raise ValueError(f'invalid scan kernel path {name!r}; expected one '
                         f'of {", ".join(SCAN_ISA_NAMES)}')
    if not extension_available():
        raise RuntimeError(f'cannot select the scan kernel path {name!r} '
                           'because mmtvmamba._ext is not built; build it '
                           'with `python setup.py build_ext --inplace`')
    return torch.ops.mmtvmamba.set_selective_scan_isa(name)


def _selective_scan_fwd_fake(u: Tensor,
                             delta: Tensor,
                             A: Tensor,
                             B: Tensor,
                             C: Tensor,
                             D: Optional[Tensor] = None,
                             delta_bias: Optional[Tensor] = None,
                             delta_softplus: bool = False) -> Tensor:
    torch._check(u.dim() == 3, lambda: 'u must be 3-D (batch, D, L)')
    torch._check(delta.shape == u.shape,
                 lambda: 'delta must have the shape of u')
    torch._check(A.dim() == 2 and B.dim() == 4 and C.shape == B.shape,
                 lambda: 'A must be (D, N) and B, C (batch, G, N, L)')
    return u.new_empty(u.shape, dtype=torch.float32)


def register_fake_kernel() -> None:
    """Register the fake kernel of the op, once, after loading the
    library."""
    torch.library.register_fake('mmtvmamba::selective_scan_fwd',
                                _selective_scan_fwd_fake)
