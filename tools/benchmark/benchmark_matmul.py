# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Benchmark the bitwise ternary matmul against torch fp32 and int8 GEMM.

For each shape (M tokens, K inputs, N outputs) the script times, on the
thread count given by ``--threads``:

* ``torch.matmul`` on float32 operands (fp32);
* ``torch._int_mm`` on int8 operands (int8). It needs M > 16 and K, N
  multiples of 8, so such shapes are zero-padded and marked with ``*``;
* ``torch.ops.mmtvmamba.ternary_mm`` on packed ternary operands with a
  per-token and a per-channel scale (ternary), alone and together with
  ``pack_ternary`` of the int8 activation codes (ternary+pack);
* ``torch.ops.mmtvmamba.quinary_mm`` on five-level activations (five-level),
  alone and with ``pack_quinary`` (five-level+pack).

The weights are packed once, outside the timed region, as in inference.
Every time is the median (``--statistic min``: the minimum) over
``--repeats`` runs. A run repeats the call until it lasts ``--min-time``
seconds and divides by the count.

Example::

    PYTHONPATH=. python tools/benchmark/benchmark_matmul.py --threads 2
"""
import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, NamedTuple, Tuple

import torch

SQUARE_SIZES = (512, 1024, 2048, 4096)

# VMamba-T: channels per stage and tokens per stage for two input sizes.
VMAMBA_T_DIMS = (96, 192, 384, 768)
VMAMBA_T_TOKENS = {
    'cls224': (56 * 56, 28 * 28, 14 * 14, 7 * 7),
    'det800x1216': (200 * 304, 100 * 152, 50 * 76, 25 * 38),
}


class Case(NamedTuple):
    """One GEMM shape: out (m, n) = a (m, k) @ w (n, k).T."""
    name: str
    group: str
    m: int
    k: int
    n: int


def build_cases() -> List[Case]:
    """Return the square shapes and the VMamba-T linear layer shapes."""
    cases = [Case(f'square{s}', 'square', s, s, s) for s in SQUARE_SIZES]
    for group, tokens in VMAMBA_T_TOKENS.items():
        for stage, (t, c) in enumerate(zip(tokens, VMAMBA_T_DIMS), 1):
            cases += [
                Case(f'{group}-s{stage}-in/out_proj', group, t, c, c),
                Case(f'{group}-s{stage}-fc1', group, t, c, 4 * c),
                Case(f'{group}-s{stage}-fc2', group, t, 4 * c, c),
            ]
    return cases


def select_cases(cases: List[Case], filters: List[str]) -> List[Case]:
    """Keep the cases whose name or group contains one of ``filters``."""
    if not filters:
        return cases
    return [
        case for case in cases
        if any(f in case.name or f == case.group for f in filters)
    ]


def time_call(fn: Callable[[], object], repeats: int, min_time: float,
              statistic: str) -> float:
    """Return the median (or min) over runs of the seconds per call."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    calls = max(1, min(1000, math.ceil(min_time / max(first, 1e-7))))

    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    if statistic == 'min':
        return min(samples)
    return statistics.median(samples)


def round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def make_int8_call(a_codes: torch.Tensor,
                   w_codes: torch.Tensor) -> Tuple[Callable[[], object], bool]:
    """Return a ``torch._int_mm`` call on padded copies of the operands.

    Returns:
        tuple: The call, and whether any dimension was padded.
    """
    m, k = a_codes.shape
    n = w_codes.shape[0]
    m_pad, k_pad, n_pad = max(m, 17), round_up(k, 8), round_up(n, 8)
    a = torch.zeros(m_pad, k_pad, dtype=torch.int8)
    a[:m, :k] = a_codes
    w_t = torch.zeros(k_pad, n_pad, dtype=torch.int8)
    w_t[:k, :n] = w_codes.T
    padded = (m_pad, k_pad, n_pad) != (m, k, n)
    return (lambda: torch._int_mm(a, w_t)), padded


def measure_case(case: Case, args: argparse.Namespace) -> Dict[str, object]:
    """Time every method on one shape; return seconds per call by method."""
    ops = torch.ops.mmtvmamba
    generator = torch.Generator().manual_seed(0)
    a_codes = torch.randint(
        -1, 2, (case.m, case.k), dtype=torch.int8, generator=generator)
    a5_codes = torch.randint(
        -2, 3, (case.m, case.k), dtype=torch.int8, generator=generator)
    w_codes = torch.randint(
        -1, 2, (case.n, case.k), dtype=torch.int8, generator=generator)
    a_float, w_float = a_codes.float(), w_codes.float()
    row_scale = torch.rand(case.m, generator=generator)
    col_scale = torch.rand(case.n, generator=generator)
    w_packed = ops.pack_ternary(w_codes)
    a_packed = ops.pack_ternary(a_codes)
    a5_packed = ops.pack_quinary(a5_codes)
    int8_call, padded = make_int8_call(a_codes, w_codes)
    k = case.k

    calls = {
        'fp32':
        lambda: torch.matmul(a_float, w_float.T),
        'int8':
        int8_call,
        'ternary':
        lambda: ops.ternary_mm(a_packed, w_packed, k, row_scale, col_scale,
                               None),
        'ternary+pack':
        lambda: ops.ternary_mm(
            ops.pack_ternary(a_codes), w_packed, k, row_scale, col_scale, None
        ),
        'five-level':
        lambda: ops.quinary_mm(a5_packed, w_packed, k, row_scale, col_scale,
                               None),
        'five-level+pack':
        lambda: ops.quinary_mm(
            ops.pack_quinary(a5_codes), w_packed, k, row_scale, col_scale, None
        ),
    }
    result = {'case': case, 'int8_padded': padded}
    for method, call in calls.items():
        result[method] = time_call(call, args.repeats, args.min_time,
                                   args.statistic)
    return result


