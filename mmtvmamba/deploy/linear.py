# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Deployed ternary projections that run the bitwise matmul op."""
from typing import Optional, Set, Tuple

import torch
from torch import Tensor, nn

from mmtvmamba.ops import (pack_ternary, q2t_linear, q2t_pack, quinary_mm,
                           ternary_mm)
from mmtvmamba.quantization import Q2TQuantizer, TernaryLinear2d
from mmtvmamba.quantization.weight import ternarize_weight
from .layout import build_part_layout

# Calls with more tokens run q2t_pack and the matmul as two ops, which
# give bitwise equal results. One parallel region instead of two pays off
# for small calls, while for large ones the separate matmul blocks the
# cache better. q2t_linear ran at 0.88x of the two ops for 25088 tokens,
# 384 -> 96, on one thread (tools/benchmark/benchmark_q2t_linear.py with
# that shape, AMD EPYC Zen 4, 2026-12-05). 4096 lies above the 3136 tokens
# of a 224x224 image in stage 1.
FUSED_MAX_TOKENS = 4096

__all__ = [
    'FusedNorm', 'TernaryPart', 'DeployTernaryLinear', 'DeployLinear2d',
    'projection_buffer_ids'
]


class FusedNorm(nn.Module):
    """LayerNorm over the channels that a deployed projection applies to
    its input tokens inside the quantize-and-pack op.

    Args:
        norm (nn.LayerNorm): The trained norm; its affine parameters are
            copied.
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        if len(norm.normalized_shape) != 1:
            raise ValueError('only a LayerNorm over one channel dimension can '
                             f'be fused, got normalized_shape='
                             f'{tuple(norm.normalized_shape)}')
        channels = norm.normalized_shape[0]
        weight = (norm.weight.detach().float().clone()
                  if norm.weight is not None else torch.ones(channels))
        bias = (norm.bias.detach().float().clone()
                if norm.bias is not None else None)
        self.register_buffer('weight', weight)
        self.register_buffer('bias', bias)
        self.eps = float(norm.eps)

    def extra_repr(self) -> str:
        return f'channels={self.weight.numel()}, eps={self.eps}'


class TernaryPart(nn.Module):
    """Input channels of a deployed projection that share one code radius.

    The buffers are the part's :class:`~mmtvmamba.deploy.layout.PartLayout`
    and its packed weight columns. An empty part (no channels) adds nothing.
    Loading a state dict resizes the buffers to the stored shapes, so a
    part built from an untrained model can receive a deployed checkpoint.

    Args:
        index (Tensor): int64 source channel of every kernel position.
        alpha (Tensor): float32 rounding scale of every kernel position.
        k_scale (Tensor): float32 scale of every 32-position word.
        weight (Tensor): int32 packed ternary weight, (N, 2 * words).
        radius (int): 1 for ternary codes, 2 for five levels.
    """

    def __init__(self, index: Tensor, alpha: Tensor, k_scale: Tensor,
                 weight: Tensor, radius: int) -> None:
        super().__init__()
        self.register_buffer('index', index)
        self.register_buffer('alpha', alpha)
        self.register_buffer('k_scale', k_scale)
        self.register_buffer('weight', weight)
        self.register_buffer('radius', torch.tensor(radius, dtype=torch.int8))
        # Python copies of the radius and the width, read on every forward
        # without a tensor access.
        self.code_radius = radius
        self.width = index.numel()

    def forward(self,
                x: Tensor,
                eps: float,
                weight_scale: Tensor,
                bias: Optional[Tensor],
                norm: Optional[FusedNorm] = None,
                residual: Optional[Tensor] = None,
                activation: str = 'none') -> Tensor:
        """Return the part's share of the projection of ``x``.

        Args:
            x (Tensor): float32 tokens as (batch, channels, length).
            eps (float): Added to the mean square of the token RMS.
            weight_scale (Tensor): float32 (1,) absmean weight scale.
            bias (Tensor, optional): float32 (N,) bias.
            norm (FusedNorm, optional): LayerNorm applied to the tokens
                first. Defaults to None.
            residual (Tensor, optional): float32 (batch * length, N) added
                to the output before the activation. Defaults to None.
            activation (str): ``'none'`` or ``'gelu'``, applied last.
                Defaults to ``'none'``.

        Returns:
            Tensor: float32 (batch * length, N) in (b, l) token order.
        """
        norm_args = () if norm is None else (norm.weight, norm.bias,
                                             norm.eps)
        if x.shape[0] * x.shape[2] <= FUSED_MAX_TOKENS:
            return q2t_linear(x, self.index, self.alpha, self.code_radius,
                              eps, self.weight, weight_scale, bias,
                              self.k_scale, residual, activation, *norm_args)

        packed, rms = q2t_pack(x, self.index, self.alpha, self.code_radius,
                               eps, *norm_args)
        matmul = quinary_mm if self.code_radius == 2 else ternary_mm
        return matmul(packed, self.weight, self.width, rms, weight_scale,
                      bias, self.k_scale, residual, activation)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buffer in self._buffers.items():
            stored = state_dict.get(prefix + name)
            if stored is not None and stored.shape != buffer.shape:
                self._buffers[name] = torch.empty(
                    stored.shape, dtype=buffer.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.code_radius = int(self.radius)
        self.width = self.index.numel()


class DeployTernaryLinear(nn.Module):
    """Projection of tokens ``(M, C)`` with ternary weights and Q2T codes.

    It computes what a Q2T-quantized projection computes in eval mode:
    every token is divided by its RMS, rounded channel-wise to
    ``clip(round(x / alpha_c), -Q_c, Q_c)``, multiplied by the ternary
    weight and rescaled by the token's RMS and the weight scale. Channels
    with radius 2 form a five-level part and the others a ternary part, and
    each part is one call of the bitwise op. Within a part, channels that
    share a 32-channel word share the mean scale of their group (see
    :mod:`mmtvmamba.deploy.layout`).

    Build it with :meth:`from_quantized`.

    Args:
        in_features (int): Input channels C.
        out_features (int): Output channels N.
        five (TernaryPart): Five-level part, possibly empty.
        three (TernaryPart): Ternary part, possibly empty.
        weight_scale (Tensor): float32 (1,) absmean weight scale.
        bias (Tensor, optional): float32 (N,) bias.
        eps (float): Added to the mean square of the RMS.
    """

    def __init__(self, in_features: int, out_features: int,
                 five: TernaryPart, three: TernaryPart, weight_scale: Tensor,
                 bias: Optional[Tensor], eps: float) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.eps = eps
        self.five = five
        self.three = three
        self.register_buffer('weight_scale', weight_scale)
        self.register_buffer('bias', bias)
        self.norm: Optional[FusedNorm] = None
        self.activation = 'none'

    @classmethod
    def from_quantized(cls,
                       weight: Tensor,
                       quantizer: Q2TQuantizer,
                       channels: slice = slice(None),
                       bias: Optional[Tensor] = None,
                       weight_eps: float = 1e-5,
                       weight_scale: Optional[Tensor] = None,
                       alpha_groups: Optional[int] = 8,
                       radius: Optional[int] = None
                       ) -> 'DeployTernaryLinear':
        """Convert a fake-quantized projection.

        Args:
            weight (Tensor): Latent float weight (N, C).
            quantizer (Q2TQuantizer): Quantizer of the projection's input.
            channels (slice): The quantizer's channels that feed this
                projection, for quantizers shared by several projections.
                Defaults to all.
            bias (Tensor, optional): Bias (N,). Defaults to None.
            weight_eps (float): Lower bound of the weight scale.
                Defaults to 1e-5.
            weight_scale (Tensor, optional): Absmean scale to use instead
                of the scale of ``weight``, for weights ternarized as one
                stacked tensor. Defaults to None.
            alpha_groups (int, optional): Scale groups per part; None for
                one per channel, which is exact. Defaults to 8.
            radius (int, optional): Radius of every channel, 1 for
                TVMamba-T; None keeps the quantizer's eval-mode radius.
                Defaults to None.
        """
        if not isinstance(quantizer, Q2TQuantizer):
            raise TypeError(
                f'deploy conversion supports Q2T activations, but layer '
                f'{quantizer.layer!r} uses {type(quantizer).__name__}; '
                "train with quant.act.type='Q2T'")
        weight = weight.detach().float()
        if weight_scale is None:
            codes, scale = ternarize_weight(weight, weight_eps)
        else:
            scale = weight_scale.detach().float()
            codes = torch.round(weight / scale).clamp_(-1, 1)

        alpha = quantizer.channel_alpha().detach().float()[channels]
        if quantizer.training:
            raise RuntimeError('convert a model in eval mode: call '
                               'model.eval() first, so the quantizers use '
                               'their deploy radius')
        radii = quantizer.current_radius().clone()[channels]
        if radius is not None:
            radii = torch.full_like(radii, radius)
        shared_scales = quantizer.scale_groups is not None
        parts = [
            _build_part(codes, alpha, radii, level, alpha_groups,
                        shared_scales) for level in (2, 1)
        ]
        return cls(codes.shape[1], codes.shape[0], parts[0], parts[1],
                   scale.reshape(1).float().clone(),
                   None if bias is None else bias.detach().float().clone(),
                   quantizer.eps)

    def forward(self, x: Tensor) -> Tensor:
        """Project tokens ``x`` (M, C) to float32 (M, N)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f'expected tokens of shape (M, '
                             f'{self.in_features}), got {tuple(x.shape)}')
        return self.project(x.t().unsqueeze(0))

    def fuse_norm(self, norm: nn.LayerNorm) -> None:
        """Apply ``norm``, a LayerNorm over the input channels, inside the
        projection, so its output is never written to memory."""
        if norm.normalized_shape != (self.in_features, ):
            raise ValueError(f'cannot fuse a LayerNorm over '
                             f'{tuple(norm.normalized_shape)} into a '
                             f'projection of {self.in_features} channels')
        self.norm = FusedNorm(norm)

    def fuse_activation(self, activation: nn.Module) -> None:
        """Apply ``activation`` to the output inside the projection.

        Raises:
            ValueError: If it is not an exact (erf) :class:`nn.GELU`.
        """
        if not (isinstance(activation, nn.GELU)
                and activation.approximate == 'none'):
            raise ValueError(f'only the exact nn.GELU can be fused, got '
                             f'{activation!r}')
        self.activation = 'gelu'

    def project(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        """Project ``x`` (B, C, L) to float32 (B * L, N), tokens in (b, l)
        order. Any strides are read without a copy.

        A fused LayerNorm is applied to ``x`` first, ``residual`` (B * L, N)
        is added to the output and a fused activation is applied last.
        """
        if x.dim() != 3 or x.shape[1] != self.in_features:
            raise ValueError(f'expected (B, {self.in_features}, L) input, '
                             f'got {tuple(x.shape)}')
        parts = [part for part in (self.five, self.three) if part.width]
        if not parts:
            raise RuntimeError('deployed projection has no input channels')

        # Each part adds the previous parts' output as its residual, so the
        # bias is added once and the activation applies to the full sum.
        x = x.float()
        out, bias = residual, self.bias
        for i, part in enumerate(parts):
            activation = self.activation if i == len(parts) - 1 else 'none'
            out = part(x, self.eps, self.weight_scale, bias, self.norm, out,
                       activation)
            bias = None
        return out

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, '
                f'out_features={self.out_features}, five_level_positions='
                f'{self.five.width}, ternary_positions={self.three.width}, '
                f'activation={self.activation}')


