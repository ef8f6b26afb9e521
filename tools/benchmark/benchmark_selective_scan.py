# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Time the pure-PyTorch selective scans on VMamba-T shapes.

Prints, per stage shape, the median forward and forward+backward time of
the chunked scan beside the sequential reference, measured in the same run.

Example:
    python tools/benchmark/benchmark_selective_scan.py --threads 2
"""
import argparse
import statistics
import time

import torch

from mmtvmamba.models.selective_scan import (selective_scan_chunked,
                                             selective_scan_ref)

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
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(**args, delta_softplus=True)
        if backward:
            out.sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2,
                        help='torch intra-op threads')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed runs per case; the median is shown')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f'threads: {torch.get_num_threads()}, repeats: {args.repeats}, '
          'times in ms (median)')
    header = (f'{"shape":<16}{"B x D x L":>18}{"ref fwd":>10}'
              f'{"chunk fwd":>11}{"speed-up":>10}{"ref f+b":>10}'
              f'{"chunk f+b":>11}{"speed-up":>10}')
    print(header)
    for name, batch, channels, length in SHAPES:
        row = [name, f'{batch}x{channels}x{length}']
        results = []
        for backward in (False, True):
            inputs = make_inputs(batch, channels, length, backward)
            ref = median_seconds(selective_scan_ref, inputs, backward,
                                 args.repeats)
            chunked = median_seconds(selective_scan_chunked, inputs,
                                     backward, args.repeats)
            results += [ref * 1e3, chunked * 1e3, ref / chunked]
        print(f'{row[0]:<16}{row[1]:>18}{results[0]:>10.1f}'
              f'{results[1]:>11.1f}{results[2]:>9.1f}x{results[3]:>10.1f}'
              f'{results[4]:>11.1f}{results[5]:>9.1f}x')


if __name__ == '__main__':
    main()
