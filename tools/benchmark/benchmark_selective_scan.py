# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Time the selective scans on VMamba-T shapes.

Prints, per stage shape, the median forward time of the sequential
reference, the chunked pure-PyTorch scan and the fused C++ op
(``mmtvmamba.ops.selective_scan_fwd``, forward only), then the median
forward+backward time of the reference and the chunked scan, all measured
in the same run. With ``--model`` it also times a whole TVMambaVSSM
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
from mmtvmamba.models.selective_scan import (scan_impl,
                                             selective_scan_chunked,
                                             selective_scan_ref)
from mmtvmamba.ops import get_scan_isa, selective_scan_fwd
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


def format_ms(seconds, width):
    if seconds is None:
        return f'{"n/a":>{width}}'
    return f'{seconds * 1e3:>{width}.1f}'


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
    if args.model:
        time_model(args.arch, args.size, args.repeats)


if __name__ == '__main__':
    main()
