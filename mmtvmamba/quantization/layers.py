# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Quantized linear projections, in module form and for raw parameters."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from .config import DEPLOY_MODES, QuantConfig
from .lsq import LSQTernaryQuantizer
from .quantizers import Q2TQuantizer
from .slender import SlenderQuantizer
from .weight import TernaryWeightSTE

__all__ = ['build_act_quantizer', 'fake_quant_weight', 'TernaryLinear2d']


def build_act_quantizer(quant: Optional[QuantConfig],
                        layer: str,
                        num_channels: int,
                        dim: int = 1,
                        groups: int = 1) -> Optional[nn.Module]:
    """Return the activation quantizer of ``layer``, or None if it is FP.

    Args:
        quant (QuantConfig, optional): The backbone's quantization setup.
        layer (str): Projection name, e.g. ``'in_proj'``.
        num_channels (int): Input channels of the projection.
        dim (int): Channel axis of the projection's input. Defaults to 1.
        groups (int): Channel groups normalized separately. Defaults to 1.

    Returns:
        nn.Module, optional: A :class:`Q2TQuantizer`,
        :class:`LSQTernaryQuantizer` or :class:`SlenderQuantizer` for
        ``act`` types ``'Q2T'``, ``'LSQ'`` and ``'Slender'``.
    """
    if quant is None or quant.act is None or not quant.quantizes(layer):
        return None
    kwargs = {k: v for k, v in quant.act.items() if k != 'type'}
    kwargs.update(dim=dim, groups=groups, layer=layer)
    act_type = quant.act.get('type', 'Q2T')
    if act_type == 'LSQ':
        return LSQTernaryQuantizer(num_channels, **kwargs)
    if act_type == 'Slender':
        return SlenderQuantizer(num_channels, **kwargs)
    return Q2TQuantizer(
        num_channels, deploy_radius=DEPLOY_MODES[quant.deploy], **kwargs)


def fake_quant_weight(weight: Tensor, quant: Optional[QuantConfig],
                      layer: str) -> Tensor:
    """Return ``weight`` ternarized if ``layer`` has ternary weights."""
    if quant is None or not quant.weight or not quant.quantizes(layer):
        return weight
    return TernaryWeightSTE.apply(weight, quant.weight_eps)


class TernaryLinear2d(nn.Linear):
    """Linear projection over the channels of an NCHW tensor.

    The weight keeps the ``(out_features, in_features)`` shape of
    :class:`torch.nn.Linear`, as in VMamba's ``Linear2d``, so official
    checkpoints load unchanged; 4-D ``(out, in, 1, 1)`` weights load too.
    When quantized, the input goes through the activation quantizer
    ``act_quant`` and the weight is ternarized where it is used.

    Args:
        in_features (int): Input channels.
        out_features (int): Output channels.
        bias (bool): Whether to add a bias. Defaults to True.
        quant (QuantConfig, optional): Quantization setup; None for full
            precision. Defaults to None.
        layer (str): Projection name looked up in ``quant.layers``.
            Defaults to ``''``.
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 quant: Optional[QuantConfig] = None,
                 layer: str = '') -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.quant = quant
        self.layer = layer
        self.act_quant = build_act_quantizer(quant, layer, in_features)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the projection to ``x`` of shape (B, C_in, H, W)."""
        if self.act_quant is not None:
            x = self.act_quant(x)
        weight = fake_quant_weight(self.weight, self.quant, self.layer)
        return F.conv2d(x, weight[:, :, None, None], self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + 'weight'
        if key in state_dict and state_dict[key].dim() == 4:
            state_dict[key] = state_dict[key].flatten(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
