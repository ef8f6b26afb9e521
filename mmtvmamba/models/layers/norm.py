# Copyright (c) mmtvmamba contributors. All rights reserved.
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['LayerNorm2d']


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor.

    Parameter names and shapes are those of :class:`torch.nn.LayerNorm`, as
    in VMamba's ``ln2d`` norm layer.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)
