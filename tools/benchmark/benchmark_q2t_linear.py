# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Time q2t_linear against q2t_pack followed by ternary_mm.

The shapes are nine of the projections of a deployed VMamba-T at 224x224
and batch 1, from every stage, with the fused LayerNorm, residual and GELU
where the deployed blocks have them. For each shape and thread count the two forms take turns
within every repeat, so a slow phase of a shared machine slows both. A
repeat times ``--inner`` calls and divides by the count. The script prints
the median microseconds per call of each form over ``--repeats`` repeats
and checks that both forms return equal outputs.

Example::

    PYTHONPATH=. python tools/benchmark/benchmark_q2t_linear.py --threads 1 2
"""
import argparse
import statistics
import time

import torch

import mmtvmamba.ops as ops

# (tokens M, channels C, kernel positions K, outputs N, LayerNorm,
# residual, activation, dt layout). A dt input is a strided slice of the
# x projection output, as in the deployed SS2D.
SHAPES = [
    (3136, 96, 96, 384, True, False, 'gelu', False),
    (3136, 384, 384, 96, False, True, 'none', False),
    (3136, 6, 32, 96, False, False, 'none', True),
    (784, 192, 192, 768, True, False, 'gelu', False),
    (196, 384, 384, 384, True, True, 'none', False),
    (196, 24, 32, 384, False, False, 'none', True),
    (49, 768, 768, 768, True, False, 'none', False),
    (49, 768, 768, 3072, True, False, 'gelu', False),
    (49, 3072, 3072, 768, False, True, 'none', False),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='torch intra-op thread counts')
    parser.add_argument('--repeats', type=int, default=21,
                        help='timed repeats per form; the median is shown')
    parser.add_argument('--inner', type=int, default=10,
                        help='calls per repeat')
    args = parser.parse_args()
    if min(args.threads + [args.repeats, args.inner]) < 1:
        parser.error('--threads, --repeats and --inner must be positive')
    return args


def make_call(tokens, channels, positions, outputs, norm, residual,
              activation, dt_layout):
    """Return the arguments of one q2t_linear call with random data, eight
    k_scale groups and a channels-last input."""
    generator = torch.Generator().manual_seed(0)
    if dt_layout:
        wide = torch.randn(1, tokens, 4 * channels + 64, generator=generator)
        x = wide[:, :, :channels].transpose(1, 2)
    else:
        x = torch.randn(1, tokens, channels, generator=generator)
        x = x.transpose(1, 2)
    index = torch.cat([
        torch.randperm(channels, generator=generator),
        torch.full((positions - channels, ), channels)
    ])
    alpha = torch.rand(positions, generator=generator) * 0.5 + 0.3
    codes = torch.randint(-1, 2, (outputs, positions), dtype=torch.int8,
                          generator=generator)
    words = (positions + 31) // 32
    groups = min(8, words)
    k_scale = (torch.rand(groups, generator=generator) + 0.5).repeat_interleave(
        torch.tensor([words // groups + (g < words % groups)
                      for g in range(groups)]))
    norm_weight = torch.rand(channels, generator=generator) + 0.5
    norm_bias = torch.randn(channels, generator=generator)
    return (x, index, alpha, 1, 1e-6, ops.pack_ternary(codes),
            torch.tensor([0.7]), torch.randn(outputs, generator=generator),
            k_scale,
            torch.randn(tokens, outputs, generator=generator)
            if residual else None, activation,
            norm_weight if norm else None, norm_bias if norm else None, 1e-5)


def two_ops(x, index, alpha, radius, eps, w_packed, col_scale, bias,
            k_scale, residual, activation, norm_weight, norm_bias, norm_eps):
    packed, rms = ops.q2t_pack(x, index, alpha, radius, eps, norm_weight,
                               norm_bias, norm_eps)
    return ops.ternary_mm(packed, w_packed, index.numel(), rms, col_scale,
                          bias, k_scale, residual, activation)


def time_forms(call, repeats, inner):
    """Return the median microseconds per call of each form."""
    forms = {'q2t_pack+ternary_mm': two_ops, 'q2t_linear': ops.q2t_linear}
    times = {name: [] for name in forms}
    for _ in range(repeats):
        for name, form in forms.items():
            start = time.perf_counter()
            for _ in range(inner):
                form(*call)
            times[name].append((time.perf_counter() - start) / inner * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    args = parse_args()
    print('| threads | M | C -> N | q2t_pack+ternary_mm us | q2t_linear us '
          '| speed-up |')
    print('| --- | --- | --- | --- | --- | --- |')
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in SHAPES:
            call = make_call(*shape)
            if not torch.equal(two_ops(*call), ops.q2t_linear(*call)):
                raise RuntimeError(f'q2t_linear differs from the two ops '
                                   f'for shape {shape}')
            us = time_forms(call, args.repeats, args.inner)
            before, after = us['q2t_pack+ternary_mm'], us['q2t_linear']
            print(f'| {threads} | {shape[0]} | {shape[1]} -> {shape[3]} | '
                  f'{before:.1f} | {after:.1f} | {before / after:.2f}x |')


if __name__ == '__main__':
    main()
