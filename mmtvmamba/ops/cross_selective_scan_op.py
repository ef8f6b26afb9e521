# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fused CPU forward of the four-direction cross selective scan of SS2D.

:func:`cross_selective_scan_fwd` calls the C++ op
``torch.ops.mmtvmamba.cross_selective_scan_fwd``. It computes what
``cross_merge(selective_scan(cross_scan(x)))`` computes, but reads the
channels-last feature map and the position-indexed time steps, B and C in
place: each direction walks the positions in its own order, so none of the
reordered copies is made. Threads split the work by (batch, block of
channels), and each runs all four directions of its block.

The op has no backward and uses the kernel path of the selective scan op
(:func:`mmtvmamba.ops.set_scan_isa`). When ``mmtvmamba._ext`` is not built,
the function composes :func:`~mmtvmamba.models.layers.cross_scan`, the
chunked pure-PyTorch scan and :func:`~mmtvmamba.models.layers.cross_merge`
instead.
"""
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .extension import extension_available

NUM_DIRECTIONS = 4

_OP = 'cross_selective_scan_fwd'


@torch.compiler.assume_constant_result
def _op_available() -> bool:
    """Return whether the C++ op is loaded, as a constant for
    torch.compile."""
    return extension_available()


def _check_float(tensor: Tensor, name: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f'{_OP}: {name} must be a torch.Tensor, but got '
                        f'{type(tensor).__name__}')
    if tensor.device.type != 'cpu':
        raise RuntimeError(f'{_OP}: {name} must be a CPU tensor, but it is '
                           f'on {tensor.device}; move it with .cpu()')
    if not tensor.dtype.is_floating_point:
        raise TypeError(f'{_OP}: {name} must be a floating-point tensor, but '
                        f'got {tensor.dtype}; convert it with .float()')


def _check_direction_vector(tensor: Optional[Tensor], name: str,
                            rows: int) -> None:
    if tensor is None:
        return
    _check_float(tensor, name)
    if tensor.dim() != 1 or tensor.shape[0] != rows:
        raise ValueError(f'{_OP}: {name} must have shape ({rows}) = '
                         f'(4 * D,), but got shape {list(tensor.shape)}')


def _check_deltas(deltas: Sequence[Tensor]) -> None:
    if not isinstance(deltas, (list, tuple)):
        raise TypeError(f'{_OP}: deltas must be a list of '
                        f'{NUM_DIRECTIONS} tensors, one per scan direction, '
                        f'but got {type(deltas).__name__}')
    if len(deltas) != NUM_DIRECTIONS:
        raise ValueError(f'{_OP}: deltas must contain {NUM_DIRECTIONS} '
                         'tensors, one per scan direction, but got '
                         f'{len(deltas)}')
    for k, delta in enumerate(deltas):
        _check_float(delta, f'deltas[{k}]')


def check_cross_selective_scan_inputs(
        u: Tensor,
        deltas: Sequence[Tensor],
        A: Tensor,
        Bs: Tensor,
        Cs: Tensor,
        Ds: Optional[Tensor] = None,
        delta_bias: Optional[Tensor] = None) -> None:
    """Check the operands of :func:`cross_selective_scan_fwd`.

    Applies the checks of the C++ op, with the same messages, so both paths
    reject the same inputs.

    Args:
        u (Tensor): Feature map of shape (batch, H, W, D).
        deltas (Sequence[Tensor]): Four time-step tensors of shape
            (batch, H, W, D).
        A (Tensor): State matrix of shape (4 * D, N).
        Bs (Tensor): Input projections of shape (batch, H, W, 4, N).
        Cs (Tensor): Output projections of shape (batch, H, W, 4, N).
        Ds (Tensor, optional): Skip weights of shape (4 * D, ).
            Defaults to None.
        delta_bias (Tensor, optional): Time-step biases of shape (4 * D, ).
            Defaults to None.

    Raises:
        RuntimeError: If an operand is not on the CPU.
        TypeError: If an operand is not a floating-point tensor or deltas
            is not a list or tuple.
        ValueError: If deltas does not have 4 entries or a shape does not
            match the others.
    """
    _check_float(u, 'u')
    _check_deltas(deltas)
    for name, tensor in (('A', A), ('Bs', Bs), ('Cs', Cs)):
        _check_float(tensor, name)

    if u.dim() != 4:
        raise ValueError(f'{_OP}: u must be 4-D (batch, H, W, D) in '
                         'channels-last order, but got shape '
                         f'{list(u.shape)}')
    for k, delta in enumerate(deltas):
        if delta.shape != u.shape:
            raise ValueError(f'{_OP}: deltas[{k}] must have the shape of u '
                             f'{list(u.shape)}, but got shape '
                             f'{list(delta.shape)}')
    batch, height, width, channels = u.shape
    rows = NUM_DIRECTIONS * channels

    if A.dim() != 2 or A.shape[0] != rows or A.shape[1] < 1:
        raise ValueError(f'{_OP}: A must have shape (4 * D, N) = ({rows}, N) '
                         f'with N >= 1, but got shape {list(A.shape)}')
    states = A.shape[1]

    expected = (batch, height, width, NUM_DIRECTIONS, states)
    if tuple(Bs.shape) != expected:
        raise ValueError(f'{_OP}: Bs must have shape (batch, H, W, 4, N) = '
                         f'({", ".join(map(str, expected))}), but got shape '
                         f'{list(Bs.shape)}')
    if Cs.shape != Bs.shape:
        raise ValueError(f'{_OP}: Cs must have the shape of Bs '
                         f'{list(Bs.shape)}, but got shape {list(Cs.shape)}')

    _check_direction_vector(Ds, 'Ds', rows)
    _check_direction_vector(delta_bias, 'delta_bias', rows)


def compose_cross_selective_scan(scan: Callable[..., Tensor],
                                 u: Tensor,
                                 deltas: Sequence[Tensor],
                                 A: Tensor,
                                 Bs: Tensor,
                                 Cs: Tensor,
                                 Ds: Optional[Tensor] = None,
                                 delta_bias: Optional[Tensor] = None,
                                 delta_softplus: bool = False) -> Tensor:
    """Compute the cross selective scan from cross scan, ``scan`` and merge.

    Puts every direction's operands in its scan order with
    :func:`~mmtvmamba.models.layers.cross_scan`, runs ``scan`` on the
    (batch, 4 * D, L) result and sums the directions back with
    :func:`~mmtvmamba.models.layers.cross_merge`.

    Args:
        scan (Callable): A selective scan with the signature of
            :func:`~mmtvmamba.models.selective_scan_ref`.
        u, deltas, A, Bs, Cs, Ds, delta_bias, delta_softplus: As for
            :func:`cross_selective_scan_fwd`.

    Returns:
        Tensor: The float32 output (batch, H, W, D), contiguous.
    """
    # Imported here because mmtvmamba.models imports this package.
    from mmtvmamba.models.layers.cross_scan import cross_merge, cross_scan

    batch, height, width, channels = u.shape
    length = height * width
    k = NUM_DIRECTIONS

    def scan_order(tensor: Tensor, direction: int) -> Tensor:
        return cross_scan(tensor.permute(0, 3, 1, 2))[:, direction]

    xs = cross_scan(u.permute(0, 3, 1, 2)).reshape(batch, k * channels,
                                                   length)
    dts = torch.stack([scan_order(d, i) for i, d in enumerate(deltas)], 1)
    Bs = torch.stack([scan_order(Bs[..., i, :], i) for i in range(k)], 1)
    Cs = torch.stack([scan_order(Cs[..., i, :], i) for i in range(k)], 1)

    ys = scan(xs, dts.reshape(batch, k * channels, length), A, Bs, Cs, Ds,
              delta_bias, delta_softplus)
    y = cross_merge(ys.view(batch, k, channels, length), height, width)
    return y.view(batch, channels, height, width).permute(0, 2, 3,
                                                          1).contiguous()


def cross_selective_scan_ref(u: Tensor,
                             deltas: Sequence[Tensor],
                             A: Tensor,
                             Bs: Tensor,
                             Cs: Tensor,
                             Ds: Optional[Tensor] = None,
                             delta_bias: Optional[Tensor] = None,
                             delta_softplus: bool = False) -> Tensor:
    """Compute the cross selective scan with the sequential reference scan.

    The slow, obvious form that the op is tested against: cross scan,
    :func:`~mmtvmamba.models.selective_scan_ref` and cross merge. Takes the
    arguments of :func:`cross_selective_scan_fwd`.

    Returns:
        Tensor: The float32 output (batch, H, W, D).
    """
    from mmtvmamba.models.selective_scan import selective_scan_ref
    return compose_cross_selective_scan(selective_scan_ref, u, deltas, A, Bs,
                                        Cs, Ds, delta_bias, delta_softplus)


def cross_selective_scan_fwd(u: Tensor,
                             deltas: Sequence[Tensor],
                             A: Tensor,
                             Bs: Tensor,
                             Cs: Tensor,
                             Ds: Optional[Tensor] = None,
                             delta_bias: Optional[Tensor] = None,
                             delta_softplus: bool = False) -> Tensor:
    """Compute the four-direction selective scan of SS2D with the C++ op.

    Direction ``k`` walks the positions of the (H, W) grid in the order of
    :func:`~mmtvmamba.models.layers.cross_scan`: 0 row-major, 1
    column-major, 2 and 3 the same reversed. Along its walk it runs the
    recurrence of :func:`~mmtvmamba.ops.selective_scan_fwd` for channel
    ``d`` with ``A[k * D + d]``, ``Ds[k * D + d]``,
    ``delta_bias[k * D + d]``, the time steps ``deltas[k]`` and
    ``Bs[..., k, :]``, ``Cs[..., k, :]`` at each position. The output at a
    position is the sum of the four directions' outputs there, so the
    result equals ``cross_merge(selective_scan(cross_scan(x)))`` in
    channels-last layout, up to float32 rounding. The op has no backward:
    a backward pass through its output raises an error.

    All tensors must be floating-point CPU tensors; other dtypes than
    float32 are converted to float32. Any strides are accepted: B and C
    are read in place, and u and deltas are copied only when their channel
    stride is not 1.

    Args:
        u (Tensor): Feature map (batch, H, W, D), for example an NCHW
            tensor in channels-last memory format permuted to NHWC.
        deltas (Sequence[Tensor]): One tensor of time steps per direction,
            each (batch, H, W, D) and indexed by position, not by scan
            order, before the bias.
        A (Tensor): State matrix (4 * D, N).
        Bs (Tensor): Input projections (batch, H, W, 4, N) by position.
        Cs (Tensor): Output projections (batch, H, W, 4, N) by position.
        Ds (Tensor, optional): Skip weights (4 * D, ). Defaults to None.
        delta_bias (Tensor, optional): Biases (4 * D, ) added to the time
            steps. Defaults to None.
        delta_softplus (bool): Apply softplus to the biased time steps.
            Defaults to False.

    Returns:
        Tensor: The float32 output (batch, H, W, D), contiguous.
    """
    if _op_available():
        # The dispatcher would route a CUDA operand to a missing CUDA
        # kernel and reject a deltas argument that is not a list with a
        # schema error, so both cases get their own message here.
        _check_deltas(deltas)
        for name, tensor in (('u', u), ('A', A), ('Bs', Bs), ('Cs', Cs),
                             ('Ds', Ds), ('delta_bias', delta_bias)):
            if isinstance(tensor, Tensor) and tensor.device.type != 'cpu':
                _check_float(tensor, name)
        return torch.ops.mmtvmamba.cross_selective_scan_fwd(
            u, list(deltas), A, Bs, Cs, Ds, delta_bias, delta_softplus)

    check_cross_selective_scan_inputs(u, deltas, A, Bs, Cs, Ds, delta_bias)
    if u.numel() == 0:
        return torch.zeros(u.shape, dtype=torch.float32)
    from mmtvmamba.models.selective_scan import selective_scan_chunked
    return compose_cross_selective_scan(selective_scan_chunked, u, deltas, A,
                                        Bs, Cs, Ds, delta_bias,
                                        delta_softplus)


def _cross_selective_scan_fwd_fake(u: Tensor,
                                   deltas: Sequence[Tensor],
                                   A: Tensor,
                                   Bs: Tensor,
                                   Cs: Tensor,
                                   Ds: Optional[Tensor] = None,
                                   delta_bias: Optional[Tensor] = None,
                                   delta_softplus: bool = False) -> Tensor:
    torch._check(u.dim() == 4, lambda: 'u must be 4-D (batch, H, W, D)')
    torch._check(
        len(deltas) == NUM_DIRECTIONS,
        lambda: f'deltas must contain {NUM_DIRECTIONS} tensors')
    for delta in deltas:
        torch._check(delta.shape == u.shape,
                     lambda: 'every delta must have the shape of u')
    torch._check(A.dim() == 2 and Bs.dim() == 5 and Cs.shape == Bs.shape,
                 lambda: 'A must be (4 * D, N) and Bs, Cs (batch, H, W, 4, N)')
    return u.new_empty(u.shape, dtype=torch.float32)


def register_fake_kernel() -> None:
    """Register the fake kernel of the op, once, after loading the
    library."""
    torch.library.register_fake('mmtvmamba::cross_selective_scan_fwd',
                                _cross_selective_scan_fwd_fake)
