# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Token-wise RMS normalization and the Q2T fake-quantization function."""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    'token_rms', 'rms_normalize', 'Q2TFunction', 'NormalizedQ2TFunction',
    'q2t_grad_factor', 'q2t_codes', 'topk_mean', 'sparse_topk_mean',
    'TopKMeanFunction', 'channels_first'
]

GRAD_SCALE_MODES = ('paper', 'lsq')


def token_rms(x: Tensor,
              dim: int,
              groups: int = 1,
              eps: float = 1e-6) -> Tensor:
    """Compute the root mean square of every token over its channel groups.

    Args:
        x (Tensor): Input of any shape.
        dim (int): Channel axis.
        groups (int): Number of contiguous channel groups. Defaults to 1.
        eps (float): Added to the mean square. Defaults to 1e-6.

    Returns:
        Tensor: ``sqrt(mean(x^2) + eps)`` per token and group, shaped like
        ``x.unflatten(dim, (groups, -1))`` with the second of the two split
        axes reduced to size 1.
    """
    dim = dim % x.dim()
    grouped = x.unflatten(dim, (groups, -1))
    # rms_normalize computes its RMS here too, so the fused quantizer and
    # the chain of rms_normalize and Q2TFunction round x / rms alike.
    return grouped.pow(2).mean(dim + 1, keepdim=True).add(eps).sqrt()


def rms_normalize(x: Tensor,
                  dim: int,
                  groups: int = 1,
                  eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """Divide every token of ``x`` by its root mean square over channels.

    The normalization is mean-free: ``x_bar = x / sqrt(mean(x^2) + eps)``,
    with the mean taken over the channel axis ``dim``. With ``groups > 1``
    the channel axis is split into that many contiguous groups and each
    group is normalized on its own.

    Args:
        x (Tensor): Input of any shape.
        dim (int): Channel axis.
        groups (int): Number of channel groups. Defaults to 1.
        eps (float): Added to the mean square. Defaults to 1e-6.

    Returns:
        tuple[Tensor, Tensor]: The normalized tensor, shaped like ``x``, and
        the RMS, shaped like the output of :func:`token_rms`.
    """
    dim = dim % x.dim()
    grouped = x.unflatten(dim, (groups, -1))
    rms = token_rms(x, dim, groups, eps)
    return (grouped / rms).flatten(dim, dim + 1), rms


def channels_first(x: Tensor, dim: int) -> Tensor:
    """Return ``x`` as a (C, N) matrix: channel axis ``dim`` first, the rest
    flattened."""
    return x.movedim(dim % x.dim(), 0).reshape(x.shape[dim], -1)


def topk_mean(values: Tensor,
              ratio: float,
              rows: Optional[Tensor] = None) -> Tensor:
    """Compute the mean of the largest ``ratio`` share of each row.

    The value is exact. Its gradient is ``1 / k`` on each of the ``k``
    largest entries of a row and 0 elsewhere. Entries tied with the k-th
    largest value share the weight left for them equally, which differs from
    the gradient of :func:`torch.topk` only in which tied entries receive
    it. The gradient has the memory layout of ``values``.

    Args:
        values (Tensor): A (C, N) matrix.
        ratio (float): Share of each row to average, in (0, 1]. At least
            one entry is kept, so ``ceil(ratio * N)`` entries are averaged.
        rows (Tensor, optional): Indices of the rows to average, as a 1-D
            integer tensor. The other rows get no gradient. Defaults to
            None, all rows.

    Returns:
        Tensor: The tail means, (C, ) or one per entry of ``rows``.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f'top-k ratio {ratio} must be in (0, 1]')
    if values.dim() != 2:
        raise ValueError(f'topk_mean expects a (C, N) matrix, got shape '
                         f'{tuple(values.shape)}')
    if rows is not None and (rows.dim() != 1 or rows.is_floating_point()):
        raise ValueError(f'rows must be a 1-D integer tensor of row indices, '
                         f'got {rows.dtype} of shape {tuple(rows.shape)}')
    k = max(1, math.ceil(ratio * values.shape[1]))
    if k == values.shape[1]:
        means = values.mean(1)
        return means if rows is None else means[rows]
    return TopKMeanFunction.apply(values, k, rows)


#: Maximum row length whose entry counts a float32 sum keeps exact.
_MAX_EXACT_FLOAT_COUNT = 2**24


@torch.no_grad()
def sparse_topk_mean(values: Tensor, ratio: float) -> Tensor:
    """Compute :func:`topk_mean` of rows that are mostly zero, without
    gradient.

    A row with at most ``k`` positive entries and enough zeros to fill the
    rest of its top ``k`` has the tail sum ``sum(max(v, 0))``, which needs
    no selection. Such rows take that sum. The other rows, and every row
    longer than 2^24 entries, go through :func:`topk_mean`, so every result
    equals that of :func:`topk_mean` up to float rounding.

    Args:
        values (Tensor): A (C, N) matrix, e.g. influence gains, which are 0
            wherever the five-level and ternary codes agree.
        ratio (float): Share of each row to average, in (0, 1].

    Returns:
        Tensor: The (C, ) tail means.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f'top-k ratio {ratio} must be in (0, 1]')
    if values.dim() != 2:
        raise ValueError(f'sparse_topk_mean expects a (C, N) matrix, got '
                         f'shape {tuple(values.shape)}')
    if not values.is_floating_point():
        raise ValueError(f'sparse_topk_mean expects floating-point values, '
                         f'got {values.dtype}; convert them with .float()')
    length = values.shape[1]
    k = max(1, math.ceil(ratio * length))
    if k == length or length > _MAX_EXACT_FLOAT_COUNT:
        return topk_mean(values, ratio)

    # Float sums of the signs count the entries exactly: their sum is
    # positive minus negative entries, their 1-norm the nonzero ones. On CPU
    # (torch 2.14) this ran several times faster than boolean masks.
    signs = torch.sign(values)
    num_nonzero = torch.linalg.vector_norm(signs, 1, dim=1)
    num_positive = (signs.sum(1) + num_nonzero) / 2
    num_zero = length - num_nonzero
    direct = (num_positive <= k) & (num_positive + num_zero >= k)

    means = torch.clamp(values, min=0, out=signs).sum(1) / k
    if not bool(direct.all()):
        rows = (~direct).nonzero().squeeze(1)
        means[rows] = topk_mean(values, ratio, rows).to(means.dtype)
    return means


