# Copyright (c) mmtvmamba contributors. All rights reserved.
from typing import Optional

import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

from mmtvmamba.quantization import QuantConfig, TernaryLinear2d
from .norm import LayerNorm2d
from .ss2d import SS2D

__all__ = ['Mlp2d', 'VSSBlock']


class Mlp2d(nn.Module):
    """Two-layer MLP with GELU over the channels of an NCHW tensor.

    Args:
        in_channels (int): Input and output channels.
        hidden_channels (int): Hidden channels.
        quant (QuantConfig, optional): Quantization of ``fc1`` and ``fc2``.
            Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int,
                 quant: Optional[QuantConfig] = None) -> None:
        super().__init__()
        self.fc1 = TernaryLinear2d(
            in_channels, hidden_channels, quant=quant, layer='fc1')
        self.act = nn.GELU()
        self.fc2 = TernaryLinear2d(
            hidden_channels, in_channels, quant=quant, layer='fc2')

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    """VMamba block: ``x + SS2D(LN(x))`` then ``x + MLP(LN(x))``.

    Args:
        dim (int): Channels C.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        mlp_ratio (float): Hidden width of the MLP over C. Defaults to 4.0.
        with_cp (bool): Recompute the block in the backward pass to save
            memory. Defaults to False.
        quant (QuantConfig, optional): Quantization of the projections.
            Defaults to None.
        **ssm_kwargs: Arguments of :class:`SS2D` after ``d_model``.
    """

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.,
                 mlp_ratio: float = 4.0,
                 with_cp: bool = False,
                 quant: Optional[QuantConfig] = None,
                 **ssm_kwargs) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.norm = LayerNorm2d(dim)
        self.op = SS2D(dim, quant=quant, **ssm_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp2d(dim, int(dim * mlp_ratio), quant=quant)

    def _forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)
