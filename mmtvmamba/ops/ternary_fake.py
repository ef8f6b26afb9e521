# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fake (meta) kernels of the ternary ops for torch.compile and export.

They compute output shapes and dtypes from the input shapes only, with the
same formulas as the C++ ops: a packed tensor has ``planes * ceil(K / 32)``
int32 words per row, and matmul outputs have shape (M, N).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .ternary_reference import QUINARY_PLANES, TERNARY_PLANES, WORD_BITS


def _packed_shape(codes: Tensor, planes: int) -> tuple:
    torch._check(codes.dim() == 2, lambda: 'codes must be 2-D (rows, K)')
    torch._check(codes.dtype == torch.int8, lambda: 'codes must be int8')
    k = codes.shape[1]
    return codes.shape[0], planes * ((k + WORD_BITS - 1) // WORD_BITS)


def _pack_ternary(codes: Tensor, check: bool = False) -> Tensor:
    shape = _packed_shape(codes, TERNARY_PLANES)
    return codes.new_empty(shape, dtype=torch.int32)


def _pack_quinary(codes: Tensor, check: bool = False) -> Tensor:
    shape = _packed_shape(codes, QUINARY_PLANES)
    return codes.new_empty(shape, dtype=torch.int32)


def _unpack(packed: Tensor, k: int) -> Tensor:
    torch._check(packed.dim() == 2, lambda: 'packed must be 2-D')
    return packed.new_empty((packed.shape[0], k), dtype=torch.int8)


def _matmul_shape(a_packed: Tensor, w_packed: Tensor, a_planes: int,
                  k: int) -> tuple:
    words = (k + WORD_BITS - 1) // WORD_BITS
    torch._check(a_packed.dim() == 2 and w_packed.dim() == 2,
                 lambda: 'packed operands must be 2-D')
    torch._check(a_packed.shape[1] == a_planes * words,
                 lambda: f'a_packed does not match k={k}')
    torch._check(w_packed.shape[1] == TERNARY_PLANES * words,
                 lambda: f'w_packed does not match k={k}')
    return a_packed.shape[0], w_packed.shape[0]


def _ternary_mm_int(a_packed: Tensor, w_packed: Tensor, k: int) -> Tensor:
    shape = _matmul_shape(a_packed, w_packed, TERNARY_PLANES, k)
    return a_packed.new_empty(shape, dtype=torch.int32)


def _quinary_mm_int(a_packed: Tensor, w_packed: Tensor, k: int) -> Tensor:
    shape = _matmul_shape(a_packed, w_packed, QUINARY_PLANES, k)
    return a_packed.new_empty(shape, dtype=torch.int32)


def _ternary_mm(a_packed: Tensor,
                w_packed: Tensor,
                k: int,
                row_scale: Optional[Tensor],
                col_scale: Tensor,
                bias: Optional[Tensor] = None,
                k_scale: Optional[Tensor] = None,
                residual: Optional[Tensor] = None,
                activation: str = 'none') -> Tensor:
    shape = _matmul_shape(a_packed, w_packed, TERNARY_PLANES, k)
    return a_packed.new_empty(shape, dtype=torch.float32)


def _quinary_mm(a_packed: Tensor,
                w_packed: Tensor,
                k: int,
                row_scale: Optional[Tensor],
                col_scale: Tensor,
                bias: Optional[Tensor] = None,
                k_scale: Optional[Tensor] = None,
                residual: Optional[Tensor] = None,
                activation: str = 'none') -> Tensor:
    shape = _matmul_shape(a_packed, w_packed, QUINARY_PLANES, k)
    return a_packed.new_empty(shape, dtype=torch.float32)


def _q2t_pack(x: Tensor,
              index: Tensor,
              alpha: Tensor,
              radius: int,
              eps: float,
              norm_weight: Optional[Tensor] = None,
              norm_bias: Optional[Tensor] = None,
              norm_eps: float = 1e-5) -> Tuple[Tensor, Tensor]:
    planes = QUINARY_PLANES if radius == 2 else TERNARY_PLANES
    rows = x.shape[0] * x.shape[2]
    words = (index.shape[0] + WORD_BITS - 1) // WORD_BITS
    packed = x.new_empty((rows, planes * words), dtype=torch.int32)
    return packed, x.new_empty((rows, ), dtype=torch.float32)


def _q2t_linear(x: Tensor,
                index: Tensor,
                alpha: Tensor,
                radius: int,
                eps: float,
                w_packed: Tensor,
                col_scale: Tensor,
                bias: Optional[Tensor] = None,
                k_scale: Optional[Tensor] = None,
                residual: Optional[Tensor] = None,
                activation: str = 'none',
                norm_weight: Optional[Tensor] = None,
                norm_bias: Optional[Tensor] = None,
                norm_eps: float = 1e-5) -> Tensor:
    words = (index.shape[0] + WORD_BITS - 1) // WORD_BITS
    torch._check(w_packed.dim() == 2, lambda: 'w_packed must be 2-D')
    torch._check(w_packed.shape[1] == TERNARY_PLANES * words,
                 lambda: f'w_packed does not match {index.shape[0]} '
                 'positions')
    rows = x.shape[0] * x.shape[2]
    return x.new_empty((rows, w_packed.shape[0]), dtype=torch.float32)


_FAKE_KERNELS = {
    'mmtvmamba::pack_ternary': _pack_ternary,
    'mmtvmamba::pack_quinary': _pack_quinary,
    'mmtvmamba::unpack_ternary': _unpack,
    'mmtvmamba::unpack_quinary': _unpack,
    'mmtvmamba::ternary_mm_int': _ternary_mm_int,
    'mmtvmamba::quinary_mm_int': _quinary_mm_int,
    'mmtvmamba::ternary_mm': _ternary_mm,
    'mmtvmamba::quinary_mm': _quinary_mm,
    'mmtvmamba::q2t_pack': _q2t_pack,
    'mmtvmamba::q2t_linear': _q2t_linear,
}


def register_fake_kernels() -> None:
    """Register the fake kernels; call once after loading the library."""
    for name, kernel in _FAKE_KERNELS.items():
        torch.library.register_fake(name, kernel)
