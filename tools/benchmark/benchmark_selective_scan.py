# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Time the selective scans on VMamba-T shapes.

Prints, per stage shape, the median forward time of the sequential
reference, the chunked pure-PyTorch scan and the fused C++ op
(``mmtvmamba.ops.selective_scan_fwd``, forward only), then the median
forward+backward time of the reference and the chunked scan, all measured
in the same run. A second table times SS2D's four-direction scan on the
same stages: the cross scan, the fused op and the cross merge as separate
steps against the fused cross selective scan op
(``mmtvmamba.ops.cross_selective_scan_fwd``), which walks the four
directions itself. With ``--model`` it also times a whole TVMambaVSSM
forward pass with the chunked and with the fused scan.

Example:
    python tools/benchmark/benchmark_selective_scan.py --threads 2
    python tools/benchmark/benchmark_selective_scan.py --threads 2 \
        --forward-only --model
"""
import argparse
import statistics
import time

import torch

from mmtvmamba.models import TVMambaVSSM
from mmtvmamba.models.layers import cross_merge, cross_scan
from mmtvmamba.models.selective_scan import (scan_impl,
                                             selective_scan_chunked,
                                             selective_scan_ref)
from mmtvmamba.ops import (cross_selective_scan_fwd, get_scan_isa,
                           selective_scan_fwd)
from mmtvmamba.ops.extension import extension_available

# (name, batch, channels = 4 directions * d_inner, tokens) of VMamba-T's
# four stages at 224x224 and of stage 1 at a 512x320 detection input.
SHAPES = [
    ('stage1 224', 1, 4 * 96, 56 * 56),
    ('stage2 224', 1, 4 * 192, 28 * 28),
    ('stage3 224', 1, 4 * 384, 14 * 14),
    ('stage4 224', 1, 4 * 768, 7 * 7),
    ('stage1 512x320', 2, 4 * 96, 128 * 80),
]

# (name, batch, d_inner, H, W) of the four-direction scans of the same
# stages.
CROSS_SHAPES = [
    ('stage1 224', 1, 96, 56, 56),
    ('stage2 224', 1, 192, 28, 28),
    ('stage3 224', 1, 384, 14, 14),
    ('stage4 224', 1, 768, 7, 7),
    ('stage1 512x320', 2, 96, 128, 80),
]


def make_inputs(batch, channels, length, requires_grad):
    args = dict(
        u=torch.randn(batch, channels, length),
        delta=torch.randn(batch, channels, length),
        A=-torch.rand(channels, 1),
        B=torch.randn(batch, 4, 1, length),
        C=torch.randn(batch, 4, 1, length),
        D=torch.randn(channels),
        delta_bias=torch.randn(channels))
    for value in args.values():
        value.requires_grad_(requires_grad)
    return args


def median_seconds(fn, args, backward, repeats):
    if not backward:
        # One untimed call, so the first timed one finds the thread pool
        # started and the allocator warm. Skipped for the backward cases,
        # whose reference run takes up to tens of seconds.
        fn(**args, delta_softplus=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(**args, delta_softplus=True)
        if backward:
            out.sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fused_forward_seconds(inputs, repeats):
    """Return the median time of the fused op, or None when not built."""
    if not extension_available():
        return None
    with torch.no_grad():
        return median_seconds(selective_scan_fwd, inputs, False, repeats)


def format_ms(seconds, width, digits=1):
    if seconds is None:
        return f'{"n/a":>{width}}'
    return f'{seconds * 1e3:>{width}.{digits}f}'


def format_ratio(numerator, denominator, width):
    if numerator is None or denominator is None:
        return f'{"n/a":>{width}}'
    return f'{numerator / denominator:>{width - 1}.1f}x'


def time_scans(repeats, backward):
    """Print the per-shape table of forward and forward+backward times.

    The forward+backward columns show n/a when ``backward`` is False.
    """
    header = (f'{"shape":<16}{"B x D x L":>18}{"ref fwd":>10}'
              f'{"chunk fwd":>11}{"fused fwd":>11}{"chunk/fused":>13}'
              f'{"ref f+b":>10}{"chunk f+b":>11}{"ref/chunk":>11}')
    print(header)
    for name, batch, channels, length in SHAPES:
        inputs = make_inputs(batch, channels, length, False)
        ref = median_seconds(selective_scan_ref, inputs, False, repeats)
        chunked = median_seconds(selective_scan_chunked, inputs, False,
                                 repeats)
        fused = fused_forward_seconds(inputs, repeats)

        ref_fb = chunked_fb = None
        if backward:
            inputs = make_inputs(batch, channels, length, True)
            ref_fb = median_seconds(selective_scan_ref, inputs, True,
                                    repeats)
            chunked_fb = median_seconds(selective_scan_chunked, inputs, True,
                                        repeats)

        print(f'{name:<16}{f"{batch}x{channels}x{length}":>18}'
              f'{format_ms(ref, 10)}{format_ms(chunked, 11)}'
              f'{format_ms(fused, 11)}{format_ratio(chunked, fused, 13)}'
              f'{format_ms(ref_fb, 10)}{format_ms(chunked_fb, 11)}'
              f'{format_ratio(ref_fb, chunked_fb, 11)}')


def make_cross_inputs(batch, channels, height, width):
    """Return channels-last operands of the cross selective scan, N = 1."""
    shape = (batch, height, width, channels)
    return dict(
        u=torch.randn(shape),
        deltas=[torch.randn(shape) for _ in range(4)],
        A=-torch.rand(4 * channels, 1),
        Bs=torch.randn(batch, height, width, 4, 1),
        Cs=torch.randn(batch, height, width, 4, 1),
        Ds=torch.randn(4 * channels),
        delta_bias=torch.randn(4 * channels))


def split_cross_scan(u, deltas, A, Bs, Cs, Ds, delta_bias, delta_softplus):
    """Run SS2D's scan as separate steps, as SS2D did before the fused
    cross selective scan: reorder the feature map with cross_scan, run the
    fused selective scan op and sum the directions with cross_merge.

    The time steps, B and C are taken as already in scan order, so only
    the reordering of the input and the merge of the output are timed.
    """
    batch, height, width, channels = u.shape
    length = height * width
    xs = cross_scan(u.permute(0, 3, 1, 2))
    ys = selective_scan_fwd(
        xs.reshape(batch, 4 * channels, length),
        torch.cat([d.view(batch, channels, length) for d in deltas], 1), A,
        Bs.view(batch, 4, 1, length), Cs.view(batch, 4, 1, length), Ds,
        delta_bias, delta_softplus)
    return cross_merge(ys.view(batch, 4, channels, length), height, width)


def time_cross_scans(repeats):
    """Print the per-stage times of the split and the fused cross scan."""
    print(f'\n{"shape":<16}{"B x H x W x D":>18}{"split ms":>10}'
          f'{"cross op ms":>13}{"split/cross":>13}')
    with torch.no_grad():
        for name, batch, channels, height, width in CROSS_SHAPES:
            inputs = make_cross_inputs(batch, channels, height, width)
            split = median_seconds(split_cross_scan, inputs, False, repeats)
            fused = median_seconds(cross_selective_scan_fwd, inputs, False,
                                   repeats)
            size = f'{batch}x{height}x{width}x{channels}'
            print(f'{name:<16}{size:>18}{format_ms(split, 10, 2)}'
                  f'{format_ms(fused, 13, 2)}'
                  f'{format_ratio(split, fused, 13)}')


def time_model(arch, size, repeats):
    """Print the median TVMambaVSSM forward time with each scan."""
    model = TVMambaVSSM(arch=arch).eval()
    image = torch.randn(1, 3, size, size)
    impls = ['torch', 'fused'] if extension_available() else ['torch']
    print(f'\nTVMambaVSSM {arch} forward, 1x3x{size}x{size}, no_grad')
    results = {}
    with torch.no_grad():
        for impl in impls:
            with scan_impl(impl):
                model(image)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(image)
                    times.append(time.perf_counter() - start)
            results[impl] = statistics.median(times)
            print(f'  scan {impl:<6}{results[impl] * 1e3:>10.1f} ms')
    if 'fused' in results:
        print(f'  torch/fused {results["torch"] / results["fused"]:.2f}x')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2,
                        help='torch intra-op threads')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed runs per case; the median is shown')
    parser.add_argument('--forward-only', action='store_true',
                        help='skip the forward+backward columns, which '
                        'take most of the run time')
    parser.add_argument('--model', action='store_true',
                        help='also time a TVMambaVSSM forward pass with '
                        'the chunked and with the fused scan')
    parser.add_argument('--arch', default='tiny',
                        help='TVMambaVSSM arch for --model')
    parser.add_argument('--size', type=int, default=224,
                        help='input height and width in pixels for --model')
    args = parser.parse_args()
    if min(args.threads, args.repeats, args.size) < 1:
        parser.error('--threads, --repeats and --size must be at least 1')
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    kernel = get_scan_isa() if extension_available() else 'not built'
    print(f'threads: {torch.get_num_threads()}, repeats: {args.repeats}, '
          f'fused kernel: {kernel}, times in ms (median)')
    time_scans(args.repeats, not args.forward_only)
    if extension_available():
        time_cross_scans(args.repeats)
    if args.model:
        time_model(args.arch, args.size, args.repeats)


if __name__ == '__main__':
    main()
