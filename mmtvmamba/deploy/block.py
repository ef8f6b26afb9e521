# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fusion of the float steps around the deployed projections of a block."""
from torch import nn

from mmtvmamba.models.layers.vss_block import VSSBlock
from .linear import DeployLinear2d
from .ss2d import DeploySS2D

__all__ = ['fuse_vss_block']


def fuse_vss_block(block: VSSBlock) -> int:
    """Fuse the LayerNorms and the GELU of a deployed block into its
    projections, in place.

    ``norm`` moves into the SS2D input projection and ``norm2`` into
    ``mlp.fc1``, whose LayerNorm then runs inside the quantize-and-pack op,
    and the MLP's GELU moves into the epilogue of ``mlp.fc1``. Each fused
    module is replaced by :class:`nn.Identity`. Steps next to a projection
    that stayed in float are left as they are.

    Args:
        block (VSSBlock): A block whose ``op`` and ``mlp`` were converted.

    Returns:
        int: The number of modules fused.
    """
    fused = 0
    op = block.op
    if isinstance(op, DeploySS2D) and isinstance(op.in_proj, DeployLinear2d):
        op.in_proj.fuse_norm(block.norm)
        block.norm = nn.Identity()
        fused += 1

    mlp = block.mlp
    if isinstance(mlp.fc1, DeployLinear2d):
        mlp.fc1.fuse_norm(block.norm2)
        block.norm2 = nn.Identity()
        fused += 1
        if isinstance(mlp.act, nn.GELU) and mlp.act.approximate == 'none':
            mlp.fc1.fuse_activation(mlp.act)
            mlp.act = nn.Identity()
            fused += 1
    return fused