class DeployLinear2d(DeployTernaryLinear):
    """:class:`DeployTernaryLinear` over the channels of an NCHW tensor.

    The output keeps NCHW shape in channels-last memory order, which the
    following depthwise convolution and LayerNorm read without a copy.
    """

    @classmethod
    def from_linear(cls, linear: TernaryLinear2d,
                    alpha_groups: Optional[int] = 8,
                    radius: Optional[int] = None) -> 'DeployLinear2d':
        """Convert a quantized :class:`TernaryLinear2d`."""
        quant = linear.quant
        if linear.act_quant is None or not quant.weight:
            raise ValueError(f'layer {linear.layer!r} is not ternary in '
                             'weights and activations; leave it in float')
        return cls.from_quantized(
            linear.weight,
            linear.act_quant,
            bias=linear.bias,
            weight_eps=quant.weight_eps,
            alpha_groups=alpha_groups,
            radius=radius)

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        """Project ``x`` (B, C, H, W) to (B, N, H, W), adding ``residual``
        (B, N, H, W) to the output if given. A residual in channels-last
        memory order is read without a copy."""
        batch, _, height, width = x.shape
        tokens = None
        if residual is not None:
            tokens = residual.permute(0, 2, 3, 1).reshape(
                -1, self.out_features).float()
        y = self.project(x.flatten(2), tokens)
        return y.view(batch, height, width, -1).permute(0, 3, 1, 2)