class TopKMeanFunction(torch.autograd.Function):
    """Mean of the ``k`` largest entries of rows of a (C, N) matrix.

    Args of ``apply``: ``values`` (Tensor, (C, N) with ``N > k``), ``k``
    (int) and ``rows`` (Tensor or None, see :func:`topk_mean`). See
    :func:`topk_mean` for the gradient.
    """

    @staticmethod
    def forward(ctx, values: Tensor, k: int,
                rows: Optional[Tensor]) -> Tensor:
        selected = values if rows is None else values.index_select(0, rows)
        # The k + 1 largest entries give the k-th largest value, the
        # threshold of the gradient, and the (k + 1)-th, which shows whether
        # entries outside the top k tie with it.
        top, indices = selected.topk(k + 1, dim=1, sorted=False)
        lowest, lowest_at = top.topk(2, dim=1, largest=False, sorted=True)
        below, threshold = lowest[:, :1], lowest[:, 1:]
        ctx.save_for_backward(values, rows, indices, lowest_at[:, :1],
                              threshold, below)
        ctx.k = k
        return (top.sum(1) - below[:, 0]) / k

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        values, rows, indices, below_at, threshold, below = ctx.saved_tensors
        k = ctx.k
        weight = (grad_output / k).unsqueeze(1).to(values.dtype)
        # zeros_like keeps the memory layout of values.
        grad = torch.zeros_like(values)

        if bool((below < threshold).all()):
            # No ties cross the top k: put the weight on the k largest
            # entries, leaving out the (k + 1)-th.
            src = weight.expand(-1, k + 1).clone()
            src.scatter_(1, below_at, 0.)
            if rows is None:
                return grad.scatter_(1, indices, src), None, None
            grad.index_put_((rows.unsqueeze(1), indices), src)
            return grad, None, None

        if rows is None:
            rows = torch.arange(values.shape[0], device=values.device)
        selected = values.index_select(0, rows)
        above = selected > threshold
        tied = selected == threshold
        num_above = above.sum(1, keepdim=True)
        num_tied = tied.sum(1, keepdim=True).clamp_(min=1)
        tied_weight = weight * (k - num_above) / num_tied
        selected_grad = torch.where(above, weight, 0.)
        selected_grad = torch.where(tied, tied_weight, selected_grad)
        grad.index_copy_(0, rows, selected_grad)
        return grad, None, None


def q2t_codes(u: Tensor, radius: Tensor) -> Tensor:
    """Return ``clip(round(u), -radius, radius)``.

    Rounding is to the nearest integer with ties to even (``torch.round``),
    so 0.5 maps to 0 and 1.5 to 2.
    """
    return torch.clamp(torch.round(u), -radius, radius)


