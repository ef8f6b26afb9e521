# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Bitwise ternary and five-level matrix multiplication.

The functions call the C++ ops ``torch.ops.mmtvmamba.*`` when the
``mmtvmamba._ext`` extension is built and fall back to the pure-PyTorch
reference in :mod:`mmtvmamba.ops.ternary_reference` otherwise. Both share the
packed layout described there, so packed tensors are interchangeable.

Packed tensors are opaque: slicing or reordering their rows breaks the
16-row interleaving, so repack the codes instead.
"""
from typing import List, Optional

import torch
from torch import Tensor

from . import ternary_reference as reference
from .extension import extension_available

ISA_NAMES = ('auto', 'avx512', 'avx2', 'portable')


def pack_ternary(codes: Tensor, check: bool = False) -> Tensor:
    """Pack ternary codes into a nonzero and a sign bit-plane.

    Args:
        codes (Tensor): int8 CPU tensor of shape (rows, K) with values in
            {-1, 0, 1}. Any strides are accepted.
        check (bool): Raise ``ValueError`` on values outside {-1, 0, 1}.
            ``MMTVMAMBA_DEBUG_CHECKS=1`` enables it for every call.
            Defaults to False.

    Returns:
        Tensor: int32 tensor of shape (rows, 2 * ceil(K / 32)).
    """
    if extension_available():
        return torch.ops.mmtvmamba.pack_ternary(codes, check)
    return reference.pack_ternary(codes, check)


def pack_quinary(codes: Tensor, check: bool = False) -> Tensor:
    """Pack five-level codes as the ternary pair hi = clip(a, -1, 1), a - hi.

    Args:
        codes (Tensor): int8 CPU tensor of shape (rows, K) with values in
            {-2, ..., 2}. Any strides are accepted.
        check (bool): Raise ``ValueError`` on values outside [-2, 2].
            ``MMTVMAMBA_DEBUG_CHECKS=1`` enables it for every call.
            Defaults to False.

    Returns:
        Tensor: int32 tensor of shape (rows, 4 * ceil(K / 32)).
    """
    if extension_available():
        return torch.ops.mmtvmamba.pack_quinary(codes, check)
    return reference.pack_quinary(codes, check)


def unpack_ternary(packed: Tensor, k: int) -> Tensor:
    """Recover int8 codes of shape (rows, k) from ``pack_ternary`` output.

    Args:
        packed (Tensor): Output of :func:`pack_ternary`.
        k (int): Number of codes per row used when packing.

    Returns:
        Tensor: int8 tensor of shape (rows, k).
    """
    if extension_available():
        return torch.ops.mmtvmamba.unpack_ternary(packed, k)
    return reference.unpack_ternary(packed, k)


def unpack_quinary(packed: Tensor, k: int) -> Tensor:
    """Recover int8 codes of shape (rows, k) from ``pack_quinary`` output.

    Args:
        packed (Tensor): Output of :func:`pack_quinary`.
        k (int): Number of codes per row used when packing.

    Returns:
        Tensor: int8 tensor of shape (rows, k).
    """
    if extension_available():
        return torch.ops.mmtvmamba.unpack_quinary(packed, k)
    return reference.unpack_quinary(packed, k)


def ternary_mm_int(a_packed: Tensor, w_packed: Tensor, k: int) -> Tensor:
    """Compute ``a @ w.T`` exactly for ternary ``a`` (M, K) and ``w`` (N, K).

    Args:
        a_packed (Tensor): :func:`pack_ternary` output for the M rows of a.
        w_packed (Tensor): :func:`pack_ternary` output for the N rows of w.
        k (int): K of both operands, as packed.

    Returns:
        Tensor: int32 tensor of shape (M, N).
    """
    if extension_available():
        return torch.ops.mmtvmamba.ternary_mm_int(a_packed, w_packed, k)
    return reference.ternary_mm_int(a_packed, w_packed, k)


def quinary_mm_int(a_packed: Tensor, w_packed: Tensor, k: int) -> Tensor:
    """Compute ``a @ w.T`` exactly for five-level ``a`` and ternary ``w``.

    Args:
        a_packed (Tensor): :func:`pack_quinary` output for the M rows of a.
        w_packed (Tensor): :func:`pack_ternary` output for the N rows of w.
        k (int): K of both operands, as packed.

    Returns:
        Tensor: int32 tensor of shape (M, N).
    """
    if extension_available():
        return torch.ops.mmtvmamba.quinary_mm_int(a_packed, w_packed, k)
    return reference.quinary_mm_int(a_packed, w_packed, k)


def ternary_mm(a_packed: Tensor,
               w_packed: Tensor,
               k: int,
               row_scale: Optional[Tensor],
               col_scale: Tensor,
               bias: Optional[Tensor] = None,
               k_scale: Optional[Tensor] = None,
               residual: Optional[Tensor] = None,
               activation: str = 'none') -> Tensor:
    """Compute a scaled ternary product with bias, residual and activation.

    The float32 output is ``activation(acc * (row_scale[m] * col_scale[n])
    + bias[n] + residual[m, n])``, where ``acc`` is the exact
    :func:`ternary_mm_int` result. The C++ op applies the scales and the bias while it stores
    each output tile, and the residual and activation while the tile is
    still in the cache. Its SIMD
    paths use a fused multiply-add, so results may differ from the
    reference in the last bit.

    Args:
        a_packed (Tensor): :func:`pack_ternary` output for the M rows of a.
        w_packed (Tensor): :func:`pack_ternary` output for the N rows of w.
        k (int): K of both operands, as packed.
        row_scale (Tensor, optional): float32 per-row (per-token)
            activation scale of shape (M,), or None for 1.
        col_scale (Tensor): float32 weight scale of shape (1,) or (N,).
        bias (Tensor, optional): float32 bias of shape (N,).
            Defaults to None.
        k_scale (Tensor, optional): float32 activation scale of each
            32-element word of K, shape (ceil(K / 32),): the dot product
            over word ``j`` is multiplied by ``k_scale[j]`` before the
            words are summed. Runs of equal entries are summed exactly in
            int32 first, so a few long runs cost little. None for 1.
            Defaults to None.
        residual (Tensor, optional): float32 (M, N) tensor, any strides,
            added to the output before the activation. Defaults to None.
        activation (str): ``'gelu'`` applies the exact (erf) GELU of
            :class:`torch.nn.GELU` last; ``'none'`` applies nothing. The
            AVX-512 path evaluates erf with an approximation whose absolute
            error is below 1.5e-7. Defaults to ``'none'``.

    Returns:
        Tensor: float32 tensor of shape (M, N).
    """
    if extension_available():
        return torch.ops.mmtvmamba.ternary_mm(a_packed, w_packed, k, row_scale,
                                              col_scale, bias, k_scale,
                                              residual, activation)
    return reference.ternary_mm(a_packed, w_packed, k, row_scale, col_scale,
                                bias, k_scale, residual, activation)


def quinary_mm(a_packed: Tensor,
               w_packed: Tensor,
               k: int,
               row_scale: Optional[Tensor],
               col_scale: Tensor,
               bias: Optional[Tensor] = None,
               k_scale: Optional[Tensor] = None,
               residual: Optional[Tensor] = None,
               activation: str = 'none') -> Tensor:
    """Compute the scaled product of five-level ``a`` and ternary ``w.T``.

    Same contract as :func:`ternary_mm`, with ``a_packed`` from
    :func:`pack_quinary`. Both ternary parts of ``a`` are multiplied with
    the same weight words in one pass.

    Args:
        a_packed (Tensor): :func:`pack_quinary` output for the M rows of a.
        w_packed (Tensor): :func:`pack_ternary` output for the N rows of w.
        k (int): K of both operands, as packed.
        row_scale (Tensor, optional): float32 per-row activation scale of
            shape (M,), or None for 1.
        col_scale (Tensor): float32 weight scale of shape (1,) or (N,).
        bias (Tensor, optional): float32 bias of shape (N,).
            Defaults to None.
        k_scale (Tensor, optional): float32 activation scale of each
            32-element word of K, shape (ceil(K / 32),): the dot product
            over word ``j`` is multiplied by ``k_scale[j]`` before the
            words are summed. Runs of equal entries are summed exactly in
            int32 first, so a few long runs cost little. None for 1.
            Defaults to None.
        residual (Tensor, optional): float32 (M, N) tensor, any strides,
            added to the output before the activation. Defaults to None.
        activation (str): ``'gelu'`` applies the exact (erf) GELU of
            :class:`torch.nn.GELU` last; ``'none'`` applies nothing. The
            AVX-512 path evaluates erf with an approximation whose absolute
            error is below 1.5e-7. Defaults to ``'none'``.

    Returns:
        Tensor: float32 tensor of shape (M, N).
    """
    if extension_available():
        return torch.ops.mmtvmamba.quinary_mm(a_packed, w_packed, k, row_scale,
                                              col_scale, bias, k_scale,
                                              residual, activation)
    return reference.quinary_mm(a_packed, w_packed, k, row_scale, col_scale,
                                bias, k_scale, residual, activation)


def get_isa() -> str:
    """Return the active kernel path.

    Returns:
        str: ``'avx512'``, ``'avx2'`` or ``'portable'``, or ``'reference'``
        when the extension is not built. The first call of the C++ op reads
        ``MMTVMAMBA_TERNARY_ISA``.
    """
    if not extension_available():
        return 'reference'
    return torch.ops.mmtvmamba.ternary_isa()


def available_isas() -> List[str]:
    """Return the kernel paths this CPU and build support, fastest first."""
    if not extension_available():
        return []
    return list(torch.ops.mmtvmamba.ternary_isas())


def set_isa(name: str) -> str:
    """Select the kernel path for all later calls in this process.

    Args:
        name (str): One of ``'auto'``, ``'avx512'``, ``'avx2'`` or
            ``'portable'``. ``'auto'`` picks the fastest supported path.

    Returns:
        str: The name of the path now active.
    """
    if name not in ISA_NAMES:
        raise ValueError(f'invalid kernel path {name!r}; expected one of '
                         f'{", ".join(ISA_NAMES)}')
    if not extension_available():
        raise RuntimeError(f'cannot select the kernel path {name!r} because '
                           'mmtvmamba._ext is not built; build it with '
                           '`python setup.py build_ext --inplace`')
    return torch.ops.mmtvmamba.set_ternary_isa(name)
