# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the operation counts, energy model and command line of
tools/benchmark/energy_estimate.py."""
import importlib.util
import os.path as osp

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SCRIPT = osp.join(ROOT, 'tools', 'benchmark', 'energy_estimate.py')


def _load_script():
    spec = importlib.util.spec_from_file_location('energy_estimate', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


energy = _load_script()

# M=2, K=40, N=3: K spans two 32-bit words, the second one partly padding.
M, K, N = 2, 40, 3


def test_fp32_counts_by_hand():
    workload = energy.count_fp32(M, K, N)
    assert workload.operations == {
        'gemm': {'fp32_mult': 240, 'fp32_add': 240}
    }
    assert workload.traffic == {
        'activations': 320,
        'weights': 480,
        'bias': 12,
        'output': 24,
    }


def test_ternary_counts_by_hand():
    workload = energy.count_bitwise(M, K, N, levels=1)
    # 6 outputs x 2 words: AND + XOR + AND, 2 popcounts, 2 adds each.
    assert workload.operations['gemm'] == {
        'logic32': 36,
        'popcount32': 24,
        'int32_add': 24,
    }
    # Per output: 2 adds for nz - 2 * neg, 1 convert, 1 scale product and
    # 1 fused multiply-add.
    assert workload.operations['epilogue'] == {
        'int32_add': 12,
        'fp32_convert': 6,
        'fp32_mult': 12,
        'fp32_add': 6,
    }
    # Per element of the 2 x 40 activations: 3 multiplies, 1 add, 1
    # rounding, 2 clip compares and 4 byte operations of the packer. Per
    # packed word (2 rows x 2 words): 1 NOT.
    assert workload.operations['quantize'] == {
        'fp32_mult': 240,
        'fp32_add': 80,
        'fp32_convert': 80,
        'int8_op': 480,
        'logic32': 4,
    }
    assert workload.traffic == {
        'activations': 320,
        'channel scales': 160,
        'packed activations': 64,
        'packed weights': 48,
        'row and column scales': 20,
        'bias': 12,
        'output': 24,
    }


def test_five_level_counts_by_hand():
    ternary = energy.count_bitwise(M, K, N, levels=1)
    five = energy.count_bitwise(M, K, N, levels=2)
    assert five.operations['gemm'] == {
        'logic32': 72,
        'popcount32': 48,
        'int32_add': 48,
    }
    assert five.operations['epilogue'] == ternary.operations['epilogue']
    assert five.operations['quantize']['logic32'] == 8
    assert five.operations['quantize']['int8_op'] == 480
    assert five.traffic['packed activations'] == 128
    assert five.traffic['packed weights'] == 48


def test_energy_by_hand():
    fp32 = energy.estimate_energy_pj(energy.count_fp32(M, K, N), 'tree', 0.0)
    assert fp32['total'] == pytest.approx(240 * (3.7 + 0.9))

    ternary = energy.estimate_energy_pj(
        energy.count_bitwise(M, K, N, levels=1), 'tree', 0.0)
    assert ternary['gemm'] == pytest.approx(36 * 0.1 + 24 * 0.93 + 24 * 0.1)
    assert ternary['epilogue'] == pytest.approx(12 * 0.1 + 6 * 0.9 +
                                                12 * 3.7 + 6 * 0.9)
    assert ternary['quantize'] == pytest.approx(240 * 3.7 + 80 * 0.9 +
                                                80 * 0.9 + 480 * 0.03 +
                                                4 * 0.1)
    assert ternary['memory'] == 0.0
    assert ternary['total'] == pytest.approx(1131.52)

    add_model = energy.estimate_energy_pj(
        energy.count_bitwise(M, K, N, levels=1), 'add', 0.0)
    assert add_model['gemm'] == pytest.approx(36 * 0.1 + 24 * 0.1 + 24 * 0.1)


def test_memory_energy_by_hand():
    access_pj = energy.memory_access_pj('dram', dram_figure='low')
    assert access_pj == 1300.0
    workload = energy.count_fp32(M, K, N)
    # 320, 480, 12 and 24 bytes take 40, 60, 2 and 3 accesses of 8 bytes.
    assert energy.memory_accesses(workload.traffic) == 105
    result = energy.estimate_energy_pj(workload, 'tree', access_pj)
    assert result['memory'] == pytest.approx(105 * 1300.0)


def test_memory_access_figures():
    assert energy.memory_access_pj('none') == 0.0
    assert energy.memory_access_pj('sram', sram_kb=8) == 10.0
    assert energy.memory_access_pj('sram', sram_kb=32) == 20.0
    assert energy.memory_access_pj('sram', sram_kb=1024) == 100.0
    assert energy.memory_access_pj('dram', dram_figure='high') == 2600.0


@pytest.mark.parametrize('memory', ['none', 'sram', 'dram'])
def test_energy_scales_with_size(memory):
    access_pj = energy.memory_access_pj(memory)
    previous = None
    for size in (256, 512, 1024, 2048):
        shape = energy.Shape(f'square{size}', 'square', size, size, size)
        estimates = {
            method: energy.estimate_energy_pj(workload, 'tree', access_pj)
            for method, workload in energy.count_methods(shape).items()
        }
        if previous is not None:
            # Doubling M = K = N multiplies the O(N^3) terms by 8 and the
            # O(N^2) terms by 4.
            for method in energy.METHODS:
                ratio = {
                    stage: estimates[method][stage] /
                    previous[method][stage]
                    for stage in energy.STAGES
                    if previous[method][stage] > 0
                }
                assert ratio['gemm'] == pytest.approx(8.0)
                if method != 'fp32':
                    assert ratio['epilogue'] == pytest.approx(4.0)
                    assert ratio['quantize'] == pytest.approx(4.0)
                if memory != 'none':
                    # Bias and scale vectors add O(N) bytes to the O(N^2)
                    # matrices, so the ratio is just below 4.
                    assert 3.9 < ratio['memory'] <= 4.0

            # The bitwise share of the FP32 energy falls with size.
            for method in ('ternary', 'five-level'):
                relative = (estimates[method]['total'] /
                            estimates['fp32']['total'])
                before = (previous[method]['total'] /
                          previous['fp32']['total'])
                assert relative < before
        previous = estimates


def test_five_level_between_ternary_and_fp32():
    shape = energy.Shape('square1024', 'square', 1024, 1024, 1024)
    totals = {
        method: energy.estimate_energy_pj(workload, 'tree', 0.0)['total']
        for method, workload in energy.count_methods(shape).items()
    }
    assert totals['ternary'] < totals['five-level'] < totals['fp32']


@pytest.mark.parametrize('m, k, n, message', [
    (0, 8, 8, 'm=0'),
    (8, -1, 8, 'k=-1'),
    (8, 8, 2.5, 'n=2.5'),
    (True, 8, 8, 'm=True'),
])
def test_counts_reject_bad_sizes(m, k, n, message):
    with pytest.raises(ValueError, match=message):
        energy.count_fp32(m, k, n)
    with pytest.raises(ValueError, match=message):
        energy.count_bitwise(m, k, n, levels=1)


def test_bad_model_arguments_raise():
    with pytest.raises(ValueError, match='levels=3'):
        energy.count_bitwise(4, 4, 4, levels=3)
    with pytest.raises(ValueError, match="'lut'"):
        energy.operation_energy_pj('lut')
    with pytest.raises(ValueError, match="'disk'"):
        energy.memory_access_pj('disk')
    with pytest.raises(ValueError, match='16'):
        energy.memory_access_pj('sram', sram_kb=16)
    with pytest.raises(ValueError, match="'mid'"):
        energy.memory_access_pj('dram', dram_figure='mid')
    workload = energy.count_fp32(4, 4, 4)
    with pytest.raises(ValueError, match='-1.0'):
        energy.estimate_energy_pj(workload, 'tree', -1.0)


@pytest.mark.parametrize('argv, bad_value', [
    (['--memory', 'disk'], 'disk'),
    (['--popcount-model', 'lut'], 'lut'),
    (['--sizes', '-4'], '-4'),
    (['--sizes', '12x'], '12x'),
    (['--sram-kb', '16'], '16'),
    (['--dram-figure', 'mid'], 'mid'),
])
def test_command_line_rejects_bad_values(argv, bad_value, capsys):
    with pytest.raises(SystemExit) as error:
        energy.main(argv)
    assert error.value.code == 2
    assert bad_value in capsys.readouterr().err


def test_command_line_rejects_no_shape(capsys):
    with pytest.raises(SystemExit) as error:
        energy.main(['--sizes'])
    assert error.value.code == 2
    assert 'no shape' in capsys.readouterr().err


def test_command_line_table_with_paper_figures(capsys):
    energy.main(['--sizes', '512', '100', '--popcount-model', 'tree'])
    output = capsys.readouterr().out
    assert 'not a measurement' in output
    assert 'memory model none, popcount model tree' in output
    assert 'popcount model add' not in output

    rows = {
        line.split('|')[1].strip(): [c.strip() for c in line.split('|')[1:-1]]
        for line in output.splitlines() if line.startswith('| square')
    }
    assert rows['square512'][-2:] == ['0.1786', '5.6x']
    assert rows['square100'][-2:] == ['-', '-']

    shape = energy.Shape('square512', 'square', 512, 512, 512)
    totals = {
        method: energy.estimate_energy_pj(workload, 'tree', 0.0)['total']
        for method, workload in energy.count_methods(shape).items()
    }
    assert rows['square512'][5] == f'{totals["ternary"] / totals["fp32"]:.4f}'
    assert rows['square512'][6] == f'{totals["fp32"] / totals["ternary"]:.1f}x'


def test_command_line_prints_each_model(capsys):
    energy.main(['--sizes', '64', '--memory', 'none', 'dram', '--breakdown'])
    output = capsys.readouterr().out
    for memory in ('none', 'dram'):
        for popcount in ('tree', 'add'):
            assert (f'memory model {memory}, popcount model {popcount}'
                    in output)
    assert '1300 pJ per access' in output
    assert output.count('| square64 | fp32 |') == 4


def test_vmamba_shapes_come_from_benchmark():
    pytest.importorskip('torch')
    shapes = energy.vmamba_shapes(['cls224'])
    assert len(shapes) == 12
    assert shapes[0] == energy.Shape('cls224-s1-in/out_proj', 'cls224', 3136,
                                     96, 96)
    assert shapes[-1] == energy.Shape('cls224-s4-fc2', 'cls224', 49, 3072,
                                      768)
    with pytest.raises(ValueError, match="'foo'"):
        energy.vmamba_shapes(['foo'])


def test_table_omits_paper_columns_without_figures():
    shapes = energy.square_shapes([64, 128])
    table = energy.format_energy_table(shapes, 'tree', 0.0)
    assert 'paper' not in table
    header = table.splitlines()[0]
    assert header.count('|') == 10
