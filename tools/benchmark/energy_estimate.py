# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Estimate the energy of one GEMM in FP32 and in the bitwise ternary kernels.

This is an estimate from operation counts, not a measurement. For each
shape ``out (M, N) = a (M, K) @ w (N, K).T`` the script counts the
operations of

* an FP32 matmul: one FP32 multiply and one FP32 add per multiply-
  accumulate (MAC). The bias is the initial accumulator value, so it adds
  no operation;
* ``ternary_mm``: the operations that the AVX-512 kernel executes per
  32-bit word of K and per output, its float epilogue, and the quantization
  and packing of the float activations;
* ``quinary_mm`` (five-level activations): the same with two activation
  plane pairs per word.

It then prices every operation with the 45 nm figures of Horowitz (ISSCC
2014) and, with ``--memory sram`` or ``--memory dram``, adds the energy of
reading every operand once and writing the output once. The relative
energies of Table 5 of the TVMamba paper ("TVMamba: Towards Efficient
Visual Mamba with Ternary Weights and Activations") appear beside the
square sizes that it lists.

Example::

    .venv/bin/python tools/benchmark/energy_estimate.py --memory none dram
"""
import argparse
import importlib.util
import math
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Sequence


class EnergyFigure(NamedTuple):
    """Energy of one operation or one memory access, with its description."""
    pj: float
    description: str


# Energy per operation, or per 64-bit memory access, at 45 nm and 0.9 V, from
# M. Horowitz, "Computing's energy problem (and what we can do about it)",
# ISSCC 2014. Reads and writes are both priced with the read figure.
# NOTE: the values are those reproduced from the talk in later papers. The
# 32-bit add and multiply figures and the 8 KB SRAM access match table 3 of
# https://pmc.ncbi.nlm.nih.gov/articles/PMC8934428/. The other rows were not
# checked against the original slides.
HOROWITZ_45NM = {
    'int8_add': EnergyFigure(0.03, '8-bit integer add'),
    'int16_add': EnergyFigure(0.05, '16-bit integer add'),
    'int32_add': EnergyFigure(0.1, '32-bit integer add'),
    'fp16_add': EnergyFigure(0.4, '16-bit float add'),
    'fp32_add': EnergyFigure(0.9, '32-bit float add'),
    'int8_mult': EnergyFigure(0.2, '8-bit integer multiply'),
    'int32_mult': EnergyFigure(3.1, '32-bit integer multiply'),
    'fp16_mult': EnergyFigure(1.1, '16-bit float multiply'),
    'fp32_mult': EnergyFigure(3.7, '32-bit float multiply'),
    'sram_8kb': EnergyFigure(10.0, '64-bit read from an 8 KB SRAM'),
    'sram_32kb': EnergyFigure(20.0, '64-bit read from a 32 KB SRAM'),
    'sram_1mb': EnergyFigure(100.0, '64-bit read from a 1 MB SRAM'),
    'dram_low': EnergyFigure(1300.0, '64-bit DRAM access, low end'),
    'dram_high': EnergyFigure(2600.0, '64-bit DRAM access, high end'),
}

# SRAM sizes of the table in KB, for --sram-kb.
SRAM_FIGURES = {8: 'sram_8kb', 32: 'sram_32kb', 1024: 'sram_1mb'}
DRAM_FIGURES = {'low': 'dram_low', 'high': 'dram_high'}

# A 32-bit popcount as a tree of adders: 16 adds of 1-bit pairs, then 8, 4,
# 2 and 1 adds of 2- to 5-bit partial counts.
POPCOUNT_TREE_ADDS = 16 + 8 + 4 + 2 + 1

# Prices of a 32-bit popcount, by --popcount-model value. The table has no
# popcount, so both are assumptions.
POPCOUNT_MODELS = {
    'tree': f'{POPCOUNT_TREE_ADDS} adds of at most 5 bits, each priced as '
    'an 8-bit add',
    'add': 'one 32-bit add',
}

MEMORY_MODELS = {
    'none': 'Compute only, no memory access counted',
    'sram': 'Every operand read once and the output written once, in 64-bit '
    'accesses to an SRAM',
    'dram': 'Every operand read once and the output written once, in 64-bit '
    'DRAM accesses',
}

# Kernel operations missing from the table: the table entry that prices
# each one, and the reason.
ASSUMED_OPERATIONS = {
    'logic32': ('int32_add', '32-bit AND, XOR or NOT, priced as a 32-bit '
                'add (an upper bound: it has no carry chain)'),
    'int8_op': ('int8_add', '8-bit compare or OR, priced as an 8-bit add '
                '(a compare is a subtraction)'),
    'fp32_convert': ('fp32_add', 'int32-float conversion or rounding, '
                     'priced as an FP32 add (both shift and normalize a '
                     'mantissa)'),
}

# Relative energy of the bitwise matmul (FP = 1.0) in Table 5 of the TVMamba
# paper, for square matrices. The paper estimates it from the Horowitz
# figures but does not state its operation counts.
PAPER_TABLE5 = {512: 0.1786, 1024: 0.1205, 2048: 0.0730, 4096: 0.0413}

WORD_BITS = 32
# Bit-planes of the packed operands: nonzero and sign per ternary operand,
# two such pairs for five-level activations.
TERNARY_PLANES = 2
QUINARY_PLANES = 4
FLOAT32_BYTES = 4
WORD_BYTES = 4
MEMORY_ACCESS_BYTES = 8

OPERATION_STAGES = ('gemm', 'epilogue', 'quantize')
STAGES = OPERATION_STAGES + ('memory', )
METHODS = ('fp32', 'ternary', 'five-level')


class Shape(NamedTuple):
    """One GEMM shape: out (m, n) = a (m, k) @ w (n, k).T."""
    name: str
    group: str
    m: int
    k: int
    n: int


class Workload(NamedTuple):
    """Operation counts by stage and memory traffic of one GEMM method.

    ``operations`` maps a stage (gemm, epilogue, quantize) to the count of
    each operation kind. ``traffic`` maps an operand to the bytes that it
    moves between memory and the core.
    """
    operations: Dict[str, Dict[str, int]]
    traffic: Dict[str, int]


def _check_dimensions(m: int, k: int, n: int) -> None:
    for name, value in (('m', m), ('k', k), ('n', n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'invalid {name}={value!r}; GEMM sizes must be '
                             'positive integers')


def words_per_plane(k: int) -> int:
    """Return the 32-bit words per bit-plane of a packed row of K codes."""
    return (k + WORD_BITS - 1) // WORD_BITS


def count_fp32(m: int, k: int, n: int) -> Workload:
    """Count the operations and memory traffic of an FP32 matmul.

    Args:
        m (int): Rows of the activations (tokens).
        k (int): Inputs per row.
        n (int): Outputs per row (rows of the weight).

    Returns:
        Workload: One FP32 multiply and one FP32 add per MAC, and the bytes
        of float32 activations, weights, bias and output.
    """
    _check_dimensions(m, k, n)
    macs = m * k * n
    operations = {'gemm': {'fp32_mult': macs, 'fp32_add': macs}}
    traffic = {
        'activations': m * k * FLOAT32_BYTES,
        'weights': n * k * FLOAT32_BYTES,
        'bias': n * FLOAT32_BYTES,
        'output': m * n * FLOAT32_BYTES,
    }
    return Workload(operations, traffic)


def count_bitwise(m: int, k: int, n: int, levels: int) -> Workload:
    """Count the operations and memory traffic of the bitwise kernel.

    The counts follow the AVX-512 kernel of ``mmtvmamba.ops``:

    * GEMM, per output and per 32-bit word of K, once per activation level:
      AND of the nonzero planes, then XOR and AND of the sign planes, two
      popcounts and two 32-bit adds into the accumulators. The XOR and AND
      are one VPTERNLOGD, counted as two logic operations. The padding bits
      of the last word are processed like the others.
    * Epilogue, per output: two 32-bit adds to form ``count_nz - 2 *
      count_neg``, one int32-to-float conversion, one multiply of the row
      and column scales and one fused multiply-add with the bias (counted
      as one multiply and one add).
    * Quantization, per activation element: a square and an add for the
      token's root mean square, and multiplies by the token's 1 / RMS and
      the channel's 1 / alpha. Then one rounding, two compares to clip,
      and the packer's three byte compares and one OR. Per packed word:
      one NOT of the zero mask, and for five levels one AND for the low
      sign plane. The weights are packed once, offline, and are not
      counted.

    The counts assume one pass over all K words per output. Masked lanes of
    a partial 16-row group are not counted, because only real outputs are.

    Args:
        m (int): Rows of the activations (tokens).
        k (int): Inputs per row.
        n (int): Outputs per row (rows of the weight).
        levels (int): 1 for ternary activations (``ternary_mm``), 2 for
            five-level activations (``quinary_mm``).

    Returns:
        Workload: Operation counts by stage and the bytes of each operand.

    Raises:
        ValueError: If a size is not a positive integer or ``levels`` is
            not 1 or 2.
    """
    _check_dimensions(m, k, n)
    if levels not in (1, 2):
        raise ValueError(f'invalid levels={levels!r}; use 1 (ternary) or 2 '
                         '(five-level)')
    kd = words_per_plane(k)
    outputs = m * n
    word_steps = outputs * kd * levels
    gemm = {
        'logic32': 3 * word_steps,
        'popcount32': 2 * word_steps,
        'int32_add': 2 * word_steps,
    }
    epilogue = {
        'int32_add': 2 * outputs,
        'fp32_convert': outputs,
        'fp32_mult': 2 * outputs,
        'fp32_add': outputs,
    }

    # NOTE: per-token terms (square root and reciprocal of the mean square,
    # M of each per GEMM) have no figure in the table and are left out.
    elements = m * k
    packed_words = m * kd
    quantize = {
        'fp32_mult': 3 * elements,
        'fp32_add': elements,
        'fp32_convert': elements,
        'int8_op': 6 * elements,
        'logic32': levels * packed_words,
    }

    planes = TERNARY_PLANES if levels == 1 else QUINARY_PLANES
    traffic = {
        'activations': m * k * FLOAT32_BYTES,
        'channel scales': k * FLOAT32_BYTES,
        # The quantizer writes the packed activations and the kernel reads
        # them back.
        'packed activations': 2 * m * planes * kd * WORD_BYTES,
        'packed weights': n * TERNARY_PLANES * kd * WORD_BYTES,
        'row and column scales': (m + n) * FLOAT32_BYTES,
        'bias': n * FLOAT32_BYTES,
        'output': m * n * FLOAT32_BYTES,
    }
    operations = {'gemm': gemm, 'epilogue': epilogue, 'quantize': quantize}
    return Workload(operations, traffic)


def operation_energy_pj(popcount_model: str) -> Dict[str, float]:
    """Return the energy in pJ of every counted operation kind.

    Args:
        popcount_model (str): ``'tree'`` or ``'add'``, see
            ``POPCOUNT_MODELS``.

    Returns:
        dict[str, float]: pJ by operation kind.

    Raises:
        ValueError: If ``popcount_model`` is unknown.
    """
    if popcount_model not in POPCOUNT_MODELS:
        raise ValueError(f'invalid popcount model {popcount_model!r}; use '
                         f'one of {sorted(POPCOUNT_MODELS)}')
    energy = {
        name: HOROWITZ_45NM[name].pj
        for name in ('fp32_mult', 'fp32_add', 'int32_add')
    }
    for name, (priced_as, _) in ASSUMED_OPERATIONS.items():
        energy[name] = HOROWITZ_45NM[priced_as].pj
    if popcount_model == 'tree':
        energy['popcount32'] = (POPCOUNT_TREE_ADDS *
                                HOROWITZ_45NM['int8_add'].pj)
    else:
        energy['popcount32'] = HOROWITZ_45NM['int32_add'].pj
    return energy


def memory_access_pj(memory: str, sram_kb: int = 1024,
                     dram_figure: str = 'low') -> float:
    """Return the energy in pJ of one 64-bit access under a memory model.

    Args:
        memory (str): ``'none'``, ``'sram'`` or ``'dram'``.
        sram_kb (int): SRAM size in KB for ``'sram'``: 8, 32 or 1024.
            Defaults to 1024.
        dram_figure (str): ``'low'`` (1.3 nJ) or ``'high'`` (2.6 nJ) end
            of the DRAM range for ``'dram'``. Defaults to ``'low'``.

    Returns:
        float: pJ per access, 0 for ``'none'``.

    Raises:
        ValueError: If a value is not one of the listed choices.
    """
    if memory not in MEMORY_MODELS:
        raise ValueError(f'invalid memory model {memory!r}; use one of '
                         f'{sorted(MEMORY_MODELS)}')
    if sram_kb not in SRAM_FIGURES:
        raise ValueError(f'invalid SRAM size {sram_kb!r} KB; use one of '
                         f'{sorted(SRAM_FIGURES)}')
    if dram_figure not in DRAM_FIGURES:
        raise ValueError(f'invalid DRAM figure {dram_figure!r}; use one of '
                         f'{sorted(DRAM_FIGURES)}')
    if memory == 'sram':
        return HOROWITZ_45NM[SRAM_FIGURES[sram_kb]].pj
    if memory == 'dram':
        return HOROWITZ_45NM[DRAM_FIGURES[dram_figure]].pj
    return 0.0


def memory_accesses(traffic: Dict[str, int]) -> int:
    """Return the 64-bit accesses that move every operand of ``traffic``."""
    return sum(
        math.ceil(size / MEMORY_ACCESS_BYTES) for size in traffic.values())


def estimate_energy_pj(workload: Workload, popcount_model: str,
                       access_pj: float) -> Dict[str, float]:
    """Return the estimated energy in pJ of a workload by stage.

    Args:
        workload (Workload): Output of :func:`count_fp32` or
            :func:`count_bitwise`.
        popcount_model (str): ``'tree'`` or ``'add'``.
        access_pj (float): pJ per 64-bit memory access, from
            :func:`memory_access_pj`.

    Returns:
        dict[str, float]: pJ for each stage in ``STAGES`` and their sum
        under ``'total'``.

    Raises:
        ValueError: If ``popcount_model`` is unknown or ``access_pj`` is
            negative.
    """
    if access_pj < 0:
        raise ValueError(f'invalid access energy {access_pj!r} pJ; it must '
                         'be >= 0')
    prices = operation_energy_pj(popcount_model)
    energy = {}
    for stage in OPERATION_STAGES:
        counts = workload.operations.get(stage, {})
        energy[stage] = sum(prices[op] * count for op, count in counts.items())
    energy['memory'] = access_pj * memory_accesses(workload.traffic)
    energy['total'] = sum(energy[stage] for stage in STAGES)
    return energy


def count_methods(shape: Shape) -> Dict[str, Workload]:
    """Return the workload of every method in ``METHODS`` for one shape."""
    return {
        'fp32': count_fp32(shape.m, shape.k, shape.n),
        'ternary': count_bitwise(shape.m, shape.k, shape.n, levels=1),
        'five-level': count_bitwise(shape.m, shape.k, shape.n, levels=2),
    }


def square_shapes(sizes: Sequence[int]) -> List[Shape]:
    """Return square shapes (M = K = N) for the given sizes."""
    return [Shape(f'square{s}', 'square', s, s, s) for s in sizes]


def vmamba_shapes(groups: Sequence[str]) -> List[Shape]:
    """Return the VMamba-T linear layer shapes of ``benchmark_matmul.py``.

    Args:
        groups (Sequence[str]): Input-size groups of that script, e.g.
            ``cls224`` or ``det800x1216``.

    Returns:
        list[Shape]: The shapes of those groups, in the script's order.

    Raises:
        ValueError: If a group is not one of the script's groups.
    """
    # benchmark_matmul.py imports torch, so it is loaded only when asked.
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'benchmark_matmul.py')
    spec = importlib.util.spec_from_file_location('benchmark_matmul', path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)

    known = tuple(benchmark.VMAMBA_T_TOKENS)
    for group in groups:
        if group not in known:
            raise ValueError(f'invalid VMamba-T group {group!r}; use one of '
                             f'{known}')
    return [
        Shape(case.name, case.group, case.m, case.k, case.n)
        for case in benchmark.build_cases() if case.group in groups
    ]


def format_energy_uj(value_uj: float) -> str:
    if value_uj >= 10:
        return f'{value_uj:,.1f}'
    return f'{value_uj:.3g}'


def has_paper_figure(shape: Shape) -> bool:
    """Return whether Table 5 of the TVMamba paper lists this shape."""
    return shape.group == 'square' and shape.m in PAPER_TABLE5


def paper_cells(shape: Shape) -> List[str]:
    """Return the paper's relative energy and reduction for a square shape."""
    if not has_paper_figure(shape):
        return ['-', '-']
    relative = PAPER_TABLE5[shape.m]
    return [f'{relative:.4f}', f'{1 / relative:.1f}x']


def format_energy_table(shapes: Sequence[Shape], popcount_model: str,
                        access_pj: float) -> str:
    """Return a Markdown table of estimated energies for one model.

    Args:
        shapes (Sequence[Shape]): GEMM shapes, one row each.
        popcount_model (str): ``'tree'`` or ``'add'``.
        access_pj (float): pJ per 64-bit memory access.

    Returns:
        str: The table. Energies are in uJ. Relative energy is FP32 = 1.0
        and reduction is the FP32 energy over the bitwise energy. The
        paper's columns appear only when a shape has a Table 5 figure.
    """
    with_paper = any(has_paper_figure(shape) for shape in shapes)
    header = [
        'case', 'M x K x N', 'FP32 estimate (uJ)', 'ternary estimate (uJ)',
        'five-level estimate (uJ)', 'ternary relative (FP32 = 1.0)',
        'ternary reduction', 'five-level relative', 'five-level reduction'
    ]
    if with_paper:
        header += [
            'paper Table 5 bitwise relative (estimate)', 'paper reduction'
        ]
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|' + ' --- |' * len(header),
    ]
    for shape in shapes:
        totals = {
            method: estimate_energy_pj(workload, popcount_model,
                                       access_pj)['total']
            for method, workload in count_methods(shape).items()
        }
        fp32 = totals['fp32']
        cells = [shape.name, f'{shape.m} x {shape.k} x {shape.n}']
        cells += [format_energy_uj(totals[m] * 1e-6) for m in METHODS]
        for method in ('ternary', 'five-level'):
            cells += [
                f'{totals[method] / fp32:.4f}',
                f'{fp32 / totals[method]:.1f}x',
            ]
        if with_paper:
            cells += paper_cells(shape)
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def format_breakdown_table(shapes: Sequence[Shape], popcount_model: str,
                           access_pj: float) -> str:
    """Return a Markdown table of pJ per MAC by stage for every method."""
    header = ['case', 'method'] + [f'{s} (pJ/MAC)' for s in STAGES]
    header.append('total (pJ/MAC)')
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|' + ' --- |' * len(header),
    ]
    for shape in shapes:
        macs = shape.m * shape.k * shape.n
        for method, workload in count_methods(shape).items():
            energy = estimate_energy_pj(workload, popcount_model, access_pj)
            cells = [shape.name, method]
            cells += [f'{energy[s] / macs:.4f}' for s in STAGES + ('total', )]
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def format_figures_table(popcount_model: str) -> str:
    """Return a Markdown table of the pJ used for each operation kind."""
    prices = operation_energy_pj(popcount_model)
    lines = ['| operation | pJ | source |', '| --- | --- | --- |']
    for name in ('fp32_mult', 'fp32_add', 'int32_add'):
        figure = HOROWITZ_45NM[name]
        lines.append(f'| {name} | {figure.pj:g} | Horowitz 45 nm: '
                     f'{figure.description} |')
    for name, (_, description) in ASSUMED_OPERATIONS.items():
        lines.append(f'| {name} | {prices[name]:g} | assumption: '
                     f'{description} |')
    lines.append(f'| popcount32 | {prices["popcount32"]:g} | assumption: '
                 f'{POPCOUNT_MODELS[popcount_model]} |')
    return '\n'.join(lines)