METHODS = ('fp32', 'int8', 'ternary', 'ternary+pack', 'five-level',
           'five-level+pack')


def format_time_table(results: List[Dict[str, object]]) -> str:
    """Return a markdown table of ms and GOP/s (2 * M * K * N / time)."""
    header = '| case | M x K x N | ' + ' | '.join(f'{m} ms (GOP/s)'
                                                  for m in METHODS) + ' |'
    lines = [header, '|' + ' --- |' * (len(METHODS) + 2)]
    for r in results:
        case = r['case']
        ops_count = 2.0 * case.m * case.k * case.n
        cells = []
        for method in METHODS:
            seconds = r[method]
            mark = '*' if method == 'int8' and r['int8_padded'] else ''
            cells.append(f'{seconds * 1e3:.3f}{mark} '
                         f'({ops_count / seconds / 1e9:.0f})')
        shape = f'{case.m} x {case.k} x {case.n}'
        lines.append(f'| {case.name} | {shape} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


SPEEDUPS = (
    ('ternary', 'fp32'),
    ('ternary', 'int8'),
    ('ternary+pack', 'fp32'),
    ('ternary+pack', 'int8'),
    ('five-level', 'fp32'),
    ('five-level', 'int8'),
    ('five-level+pack', 'fp32'),
)


def format_speedup_table(results: List[Dict[str, object]]) -> str:
    """Return a markdown table of speed-ups (baseline time / our time)."""
    header = '| case | ' + ' | '.join(f'{ours} vs {base}'
                                      for ours, base in SPEEDUPS) + ' |'
    lines = [header, '|' + ' --- |' * (len(SPEEDUPS) + 1)]
    for r in results:
        cells = [f'{r[base] / r[ours]:.1f}x' for ours, base in SPEEDUPS]
        lines.append(f'| {r["case"].name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def cpu_model() -> str:
    """Return the CPU model name, family and model from /proc/cpuinfo."""
    fields = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or 'unknown'

    name = fields.get('model name', 'unknown')
    if 'cpu family' in fields:
        name += (f' (family {fields["cpu family"]}, '
                 f'model {fields.get("model", "?")})')
    return name


def load_average() -> str:
    try:
        return ', '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError:
        return 'unknown'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark the mmtvmamba ternary and five-level matmul '
        'ops against torch fp32 matmul and torch._int_mm.')
    parser.add_argument(
        '--threads',
        type=int,
        default=2,
        help='number of torch threads (torch.set_num_threads); default 2')
    parser.add_argument(
        '--repeats',
        type=int,
        default=5,
        help='timed runs per method and shape; the median is reported; '
        'default 5')
    parser.add_argument(
        '--min-time',
        type=float,
        default=0.02,
        help='minimum seconds per timed run; short calls are repeated '
        'until a run lasts this long; default 0.02')
    parser.add_argument(
        '--statistic',
        choices=('median', 'min'),
        default='median',
        help='statistic over the timed runs: median (default), or min, '
        'which is less sensitive to other processes on the same cores')
    parser.add_argument(
        '--sizes',
        nargs='*',
        default=[],
        help='run only the cases whose name contains one of these strings '
        'or whose group is one of them (square, cls224, det800x1216), '
        'e.g. --sizes square1024 cls224; default: all cases')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads < 1 or args.repeats < 1 or args.min_time < 0:
        raise SystemExit('--threads and --repeats must be >= 1 and '
                         '--min-time must be >= 0')

    try:
        import mmtvmamba.ops as mmtv_ops
    except ImportError as error:
        raise SystemExit(f'cannot import mmtvmamba ({error}); install it '
                         'with `pip install -e .` or run from the '
                         'repository root with PYTHONPATH=.')
    if not mmtv_ops.extension_available():
        raise SystemExit('mmtvmamba._ext is not built; build it with '
                         '`python setup.py build_ext --inplace`')
    cases = select_cases(build_cases(), args.sizes)
    if not cases:
        raise SystemExit(f'no case matches --sizes {" ".join(args.sizes)}; '
                         'try square, cls224 or det800x1216')

    torch.set_num_threads(args.threads)
    started = datetime.datetime.now().astimezone()
    load_before = load_average()
    results = []
    for index, case in enumerate(cases, 1):
        print(
            f'[{index}/{len(cases)}] {case.name} '
            f'({case.m} x {case.k} x {case.n})',
            file=sys.stderr,
            flush=True)
        results.append(measure_case(case, args))

    print(f'date: {started:%Y-%m-%d %H:%M %Z}')
    print(f'cpu: {cpu_model()}')
    print(f'torch {torch.__version__}, threads {args.threads}, kernel path '
          f'{mmtv_ops.get_isa()}, repeats {args.repeats} ({args.statistic}), '
          f'min time per run {args.min_time} s')
    print(f'load average (1, 5, 15 min) before: {load_before}, after: '
          f'{load_average()}')
    print('* int8 operands zero-padded to M > 16 and K, N multiples of 8.')
    print()
    print(format_time_table(results))
    print()
    print(format_speedup_table(results))


if __name__ == '__main__':
    main()
