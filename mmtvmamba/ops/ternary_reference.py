# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Pure-PyTorch reference of the ternary matmul ops.

Each function has the signature and the packed layout of the matching op in
``torch.ops.mmtvmamba``, so a tensor packed by one can be used by the other.
It is used when the C++ extension is not built and as the oracle in tests.

Packed layout: a ``(rows, K)`` code matrix becomes an int32 tensor of shape
``(rows, planes * ceil(K / 32))`` whose elements are raw 32-bit words. Bit
``j`` of word ``k`` of a plane is element ``32 * k + j``. Ternary codes
use a nonzero plane and a sign plane. Five-level codes ``a`` are split into
``hi = clip(a, -1, 1)`` and ``lo = a - hi`` with two planes each. Rows are
interleaved in groups of 16: group ``g`` stores its words in the order
``[word][plane][row in group]``, and the last group holds only the rows
left, so there is no row padding. Padding bits beyond ``K`` are zero.
"""
import os
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

GROUP_ROWS = 16
WORD_BITS = 32
TERNARY_PLANES = 2
QUINARY_PLANES = 4

#: Activations the float matmul ops apply after the residual addition.
ACTIVATIONS = ('none', 'gelu')

# Dot products are bounded by 2 * K and are converted to float32, so K stays
# below 2**22 to keep them exact, as in the C++ op.
MAX_K = 1 << 22


def words_per_plane(k: int) -> int:
    """Return the number of 32-bit words per plane for ``k`` elements."""
    return (k + WORD_BITS - 1) // WORD_BITS


def _debug_checks_enabled() -> bool:
    return os.environ.get('MMTVMAMBA_DEBUG_CHECKS', '0') not in ('', '0')


def _check_cpu(tensor: Tensor, op: str, name: str) -> None:
    if tensor.device.type != 'cpu':
        raise RuntimeError(f'{op}: {name} must be a CPU tensor, but it is on '
                           f'{tensor.device}; move it with .cpu()')


def _check_codes(codes: Tensor, op: str, limit: int, check: bool) -> None:
    if not isinstance(codes, Tensor):
        raise TypeError(f'{op}: codes must be a torch.Tensor, but got '
                        f'{type(codes).__name__}')
    _check_cpu(codes, op, 'codes')
    if codes.dtype != torch.int8:
        raise TypeError(f'{op}: codes must be int8, but got {codes.dtype}; '
                        'convert with codes.to(torch.int8)')
    if codes.dim() != 2:
        raise ValueError(f'{op}: codes must be 2-D (rows, K), but got shape '
                         f'{list(codes.shape)}')
    if codes.numel() == 0:
        raise ValueError(f'{op}: codes must not be empty, but got shape '
                         f'{list(codes.shape)}')
    if codes.shape[1] >= MAX_K:
        raise ValueError(f'{op}: K={codes.shape[1]} is too large; the '
                         f'kernel supports K < {MAX_K}')
    if not (check or _debug_checks_enabled()):
        return

    bad = (codes < -limit) | (codes > limit)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f'{op}: codes[{row}, {col}] is '
                         f'{int(codes[row, col])}, outside [{-limit}, '
                         f'{limit}]; clamp or quantize the values to this '
                         'range first')


def _check_k(k: int, op: str) -> None:
    if not 0 < k < MAX_K:
        raise ValueError(f'{op}: k must be in [1, {MAX_K}), but got k={k}')


def _check_packed(packed: Tensor, planes: int, k: int, op: str,
                  name: str) -> None:
    packer = 'pack_quinary' if planes == QUINARY_PLANES else 'pack_ternary'
    _check_cpu(packed, op, name)
    if packed.dtype != torch.int32:
        raise TypeError(f'{op}: {name} must be an int32 packed tensor, but '
                        f'got {packed.dtype}; pack the codes with {packer}')
    if packed.dim() != 2 or packed.shape[0] == 0:
        raise ValueError(f'{op}: {name} must be a non-empty 2-D packed '
                         f'tensor, but got shape {list(packed.shape)}')
    expected = planes * words_per_plane(k)
    if packed.shape[1] != expected:
        raise ValueError(
            f'{op}: {name} has {packed.shape[1]} words per row, but k={k} '
            f'needs {expected} ({planes} planes of ceil(k / 32) words); '
            f'pass the K used when packing, and pack {name} with {packer}')


def _check_scale(tensor: Optional[Tensor], op: str, name: str, size: int,
                 allow_one: bool) -> None:
    if tensor is None:
        return
    _check_cpu(tensor, op, name)
    if tensor.dtype != torch.float32:
        raise TypeError(f'{op}: {name} must be float32, but got '
                        f'{tensor.dtype}; convert with .float()')
    size_ok = tensor.numel() == size or (allow_one and tensor.numel() == 1)
    if tensor.dim() != 1 or not size_ok:
        one = ' or (1)' if allow_one else ''
        raise ValueError(f'{op}: {name} must have shape ({size}){one}, but '
                         f'got shape {list(tensor.shape)}')


def _planes_to_words(planes: List[Tensor]) -> Tensor:
    """Pack boolean planes of shape (rows, K) into the interleaved layout."""
    rows, k = planes[0].shape
    kd = words_per_plane(k)
    bits = torch.stack(planes, dim=1).to(torch.int64)
    bits = torch.nn.functional.pad(bits, (0, kd * WORD_BITS - k))
    bits = bits.view(rows, len(planes), kd, WORD_BITS)

    weights = torch.pow(2, torch.arange(WORD_BITS, dtype=torch.int64))
    words = (bits * weights).sum(dim=-1)
    words = torch.where(words >= 2**31, words - 2**32, words)
    words = words.to(torch.int32).transpose(1, 2)

    full = rows // GROUP_ROWS * GROUP_ROWS
    parts = []
    if full > 0:
        groups = words[:full].reshape(full // GROUP_ROWS, GROUP_ROWS, kd, -1)
        parts.append(groups.permute(0, 2, 3, 1).reshape(-1))
    if rows > full:
        parts.append(words[full:].permute(1, 2, 0).reshape(-1))
    return torch.cat(parts).view(rows, len(planes) * kd)


def _words_to_planes(packed: Tensor, planes: int, k: int) -> Tensor:
    """Return the bits of ``packed`` as an int64 tensor (rows, planes, K)."""
    rows = packed.shape[0]
    kd = words_per_plane(k)
    flat = packed.contiguous().view(-1)
    full = rows // GROUP_ROWS * GROUP_ROWS
    parts = []
    if full > 0:
        groups = flat[:full * planes * kd].view(full // GROUP_ROWS, kd, planes,
                                                GROUP_ROWS)
        parts.append(groups.permute(0, 3, 1, 2).reshape(full, kd, planes))
    if rows > full:
        tail = flat[full * planes * kd:].view(kd, planes, rows - full)
        parts.append(tail.permute(2, 0, 1))
    words = torch.cat(parts).to(torch.int64) & 0xFFFFFFFF

    shifts = torch.arange(WORD_BITS, dtype=torch.int64)
    bits = (words.unsqueeze(-1) >> shifts) & 1
    bits = bits.permute(0, 2, 1, 3).reshape(rows, planes, kd * WORD_BITS)
    return bits[:, :, :k]


def _codes_from_packed(packed: Tensor, planes: int, k: int) -> Tensor:
    bits = _words_to_planes(packed, planes, k)
    nonzero = bits[:, 0::2]
    sign = bits[:, 1::2]
    return (nonzero * (1 - 2 * sign)).sum(dim=1).to(torch.int8)


def pack_ternary(codes: Tensor, check: bool = False) -> Tensor:
    """Pack ternary codes into a nonzero and a sign bit-plane.

    Args:
        codes (Tensor): int8 CPU tensor of shape (rows, K) with values in
            {-1, 0, 1}. Any strides are accepted.
        check (bool): Raise ``ValueError`` on values outside {-1, 0, 1}.
            ``MMTVMAMBA_DEBUG_CHECKS=1`` enables it for every call.

    Returns:
        Tensor: int32 tensor of shape (rows, 2 * ceil(K / 32)).
    """
    _check_codes(codes, 'pack_ternary', 1, check)
    return _planes_to_words([codes != 0, codes < 0])


def pack_quinary(codes: Tensor, check: bool = False) -> Tensor:
    """Pack five-level codes as two ternary operands, hi and lo.

    Args:
        codes (Tensor): int8 CPU tensor of shape (rows, K) with values in
            {-2, ..., 2}. Any strides are accepted.
        check (bool): Raise ``ValueError`` on values outside [-2, 2].
            ``MMTVMAMBA_DEBUG_CHECKS=1`` enables it for every call.

    Returns:
        Tensor: int32 tensor of shape (rows, 4 * ceil(K / 32)).
    """
    _check_codes(codes, 'pack_quinary', 2, check)
    lo_nonzero = (codes == 2) | (codes == -2)
    negative = codes < 0
    return _planes_to_words(
        [codes != 0, negative, lo_nonzero, lo_nonzero & negative])


def unpack_ternary(packed: Tensor, k: int) -> Tensor:
    """Recover the int8 codes of shape (rows, k) from ``pack_ternary``.

    Args:
        packed (Tensor): Output of ``pack_ternary``.
        k (int): Number of codes per row used when packing.
    """
    _check_k(k, 'unpack_ternary')
    _check_packed(packed, TERNARY_PLANES, k, 'unpack_ternary', 'packed')
    return _codes_from_packed(packed, TERNARY_PLANES, k)


def unpack_quinary(packed: Tensor, k: int) -> Tensor:
    """Recover the int8 codes of shape (rows, k) from ``pack_quinary``.

    Args:
        packed (Tensor): Output of ``pack_quinary``.
        k (int): Number of codes per row used when packing.
    """
    _check_k(k, 'unpack_quinary')
    _check_packed(packed, QUINARY_PLANES, k, 'unpack_quinary', 'packed')
    return _codes_from_packed(packed, QUINARY_PLANES, k)


def _matmul_int(a_packed: Tensor, w_packed: Tensor, k: int, a_planes: int,
                op: str) -> Tensor:
    _check_k(k, op)
    _check_packed(a_packed, a_planes, k, op, 'a_packed')
    _check_packed(w_packed, TERNARY_PLANES, k, op, 'w_packed')
    a = _codes_from_packed(a_packed, a_planes, k).to(torch.float64)
    w = _codes_from_packed(w_packed, TERNARY_PLANES, k).to(torch.float64)
    # Sums of products of small integers are exact in float64 (|dot| <=
    # 2 * K < 2**53), whatever order the BLAS adds them in.
    return (a @ w.T).to(torch.int32)


def _k_scaled_acc(a_packed: Tensor, w_packed: Tensor, k: int,
                  k_scale: Tensor, a_planes: int, op: str) -> Tensor:
    # Sum over K words of each word's exact dot product times its scale.
    _matmul_int(a_packed, w_packed, k, a_planes, op)
    a = _codes_from_packed(a_packed, a_planes, k).to(torch.float64)
    w = _codes_from_packed(w_packed, TERNARY_PLANES, k).to(torch.float64)
    scale = k_scale.to(torch.float64).repeat_interleave(WORD_BITS)[:k]
    return ((a * scale) @ w.T).to(torch.float32)


def _matmul_float(a_packed: Tensor,
                  w_packed: Tensor,
                  k: int,
                  row_scale: Optional[Tensor],
                  col_scale: Tensor,
                  bias: Optional[Tensor],
                  a_planes: int,
                  op: str,
                  k_scale: Optional[Tensor] = None,
                  residual: Optional[Tensor] = None,
                  activation: str = 'none') -> Tensor:
    m, n = a_packed.shape[0], w_packed.shape[0]
    _check_epilogue(residual, activation, op, m, n)
    _check_scale(row_scale, op, 'row_scale', m, False)
    if col_scale is None:
        raise ValueError(f'{op}: col_scale is required; pass torch.ones(1) '
                         'for none')
    _check_scale(col_scale, op, 'col_scale', n, True)
    _check_scale(bias, op, 'bias', n, False)
    _check_scale(k_scale, op, 'k_scale', words_per_plane(k), False)

    if k_scale is None:
        acc = _matmul_int(a_packed, w_packed, k, a_planes,
                          op).to(torch.float32)
    else:
        acc = _k_scaled_acc(a_packed, w_packed, k, k_scale, a_planes, op)
    scale = col_scale.view(1, -1).expand(m, n)
    if row_scale is not None:
        scale = row_scale.view(-1, 1) * scale
    out = acc * scale
    if bias is not None:
        out = out + bias.view(1, -1)
    if residual is not None:
        out = out + residual
    if activation == 'gelu':
        out = F.gelu(out)
    return out


def _check_epilogue(residual: Optional[Tensor], activation: str, op: str,
                    m: int, n: int) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: invalid activation {activation!r}; expected "
                         f"one of {', '.join(map(repr, ACTIVATIONS))}")
    if residual is None:
        return
    if residual.dtype != torch.float32:
        raise TypeError(f'{op}: residual must be float32, but got '
                        f'{residual.dtype}')
    if tuple(residual.shape) != (m, n):
        raise ValueError(f'{op}: residual must have the output shape '
                         f'({m}, {n}), but got shape {tuple(residual.shape)}')


def ternary_mm_int(a_packed: Tensor, w_packed: Tensor, k: int) -> Tensor:
    """Multiply packed ternary ``a`` (M, K) by ``w.T`` exactly.

    Args:
        a_packed (Tensor): ``pack_ternary`` output for M rows.
        w_packed (Tensor): ``pack_ternary`` output for N weight rows.
        k (int): Shared K of both operands.

    Returns:
        Tensor: int32 tensor of shape (M, N).
    """
    return _matmul_int(a_packed, w_packed, k, TERNARY_PLANES, 'ternary_mm_int')


def quinary_mm_int(a_packed: Tensor, w_packed: Tensor, k: int) -> Tensor:
    """Multiply packed five-level ``a`` (M, K) by ternary ``w.T`` exactly.

    Args:
        a_packed (Tensor): ``pack_quinary`` output for M rows.
        w_packed (Tensor): ``pack_ternary`` output for N weight rows.
        k (int): Shared K of both operands.

    Returns:
        Tensor: int32 tensor of shape (M, N).
    """
    return _matmul_int(a_packed, w_packed, k, QUINARY_PLANES, 'quinary_mm_int')


def ternary_mm(a_packed: Tensor,
               w_packed: Tensor,
               k: int,
               row_scale: Optional[Tensor],
               col_scale: Tensor,
               bias: Optional[Tensor] = None,
               k_scale: Optional[Tensor] = None,
               residual: Optional[Tensor] = None,
               activation: str = 'none') -> Tensor:
    """Compute ``acc * (row_scale[m] * col_scale[n]) + bias[n]`` in float32.

    Args:
        a_packed (Tensor): ``pack_ternary`` output for M rows.
        w_packed (Tensor): ``pack_ternary`` output for N weight rows.
        k (int): Shared K of both operands.
        row_scale (Tensor, optional): float32 per-row scale of shape (M,).
        col_scale (Tensor): float32 weight scale of shape (1,) or (N,).
        bias (Tensor, optional): float32 bias of shape (N,).
        k_scale (Tensor, optional): float32 scale of each 32-element word
            of K, shape (ceil(K / 32),).
        residual (Tensor, optional): float32 (M, N) added before the
            activation.
        activation (str): ``'none'`` or ``'gelu'``.

    Returns:
        Tensor: float32 tensor of shape (M, N).
    """
    return _matmul_float(a_packed, w_packed, k, row_scale, col_scale, bias,
                         TERNARY_PLANES, 'ternary_mm', k_scale, residual, activation)


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

    Args:
        a_packed (Tensor): ``pack_quinary`` output for M rows.
        w_packed (Tensor): ``pack_ternary`` output for N weight rows.
        k (int): Shared K of both operands.
        row_scale (Tensor, optional): float32 per-row scale of shape (M,).
        col_scale (Tensor): float32 weight scale of shape (1,) or (N,).
        bias (Tensor, optional): float32 bias of shape (N,).
        k_scale (Tensor, optional): float32 scale of each 32-element word
            of K, shape (ceil(K / 32),).
        residual (Tensor, optional): float32 (M, N) added before the
            activation.
        activation (str): ``'none'`` or ``'gelu'``.

    Returns:
        Tensor: float32 tensor of shape (M, N).
    """
    return _matmul_float(a_packed, w_packed, k, row_scale, col_scale, bias,
                         QUINARY_PLANES, 'quinary_mm', k_scale, residual, activation)
