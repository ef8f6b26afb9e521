# Copyright (c) mmtvmamba contributors. All rights reserved.
"""SS2D, the 2-D selective-scan mixer of VMamba, with quantized projections.

This is the ``v05_noz`` form of the official VMamba v2 models: no gate
branch, a depthwise 3x3 convolution with SiLU, a four-direction cross scan,
and a LayerNorm on the merged output. Parameter names and shapes match the
official checkpoints, including the stacked raw parameters
``x_proj_weight`` (K, R + 2N, D) and ``dt_projs_weight`` (K, D, R) of the K
scan directions; their ternary fake-quantization is applied where they are
used.
"""
import math
from typing import List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtvmamba.quantization import (QuantConfig, TernaryLinear2d,
                                    build_act_quantizer, fake_quant_weight)
from ..selective_scan import (cross_selective_scan, fused_scan_applies,
                              selective_scan)
from .cross_scan import cross_merge, cross_scan
from .norm import LayerNorm2d

__all__ = ['SS2D', 'scan_and_merge', 'cross_scan_and_norm']

NUM_DIRECTIONS = 4


class SS2D(nn.Module):
    """2-D selective scan over four directions.

    Args:
        d_model (int): Input and output channels C.
        d_state (int): SSM state size N. Defaults to 1.
        ssm_ratio (float): Inner width D = ssm_ratio * C. Defaults to 1.0.
        dt_rank (int | str): Rank R of the time-step projection; ``'auto'``
            is ceil(C / 16). Defaults to ``'auto'``.
        d_conv (int): Kernel size of the depthwise convolution.
            Defaults to 3.
        conv_bias (bool): Whether the depthwise convolution has a bias.
            Defaults to False.
        dt_min (float): Smallest initial time step. Defaults to 0.001.
        dt_max (float): Largest initial time step. Defaults to 0.1.
        dt_init_floor (float): Floor of the initial time steps.
            Defaults to 1e-4.
        quant (QuantConfig, optional): Quantization of the projections;
            None for full precision. Defaults to None.
    """

    def __init__(self,
                 d_model: int,
                 d_state: int = 1,
                 ssm_ratio: float = 1.0,
                 dt_rank: Union[int, str] = 'auto',
                 d_conv: int = 3,
                 conv_bias: bool = False,
                 dt_min: float = 0.001,
                 dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4,
                 quant: Optional[QuantConfig] = None) -> None:
        super().__init__()
        d_inner = int(ssm_ratio * d_model)
        if dt_rank == 'auto':
            dt_rank = math.ceil(d_model / 16)
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.quant = quant

        self.in_proj = TernaryLinear2d(
            d_model, d_inner, bias=False, quant=quant, layer='in_proj')
        self.conv2d = nn.Conv2d(
            d_inner,
            d_inner,
            d_conv,
            padding=(d_conv - 1) // 2,
            groups=d_inner,
            bias=conv_bias)
        self.act = nn.SiLU()

        k = NUM_DIRECTIONS
        self.x_proj_act_quant = build_act_quantizer(quant, 'x_proj', d_inner)
        self.x_proj_weight = nn.Parameter(
            torch.empty(k, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_act_quant = build_act_quantizer(
            quant, 'dt_proj', k * dt_rank, groups=k)
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))

        self.out_norm = LayerNorm2d(d_inner)
        self.out_proj = TernaryLinear2d(
            d_inner, d_model, bias=False, quant=quant, layer='out_proj')
        self.reset_ssm_parameters(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float, dt_max: float,
                             dt_init_floor: float) -> None:
        """Initialize the SSM parameters as VMamba's ``v0`` scheme does.

        ``A = -[1, ..., N]`` per channel, ``D = 1``, time-step biases are
        the inverse softplus of log-uniform samples in [dt_min, dt_max].
        """
        bound = 1 / math.sqrt(self.d_inner)
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        nn.init.uniform_(self.dt_projs_weight, -self.dt_rank**-0.5,
                         self.dt_rank**-0.5)

        log_dt = torch.rand_like(self.dt_projs_bias) * (
            math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = log_dt.exp().clamp(min=dt_init_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

        states = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(states.log().expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        """Mix ``x`` of shape (B, C, H, W); the output has the same shape."""
        x = self.act(self.conv2d(self.in_proj(x)))
        y = self.forward_core(x)
        return self.out_proj(y)

    def forward_core(self, x: Tensor) -> Tensor:
        """Run the cross scan, the projections and the selective scan.

        In eval mode, where the fused selective scan applies (CPU,
        ``mmtvmamba._ext`` built, no gradient needed, see
        :func:`~mmtvmamba.models.selective_scan.fused_scan_applies`), this
        runs :meth:`forward_core_channels_last`. Otherwise, and always in
        training mode (also for a calibration pass without gradients), it
        makes the four reordered copies of the cross scan.
        """
        if not self.training and fused_scan_applies(x, *self.parameters()):
            return self.forward_core_channels_last(x)

        batch, d_inner, height, width = x.shape
        length = height * width
        k, rank, state = NUM_DIRECTIONS, self.dt_rank, self.d_state

        xs = cross_scan(x)
        # The selective scan itself runs on the full-precision input; only
        # the copy that feeds the x projection is quantized.
        xs_proj = xs
        if self.x_proj_act_quant is not None:
            xs_proj = cross_scan(self.x_proj_act_quant(x))
        x_proj_weight = fake_quant_weight(self.x_proj_weight, self.quant,
                                          'x_proj')
        x_dbl = F.conv1d(
            xs_proj.reshape(batch, k * d_inner, length),
            x_proj_weight.reshape(k * (rank + 2 * state), d_inner, 1),
            groups=k).view(batch, k, rank + 2 * state, length)
        dts, Bs, Cs = torch.split(x_dbl, [rank, state, state], dim=2)

        dts = dts.reshape(batch, k * rank, length)
        if self.dt_projs_act_quant is not None:
            dts = self.dt_projs_act_quant(dts)
        dt_projs_weight = fake_quant_weight(self.dt_projs_weight, self.quant,
                                            'dt_proj')
        dts = F.conv1d(
            dts, dt_projs_weight.reshape(k * d_inner, rank, 1), groups=k)

        y = scan_and_merge(self, xs, dts, Bs, Cs, height, width)
        return y.to(x.dtype)

    def forward_core_channels_last(self, x: Tensor) -> Tensor:
        """Compute :meth:`forward_core` on tokens in row-major order.

        The projections are per token, so projecting the row-major tokens
        once with the four directions' x projection weights stacked gives
        every direction's projections indexed by position, and so does one
        batched dt projection. The activation quantizers normalize each
        token on its own (per direction group for the dt projection), so
        they give the same values in any token order.
        :func:`~mmtvmamba.models.selective_scan.cross_selective_scan` then
        walks the four scan orders itself.

        Returns:
            Tensor: (B, D, H, W), a view of a channels-last tensor.
        """
        batch, d_inner, height, width = x.shape
        length = height * width
        k, rank, state = NUM_DIRECTIONS, self.dt_rank, self.d_state
        u = x.permute(0, 2, 3, 1).contiguous()

        x_proj_input = u
        if self.x_proj_act_quant is not None:
            x_proj_input = self.x_proj_act_quant(x).permute(0, 2, 3, 1)
        x_proj_weight = fake_quant_weight(self.x_proj_weight, self.quant,
                                          'x_proj')
        x_dbl = F.linear(
            x_proj_input.reshape(batch * length, d_inner),
            x_proj_weight.reshape(k * (rank + 2 * state), d_inner))
        x_dbl = x_dbl.view(batch, height, width, k, rank + 2 * state)
        dts, Bs, Cs = torch.split(x_dbl, [rank, state, state], dim=-1)

        # The quantizer expects (B, K * R, L) with channels on axis 1.
        dts = dts.reshape(batch, length, k * rank)
        if self.dt_projs_act_quant is not None:
            dts = self.dt_projs_act_quant(dts.transpose(1, 2)).transpose(1, 2)
        dt_projs_weight = fake_quant_weight(self.dt_projs_weight, self.quant,
                                            'dt_proj')
        deltas = torch.bmm(
            dts.reshape(batch * length, k, rank).transpose(0, 1),
            dt_projs_weight.transpose(1, 2))
        deltas = [
            delta.view(batch, height, width, d_inner)
            for delta in deltas.unbind(0)
        ]

        y = cross_scan_and_norm(self, u, deltas, Bs, Cs)
        return y.to(x.dtype)


def scan_and_merge(ssm: nn.Module, xs: Tensor, dts: Tensor, Bs: Tensor,
                   Cs: Tensor, height: int, width: int) -> Tensor:
    """Run the selective scan of the four directions and merge them.

    Args:
        ssm (nn.Module): An SS2D-like module with ``A_logs``, ``Ds``,
            ``dt_projs_bias`` and ``out_norm``.
        xs (Tensor): Cross-scanned input (B, 4, D, L).
        dts (Tensor): Time steps before the bias (B, 4 * D, L).
        Bs (Tensor): Input matrices (B, 4, N, L).
        Cs (Tensor): Output matrices (B, 4, N, L).
        height (int): H of the feature map.
        width (int): W of the feature map.

    Returns:
        Tensor: The normalized merged output (B, D, H, W).
    """
    batch, k, d_inner, length = xs.shape
    ys = selective_scan(
        xs.reshape(batch, k * d_inner, length),
        dts,
        -torch.exp(ssm.A_logs.float()),
        Bs,
        Cs,
        ssm.Ds.float(),
        delta_bias=ssm.dt_projs_bias.view(-1).float(),
        delta_softplus=True)
    y = cross_merge(ys.view(batch, k, d_inner, length), height, width)
    return ssm.out_norm(y.view(batch, d_inner, height, width))


def cross_scan_and_norm(ssm: nn.Module, u: Tensor, deltas: List[Tensor],
                        Bs: Tensor, Cs: Tensor) -> Tensor:
    """Run the four-direction selective scan on channels-last operands and
    normalize the merged output.

    Args:
        ssm (nn.Module): An SS2D-like module with ``A_logs``, ``Ds``,
            ``dt_projs_bias`` and ``out_norm``, a LayerNorm, or None where
            the output projection applies it.
        u (Tensor): Input (B, H, W, D).
        deltas (list[Tensor]): Time steps of each direction before the
            bias, (B, H, W, D) each, indexed by position.
        Bs (Tensor): Input matrices (B, H, W, 4, N) by position.
        Cs (Tensor): Output matrices (B, H, W, 4, N) by position.

    Returns:
        Tensor: The normalized merged output (B, D, H, W), a view of a
        channels-last float32 tensor.
    """
    y = cross_selective_scan(
        u,
        deltas,
        -torch.exp(ssm.A_logs.float()),
        Bs,
        Cs,
        ssm.Ds.float(),
        delta_bias=ssm.dt_projs_bias.view(-1).float(),
        delta_softplus=True)
    norm = ssm.out_norm
    if norm is not None:
        y = F.layer_norm(y, norm.normalized_shape, norm.weight, norm.bias,
                         norm.eps)
    return y.permute(0, 3, 1, 2)
