# Copyright (c) mmtvmamba contributors. All rights reserved.
"""SS2D with its projections running on the bitwise ternary op."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtvmamba.models.layers import SS2D
from mmtvmamba.models.layers.cross_scan import cross_scan
from mmtvmamba.models.layers.ss2d import NUM_DIRECTIONS, scan_and_merge
from mmtvmamba.quantization.weight import absmean_scale
from .linear import DeployLinear2d, DeployTernaryLinear

__all__ = ['DeploySS2D']


def _scan_order(t: Tensor) -> Tensor:
    """Put direction ``k`` of ``t`` (B, 4, C, H, W) in scan order ``k``.

    Returns (B, 4, C, H * W) in the orders of
    :func:`~mmtvmamba.models.layers.cross_scan`.
    """
    rows = t[:, 0].flatten(2)
    cols = t[:, 1].transpose(2, 3).flatten(2)
    rows_reversed = t[:, 2].flatten(2).flip(-1)
    cols_reversed = t[:, 3].transpose(2, 3).flatten(2).flip(-1)
    return torch.stack([rows, cols, rows_reversed, cols_reversed], dim=1)


class DeploySS2D(nn.Module):
    """Deployed form of a trained :class:`~mmtvmamba.models.layers.SS2D`.

    The input and output projections become :class:`DeployLinear2d`. The
    four direction-wise x projections read the same quantized tokens in
    different orders, so they run as one projection of the row-major tokens
    with the four weights stacked, and each direction's output is then put
    in its scan order. The time-step projection runs per direction, because
    its quantizer normalizes each direction's channels on their own.
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
        """Run the projections, the selective scan and the merge."""
        _, _, height, width = x.shape
        x = x.float()
        xs = cross_scan(x)
        dts, Bs, Cs = self._project_x(x, xs)
        dts = self._project_dt(dts)
        return scan_and_merge(self, xs, dts, Bs, Cs, height, width)

    def _project_x(self, x: Tensor,
                   xs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        batch, d_inner, height, width = x.shape
        k, rank, state = NUM_DIRECTIONS, self.dt_rank, self.d_state
        if isinstance(self.x_proj, _FloatWeight):
            x_dbl = F.conv1d(
                xs.reshape(batch, k * d_inner, -1),
                self.x_proj.weight.reshape(k * (rank + 2 * state), d_inner,
                                           1),
                groups=k).view(batch, k, rank + 2 * state, -1)
        else:
            x_dbl = self.x_proj.project(x.flatten(2))
            x_dbl = x_dbl.view(batch, height, width, k, -1)
            x_dbl = _scan_order(x_dbl.permute(0, 3, 4, 1, 2))
        return torch.split(x_dbl, [rank, state, state], dim=2)

    def _project_dt(self, dts: Tensor) -> Tensor:
        batch, k, rank, length = dts.shape
        if isinstance(self.dt_projs, _FloatWeight):
            return F.conv1d(
                dts.reshape(batch, k * rank, length),
                self.dt_projs.weight.reshape(k * self.d_inner, rank, 1),
                groups=k)
        outputs = []
        for direction, projection in enumerate(self.dt_projs):
            y = projection.project(dts[:, direction])
            y = y.view(batch, length, self.d_inner)
            outputs.append(y.transpose(1, 2))
        return torch.cat(outputs, dim=1)


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
