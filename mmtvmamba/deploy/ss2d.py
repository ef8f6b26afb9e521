# Copyright (c) mmtvmamba contributors. All rights reserved.
"""SS2D with its projections running on the bitwise ternary op."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtvmamba.models.layers import SS2D
from mmtvmamba.models.layers.ss2d import NUM_DIRECTIONS, cross_scan_and_norm
from mmtvmamba.quantization.weight import absmean_scale
from .linear import DeployLinear2d, DeployTernaryLinear

__all__ = ['DeploySS2D']


class DeploySS2D(nn.Module):
    """Deployed form of a trained :class:`~mmtvmamba.models.layers.SS2D`.

    The input and output projections become :class:`DeployLinear2d`. The
    four direction-wise x projections read the same quantized tokens in
    different orders, so they run as one projection of the row-major tokens
    with the four weights stacked. The time-step projection runs per
    direction on the row-major tokens, because its quantizer normalizes
    each direction's channels on their own. The selective scan walks each
    direction's order itself
    (:func:`~mmtvmamba.models.selective_scan.cross_selective_scan`), so no
    projection output is reordered.
    Projections that the training config left in float stay in float.
    The convolution, the SSM parameters and the output norm are the trained
    modules themselves.

    Args:
        ssm (SS2D): The trained module; its float parts are reused.
        alpha_groups (int, optional): Scale groups per projection part;
            None for one per channel. Defaults to 8.
        radius (int, optional): Radius of every activation channel, 1 for
            TVMamba-T; None keeps the trained radius. Defaults to None.
    """

    def __init__(self,
                 ssm: SS2D,
                 alpha_groups: Optional[int] = 8,
                 radius: Optional[int] = None) -> None:
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = (ssm.d_inner, ssm.d_state,
                                                    ssm.dt_rank)
        options = dict(alpha_groups=alpha_groups, radius=radius)
        self.in_proj = _convert_linear(ssm.in_proj, options)
        self.conv2d = ssm.conv2d
        self.act = ssm.act

        self.x_proj = self._convert_x_proj(ssm, options)
        self.dt_projs = self._convert_dt_projs(ssm, options)
        self.dt_projs_bias = ssm.dt_projs_bias
        self.A_logs = ssm.A_logs
        self.Ds = ssm.Ds
        self.out_norm = ssm.out_norm
        self.out_proj = _convert_linear(ssm.out_proj, options)

    @staticmethod
    def _convert_x_proj(ssm: SS2D, options: dict) -> nn.Module:
        weight = ssm.x_proj_weight
        if ssm.x_proj_act_quant is None or not _ternary_weights(ssm, 'x_proj'):
            return _FloatWeight(weight)
        return DeployTernaryLinear.from_quantized(
            weight.flatten(0, 1),
            ssm.x_proj_act_quant,
            weight_eps=ssm.quant.weight_eps,
            **options)

    @staticmethod
    def _convert_dt_projs(ssm: SS2D, options: dict) -> nn.Module:
        weight = ssm.dt_projs_weight
        quantizer = ssm.dt_projs_act_quant
        if quantizer is None or not _ternary_weights(ssm, 'dt_proj'):
            return _FloatWeight(weight)
        # The stacked weight has one absmean scale in training.
        scale = absmean_scale(weight, ssm.quant.weight_eps)
        rank = ssm.dt_rank
        return nn.ModuleList(
            DeployTernaryLinear.from_quantized(
                weight[k],
                quantizer,
                channels=slice(k * rank, (k + 1) * rank),
                weight_scale=scale,
                **options) for k in range(NUM_DIRECTIONS))

    def fuse_out_norm(self) -> bool:
        """Move ``out_norm`` into the quantize-and-pack step of a deployed
        ``out_proj``, so the normalized scan output is never written.

        Returns:
            bool: Whether it was fused; a float ``out_proj`` keeps it.
        """
        if self.out_norm is None or not isinstance(self.out_proj,
                                                   DeployLinear2d):
            return False
        self.out_proj.fuse_norm(self.out_norm)
        self.out_norm = None
        return True

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        """Mix ``x`` of shape (B, C, H, W); the output has the same shape.
        ``residual`` of that shape is added to the output; a deployed output
        projection adds it while it stores its result."""
        x = self.act(self.conv2d(self.in_proj(x)))
        y = self.forward_core(x)
        if isinstance(self.out_proj, DeployLinear2d):
            return self.out_proj(y, residual)
        y = self.out_proj(y)
        return y if residual is None else y + residual

    def forward_core(self, x: Tensor) -> Tensor:
        """Run the projections, the selective scan and the merge.

        Returns:
            Tensor: (B, D, H, W), a view of a channels-last float32 tensor.
        """
        batch, _, height, width = x.shape
        rank, state = self.dt_rank, self.d_state
        x = x.float()
        u = x.permute(0, 2, 3, 1).contiguous()

        x_dbl = self._project_x(x, u).view(batch, height, width,
                                           NUM_DIRECTIONS, -1)
        dts, Bs, Cs = torch.split(x_dbl, [rank, state, state], dim=-1)
        deltas = self._project_dt(dts)
        return cross_scan_and_norm(self, u, deltas, Bs, Cs)

    def _project_x(self, x: Tensor, u: Tensor) -> Tensor:
        """Return the x projections (B * L, 4 * (R + 2N)) of the row-major
        tokens of ``x`` (B, D, H, W), whose channels-last copy is ``u``."""
        if isinstance(self.x_proj, _FloatWeight):
            weight = self.x_proj.weight
            return F.linear(u.view(-1, self.d_inner),
                            weight.reshape(-1, self.d_inner))
        return self.x_proj.project(x.flatten(2))

    def _project_dt(self, dts: Tensor) -> List[Tensor]:
        """Return each direction's time steps (B, H, W, D) from the
        low-rank inputs ``dts`` (B, H, W, 4, R)."""
        batch, height, width, k, rank = dts.shape
        shape = (batch, height, width, self.d_inner)
        if isinstance(self.dt_projs, _FloatWeight):
            weight = self.dt_projs.weight
            deltas = torch.bmm(
                dts.reshape(-1, k, rank).transpose(0, 1),
                weight.transpose(1, 2))
            return [delta.view(shape) for delta in deltas.unbind(0)]

        deltas = []
        for direction, projection in enumerate(self.dt_projs):
            # (B, R, L) view of the direction's row-major tokens.
            tokens = dts[..., direction, :].flatten(1, 2).transpose(1, 2)
            deltas.append(projection.project(tokens).view(shape))
        return deltas


class _FloatWeight(nn.Module):
    """Holder of a stacked float weight that deployment leaves unchanged."""

    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight


def _ternary_weights(ssm: SS2D, layer: str) -> bool:
    return ssm.quant is not None and ssm.quant.weight and ssm.quant.quantizes(
        layer)


def _convert_linear(linear: nn.Module, options: dict) -> nn.Module:
    if getattr(linear, 'act_quant', None) is None or not linear.quant.weight:
        return linear
    return DeployLinear2d.from_linear(linear, **options)