def q2t_grad_factor(radius: Tensor, elements_per_channel: int,
                    mode: str) -> Tensor:
    """Return the per-channel rescaling of the scale gradient.

    Args:
        radius (Tensor): Per-channel integer radius Q as a float tensor.
        elements_per_channel (int): Number of elements N_c of each channel
            in the quantized tensor.
        mode (str): ``'paper'`` for ``1 / (sqrt(N_c) * Q)``, the rule the
            TVMamba paper prints, or ``'lsq'`` for LSQ's own
            ``1 / sqrt(N_c * Q)``.
    """
    if mode == 'paper':
        return 1.0 / (math.sqrt(elements_per_channel) * radius)
    if mode == 'lsq':
        return 1.0 / torch.sqrt(elements_per_channel * radius)
    raise ValueError(f'invalid grad_scale mode {mode!r}; '
                     f'use one of {GRAD_SCALE_MODES}')


class Q2TFunction(torch.autograd.Function):
    """Fake-quantize ``x`` to ``alpha * clip(round(x / alpha), -Q, Q)``.

    ``alpha`` and ``radius`` have as many axes as ``x`` and size 1 on every
    token axis, so they broadcast against it. The backward pass is the bounded
    straight-through estimator with ``u = x / alpha`` and the in-range mask
    ``M = 1(|u| <= Q)``, where the bound itself counts as in range:

    - ``dL/dx = g * M``;
    - ``dL/dalpha_c = factor_c * sum(g * (q - u * M))`` over the channel's
      elements, with ``factor_c`` from :func:`q2t_grad_factor`.

    The gradient at ``|u| == Q`` is defined here rather than inherited from
    ``torch.clamp``, whose gradient at the clip bound changed between torch
    releases.
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, radius: Tensor,
                grad_scale: str) -> Tensor:
        if alpha.dim() != x.dim() or radius.shape != alpha.shape:
            raise ValueError(
                f'alpha {tuple(alpha.shape)} and radius '
                f'{tuple(radius.shape)} must have the same shape with '
                f'{x.dim()} axes to broadcast against x {tuple(x.shape)}')
        u = x / alpha
        codes = q2t_codes(u, radius)
        # Codes lie in [-2, 2], so int8 keeps them exactly; saving them
        # spares the backward pass a second rounding.
        ctx.save_for_backward(x, alpha, radius, codes.to(torch.int8))
        ctx.grad_scale = grad_scale
        return codes * alpha

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, alpha, radius, codes = ctx.saved_tensors
        u = x / alpha
        inside = u.abs() <= radius

        grad_x = torch.where(inside, grad_output, 0.)

        token_dims = [i for i in range(x.dim()) if alpha.shape[i] == 1]
        elements_per_channel = x.numel() // alpha.numel()
        grad_alpha = (grad_output * (codes - torch.where(inside, u, 0.))).sum(
            token_dims, keepdim=True)
        grad_alpha = grad_alpha * q2t_grad_factor(
            radius, elements_per_channel, ctx.grad_scale)
        return grad_x, grad_alpha, None, None


def _grouped_einsum_labels(ndim: int, dim: int) -> Tuple[str, str, str]:
    """Return einsum labels of a grouped tensor, its (G, C_g) channels and
    its tokens with the group axis, for channel axes ``dim, dim + 1``."""
    labels = 'abcdefghijklmnop'[:ndim]
    channels = labels[dim:dim + 2]
    tokens = labels[:dim + 1] + labels[dim + 2:]
    return labels, channels, tokens


class NormalizedQ2TFunction(torch.autograd.Function):
    """RMS-normalize every token, fake-quantize it with Q2T and restore it.

    Computes ``y = r * alpha * clip(round(x / (r * alpha)), -Q, Q)``, with
    ``r`` the RMS of each token over its channel group from
    :func:`token_rms`. The result and the gradients equal those of
    :func:`rms_normalize`, :class:`Q2TFunction` and a multiplication by
    ``r`` chained under autograd, up to float rounding. One autograd node
    computes them from the saved tensors, with its reductions run as matrix
    products in the memory layout of ``x``.

    With ``u = x / (r * alpha)``, the in-range mask ``M = 1(|u| <= Q)``, the
    output gradient ``g`` and ``t = g * (q - u * M)``:

    - ``dL/dr = sum over the channels of the group of alpha * t``;
    - ``dL/dx = g * M + x * dL/dr / (C_g * r)``, with ``C_g`` channels per
      group;
    - ``dL/dalpha_c = factor_c * sum over the tokens of r * t``, with
      ``factor_c`` from :func:`q2t_grad_factor`.

    Args of ``apply``: ``x`` (Tensor), ``alpha`` and ``radius`` (Tensor, one
    entry per channel, ``radius`` as floats), ``dim`` (int, channel axis),
    ``groups`` (int), ``eps`` (float), ``grad_scale`` (str, a mode of
    :func:`q2t_grad_factor`) and ``with_drop`` (bool, default False). The
    output is shaped and typed like ``x``, and the arithmetic runs in
    float32. With ``with_drop``, ``apply`` returns a second float32 tensor
    without gradient, ``x^(3) - x^(5)``: the ternary minus the five-level
    quantization of every element, in the units of the output, whatever the
    radius of its channel. Influence scoring reads it.
    """

    @staticmethod
    def forward(ctx,
                x: Tensor,
                alpha: Tensor,
                radius: Tensor,
                dim: int,
                groups: int,
                eps: float,
                grad_scale: str,
                with_drop: bool = False):
        dim = dim % x.dim()
        channels = x.shape[dim]
        if alpha.shape != (channels, ) or radius.shape != (channels, ):
            raise ValueError(
                f'alpha {tuple(alpha.shape)} and radius '
                f'{tuple(radius.shape)} must both have shape ({channels},) '
                f'for x {tuple(x.shape)} with channels on axis {dim}')
        if grad_scale not in GRAD_SCALE_MODES:
            raise ValueError(f'invalid grad_scale mode {grad_scale!r}; '
                             f'use one of {GRAD_SCALE_MODES}')

        grouped = x.float().unflatten(dim, (groups, -1))
        shape = [1] * grouped.dim()
        shape[dim:dim + 2] = grouped.shape[dim:dim + 2]
        alpha = alpha.float().view(shape)
        radius = radius.float().view(shape)
        rms = token_rms(x.float(), dim, groups, eps)

        # In-place steps keep the memory layout of x, so later elementwise
        # passes do not mix layouts.
        u = grouped / rms
        u.div_(alpha)
        codes = torch.round(u)
        drop = None
        if with_drop:
            drop = _three_minus_five(codes, alpha, rms).flatten(dim, dim + 1)
            ctx.mark_non_differentiable(drop)
        codes.clamp_(min=-radius, max=radius)
        # The codes stay float so the backward pass runs float-only
        # arithmetic. On CPU (torch 2.14), elementwise ops that mix int8 or
        # bool operands with floats ran several times slower.
        ctx.save_for_backward(grouped, u, codes, rms, alpha, radius)
        ctx.dim, ctx.grad_scale, ctx.dtype = dim, grad_scale, x.dtype
        y = torch.mul(codes, alpha).mul_(rms)
        y = y.flatten(dim, dim + 1).to(x.dtype)
        return y if drop is None else (y, drop)

    @staticmethod
    def backward(ctx, grad_output: Tensor, grad_drop: Optional[Tensor] = None):
        grouped, u, codes, rms, alpha, radius = ctx.saved_tensors
        dim = ctx.dim
        grad = grad_output.float().unflatten(dim, grouped.shape[dim:dim + 2])
        labels, channels, tokens = _grouped_einsum_labels(grouped.dim(), dim)

        # The in-range mask M as floats 0 and 1, compared in place.
        inside = u.abs()
        torch.le(inside, radius, out=inside)
        # t = g * (q - u * M), built in place in one buffer.
        t = torch.mul(u, inside)
        torch.sub(codes, t, out=t)
        t.mul_(grad)

        grad_rms = torch.einsum(f'{labels},{channels}->{tokens}', t,
                                alpha.view(grouped.shape[dim:dim + 2]))
        grad_rms = grad_rms.unsqueeze(dim + 1)
        grad_x = torch.mul(inside, grad)
        grad_x.addcmul_(grouped, grad_rms / (grouped.shape[dim + 1] * rms))
        grad_x = grad_x.flatten(dim, dim + 1).to(ctx.dtype)

        grad_alpha = None
        if ctx.needs_input_grad[1]:
            grad_alpha = torch.einsum(f'{labels},{tokens}->{channels}', t,
                                      rms.squeeze(dim + 1))
            factor = q2t_grad_factor(radius.flatten(),
                                     u.numel() // radius.numel(),
                                     ctx.grad_scale)
            grad_alpha = grad_alpha.flatten() * factor
        return grad_x, grad_alpha, None, None, None, None, None, None


def _three_minus_five(rounded: Tensor, alpha: Tensor, rms: Tensor) -> Tensor:
    """Return ``x^(3) - x^(5)`` from the unclipped codes ``round(u)``.

    For the five-level codes ``R = clip(round(u), -2, 2)``,
    ``R - clip(R, -1, 1)`` equals ``round(R / 2)``, because
    :func:`torch.round` rounds half to even and so maps +-0.5 to 0. This
    form needs one buffer.
    """
    drop = rounded.clamp(-2, 2)
    return drop.mul_(0.5).round_().mul_(-alpha).mul_(rms)
