# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Custom ops of mmtvmamba: bitwise ternary and five-level matmul."""
from .extension import extension_available
from .ternary_mm import (available_isas, get_isa, pack_quinary, pack_ternary,
                         quinary_mm, quinary_mm_int, set_isa, ternary_mm,
                         ternary_mm_int, unpack_quinary, unpack_ternary)

__all__ = [
    'available_isas', 'extension_available', 'get_isa', 'pack_quinary',
    'pack_ternary', 'quinary_mm', 'quinary_mm_int', 'set_isa', 'ternary_mm',
    'ternary_mm_int', 'unpack_quinary', 'unpack_ternary'
]