def projection_buffer_ids(model: nn.Module) -> Tuple[Set[int], Set[int]]:
    """Return the ids of the packed weights and of the other buffers of the
    deployed projections in ``model``.

    Wrappers may rename state dict keys when saving, so callers match the
    tensors of ``model.state_dict(keep_vars=True)`` by identity.
    """
    packed, layout = set(), set()
    for module in model.modules():
        if isinstance(module, TernaryPart):
            packed.add(id(module.weight))
        if isinstance(module, DeployTernaryLinear):
            layout.update(id(buffer) for buffer in module.buffers())
    return packed, layout - packed


def _build_part(codes: Tensor, alpha: Tensor, radii: Tensor, level: int,
                alpha_groups: Optional[int],
                shared_scales: bool) -> TernaryPart:
    """Build the part of the channels whose radius is ``level``."""
    num_channels = codes.shape[1]
    channels = torch.nonzero(radii == level).view(-1)
    layout = build_part_layout(channels, alpha, level, alpha_groups,
                               num_channels, shared_scales)

    padded = torch.cat([codes, codes.new_zeros(codes.shape[0], 1)], dim=1)
    columns = padded.index_select(1, layout.index).to(torch.int8)
    weight = (pack_ternary(columns) if columns.numel() else
              torch.zeros(codes.shape[0], 0, dtype=torch.int32))
    return TernaryPart(layout.index, layout.alpha, layout.k_scale, weight,
                       level)
