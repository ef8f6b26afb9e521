# Copyright (c) mmtvmamba contributors. All rights reserved.
"""The TVMamba quantization method, depending on torch only.

Ternary weights (per-tensor absmean scale), the Q2T activation quantizer
with its bounded straight-through estimator, and the projections that
apply both where each weight is used.
"""
from .config import VSSM_LAYERS, QuantConfig
from .functional import Q2TFunction, q2t_grad_factor, rms_normalize
from .layers import TernaryLinear2d, build_act_quantizer, fake_quant_weight
from .quantizers import Q2TQuantizer
from .weight import TernaryWeightSTE, absmean_scale, ternarize_weight

__all__ = [
    'QuantConfig', 'VSSM_LAYERS', 'Q2TFunction', 'q2t_grad_factor',
    'rms_normalize', 'Q2TQuantizer', 'TernaryLinear2d', 'build_act_quantizer',
    'fake_quant_weight', 'TernaryWeightSTE', 'absmean_scale',
    'ternarize_weight'
]