def describe_memory(memory: str, sram_kb: int, dram_figure: str) -> str:
    """Return one sentence naming the memory model and its access energy."""
    access_pj = memory_access_pj(memory, sram_kb, dram_figure)
    if memory == 'sram':
        return (f'{MEMORY_MODELS[memory]} of {sram_kb} KB, at '
                f'{access_pj:g} pJ per access.')
    if memory == 'dram':
        return (f'{MEMORY_MODELS[memory]}, at {access_pj:g} pJ per access, '
                f'the {dram_figure} end of 1.3 to 2.6 nJ.')
    return MEMORY_MODELS[memory] + '.'


def positive_int(text: str) -> int:
    """Parse a matrix size for argparse, naming the value when invalid."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'invalid size {text!r}; use a positive integer') from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'invalid size {value}; use a positive integer')
    return value


def unique(values: Sequence) -> list:
    """Return ``values`` without repeats, in their first order."""
    return list(dict.fromkeys(values))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Estimate the energy of FP32 and bitwise ternary GEMMs '
        'from operation counts and the Horowitz 45 nm figures. The output '
        'is an estimate, not a measurement.')
    parser.add_argument(
        '--sizes',
        nargs='*',
        type=positive_int,
        default=list(PAPER_TABLE5),
        help='square sizes M = K = N; default 512 1024 2048 4096, the '
        'sizes of the paper\'s Table 5. Give no value to skip squares')
    parser.add_argument(
        '--vmamba',
        nargs='+',
        default=[],
        metavar='GROUP',
        help='also estimate the VMamba-T linear layers of '
        'benchmark_matmul.py for these input groups (cls224, '
        'det800x1216); needs torch')
    parser.add_argument(
        '--memory',
        nargs='+',
        choices=sorted(MEMORY_MODELS),
        default=['none'],
        help='memory models, one table each: none counts compute only '
        '(default, the quantity the paper\'s Table 5 compares); sram and '
        'dram add one 64-bit access per 8 bytes of every operand read once '
        'and the output written once')
    parser.add_argument(
        '--popcount-model',
        nargs='+',
        choices=sorted(POPCOUNT_MODELS),
        default=['tree', 'add'],
        help='price of a 32-bit popcount, one table each: tree is '
        f'{POPCOUNT_TREE_ADDS} adds priced as 8-bit adds, add is one '
        '32-bit add; default both')
    parser.add_argument(
        '--sram-kb',
        type=int,
        choices=sorted(SRAM_FIGURES),
        default=1024,
        help='SRAM size in KB for --memory sram, which sets the access '
        'energy (10, 20 or 100 pJ); default 1024')
    parser.add_argument(
        '--dram-figure',
        choices=sorted(DRAM_FIGURES),
        default='low',
        help='end of the 1.3 to 2.6 nJ range per 64-bit DRAM access for '
        '--memory dram; default low')
    parser.add_argument(
        '--breakdown',
        action='store_true',
        help='also print pJ per MAC by stage (gemm, epilogue, quantize, '
        'memory) for every method')
    args = parser.parse_args(argv)
    if not args.sizes and not args.vmamba:
        parser.error('no shape to estimate; give --sizes or --vmamba')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Print the energy estimate tables for the command-line arguments.

    Args:
        argv (Sequence[str], optional): Arguments without the program name;
            None reads ``sys.argv``. Defaults to None.
    """
    args = parse_args(argv)
    shapes = square_shapes(unique(args.sizes))
    if args.vmamba:
        try:
            shapes += vmamba_shapes(unique(args.vmamba))
        except ValueError as error:
            raise SystemExit(f'error: {error}') from None
        except ImportError as error:
            raise SystemExit(f'error: --vmamba needs benchmark_matmul.py '
                             f'and torch ({error})') from None

    print('Energy estimate from operation counts, not a measurement. '
          'Figures: Horowitz, 45 nm, ISSCC 2014.')
    print('FP32: one FP32 multiply and one FP32 add per MAC. Bitwise, per '
          'output and 32-bit word of K: three logic operations (AND, then '
          'XOR and AND in one VPTERNLOGD), two popcounts and two 32-bit '
          'adds, twice for five-level. The float epilogue is counted per '
          'output, the activation quantization and packing per element.')
    for popcount_model in unique(args.popcount_model):
        print()
        print(f'Energy per operation, popcount model {popcount_model}:')
        print()
        print(format_figures_table(popcount_model))
        for memory in unique(args.memory):
            access_pj = memory_access_pj(memory, args.sram_kb,
                                         args.dram_figure)
            print()
            print(f'Estimate, memory model {memory}, popcount model '
                  f'{popcount_model}. '
                  f'{describe_memory(memory, args.sram_kb, args.dram_figure)}')
            print()
            print(format_energy_table(shapes, popcount_model, access_pj))
            if args.breakdown:
                print()
                print(format_breakdown_table(shapes, popcount_model,
                                             access_pj))


if __name__ == '__main__':
    main()
