# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fusion of the float steps around the deployed projections of a block."""
from torch import Tensor, nn

from mmtvmamba.models.layers.vss_block import VSSBlock
from .linear import DeployLinear2d
from .ss2d import DeploySS2D

__all__ = ['FusedVSSBlock', 'fuse_vss_block']


class FusedVSSBlock(nn.Module):
    """Deployed :class:`VSSBlock` whose norms, GELU and residual additions
    run inside its projections.

    It computes ``x + SS2D(LN(x))`` then ``x + MLP(LN(x))`` as the block
    does in eval mode, with ``op`` and ``mlp`` taken over from it, so the
    state dict keys stay the same. Build it with :func:`fuse_vss_block`.

    Args:
        block (VSSBlock): A block whose norms and GELU were fused into its
            deployed projections.
    """

    def __init__(self, block: VSSBlock) -> None:
        super().__init__()
        self.op = block.op
        self.mlp = block.mlp

    def forward(self, x: Tensor) -> Tensor:
        x = self.op(x, residual=x)
        return self.mlp.fc2(self.mlp.fc1(x), residual=x)


def fuse_vss_block(block: VSSBlock) -> nn.Module:
    """Fuse the float steps of a deployed block into its projections.

    ``norm`` moves into the SS2D input projection, SS2D's ``out_norm`` into
    its output projection and ``norm2`` into ``mlp.fc1``, whose LayerNorms
    then run inside the quantize-and-pack op, and the MLP's GELU moves into
    the epilogue of ``mlp.fc1``. Each fused
    module is replaced by :class:`nn.Identity`. Steps next to a projection
    that stayed in float are left as they are. When everything was fused
    and ``mlp.fc2`` is deployed, the block becomes a
    :class:`FusedVSSBlock`, whose projections also add the residuals.

    Args:
        block (VSSBlock): A block whose ``op`` and ``mlp`` were converted;
            it is changed in place.

    Returns:
        nn.Module: The block to use, ``block`` itself or a
        :class:`FusedVSSBlock` built from it.
    """
    fused = 0
    op = block.op
    if isinstance(op, DeploySS2D) and isinstance(op.in_proj, DeployLinear2d):
        op.in_proj.fuse_norm(block.norm)
        block.norm = nn.Identity()
        fused += 1
    if isinstance(op, DeploySS2D):
        op.fuse_out_norm()

    mlp = block.mlp
    if isinstance(mlp.fc1, DeployLinear2d):
        mlp.fc1.fuse_norm(block.norm2)
        block.norm2 = nn.Identity()
        fused += 1
        if isinstance(mlp.act, nn.GELU) and mlp.act.approximate == 'none':
            mlp.fc1.fuse_activation(mlp.act)
            mlp.act = nn.Identity()
            fused += 1

    if fused == 3 and isinstance(mlp.fc2, DeployLinear2d):
        return FusedVSSBlock(block)
    return block
