# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Custom ops of mmtvmamba: bitwise ternary and five-level matmul, fused
Q2T quantization and packing, both in one op for a whole projection, and
the fused CPU forwards of the selective scan and of SS2D's four-direction
cross selective scan."""
from .cross_selective_scan_op import (check_cross_selective_scan_inputs,
                                      cross_selective_scan_fwd,
                                      cross_selective_scan_ref)
from .extension import extension_available
from .q2t_linear import q2t_linear, q2t_linear_reference
from .q2t_pack import q2t_pack, q2t_pack_reference
from .selective_scan_op import (available_scan_isas,
                                check_selective_scan_inputs,
                                fused_scan_available, get_scan_isa,
                                selective_scan_fwd, set_scan_isa)
from .ternary_mm import (available_isas, get_isa, pack_quinary, pack_ternary,
                         quinary_mm, quinary_mm_int, set_isa, ternary_mm,
                         ternary_mm_int, unpack_quinary, unpack_ternary)

__all__ = [
    'available_isas', 'extension_available', 'get_isa', 'pack_quinary',
    'pack_ternary', 'q2t_linear', 'q2t_linear_reference', 'q2t_pack',
    'q2t_pack_reference', 'quinary_mm',
    'quinary_mm_int', 'set_isa', 'ternary_mm', 'ternary_mm_int',
    'unpack_quinary', 'unpack_ternary',
    'available_scan_isas', 'check_selective_scan_inputs',
    'fused_scan_available', 'get_scan_isa', 'selective_scan_fwd',
    'set_scan_isa', 'check_cross_selective_scan_inputs',
    'cross_selective_scan_fwd', 'cross_selective_scan_ref'
]
