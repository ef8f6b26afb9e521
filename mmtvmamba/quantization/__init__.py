# Copyright (c) mmtvmamba contributors. All rights reserved.
"""The TVMamba quantization method, depending on torch only.

Ternary weights (per-tensor absmean scale), the Q2T activation quantizer
with its bounded straight-through estimator, the LSQ-Ternary and
Slender-Mamba* baseline quantizers, the budgeted choice of five-level
channels, the CTRL loss, and the projections that apply the quantizers
where each weight is used.
"""
from .base import ActQuantizer
from .budget import budget_ratio, select_channels, select_groups
from .config import ACT_TYPES, DEPLOY_MODES, VSSM_LAYERS, QuantConfig
from .functional import (NormalizedQ2TFunction, Q2TFunction,
                         TopKMeanFunction, channels_first, q2t_grad_factor,
                         rms_normalize, sparse_topk_mean, token_rms,
                         topk_mean)
from .layers import TernaryLinear2d, build_act_quantizer, fake_quant_weight
from .losses import CTRL_UNITS, channel_errors, ctrl_loss
from .lsq import LSQTernaryFunction, LSQTernaryQuantizer
from .quantizers import Q2TQuantizer
from .slender import SlenderQuantizer
from .weight import TernaryWeightSTE, absmean_scale, ternarize_weight

__all__ = [
    'QuantConfig', 'VSSM_LAYERS', 'ACT_TYPES', 'DEPLOY_MODES', 'Q2TFunction',
    'NormalizedQ2TFunction', 'q2t_grad_factor', 'rms_normalize', 'token_rms',
    'topk_mean', 'sparse_topk_mean', 'TopKMeanFunction', 'channels_first',
    'ActQuantizer', 'Q2TQuantizer', 'LSQTernaryFunction',
    'LSQTernaryQuantizer', 'SlenderQuantizer', 'TernaryLinear2d',
    'build_act_quantizer', 'fake_quant_weight', 'TernaryWeightSTE',
    'absmean_scale', 'ternarize_weight', 'budget_ratio', 'select_channels',
    'select_groups', 'CTRL_UNITS', 'channel_errors', 'ctrl_loss'
]
