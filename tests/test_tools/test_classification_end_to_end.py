# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Train and test a ternary TVMamba classifier with mmpretrain on real
ant and bee photos through tools/train.py and tools/test.py."""
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'tvmamba-t_hymenoptera.py')
DATA = osp.join(ROOT, '..', 'shared', 'data', 'hymenoptera')

SMALL_RUN = """
_base_ = '{base}'
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, depths=(1, 1, 1, 1), dims=8, ssm_ratio=1.0)),
    head=dict(in_channels=64))
loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(indices=8))
val_dataloader = dict(**loader, dataset=dict(indices=8))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0)
"""


def _run(args):
    result = subprocess.run([sys.executable] + args, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train the small run once; return its folder, config and output."""
    if not osp.isdir(DATA):
        pytest.fail(f'the ants and bees photos are missing at {DATA}')
    tmp_path = tmp_path_factory.mktemp('classification')
    config = tmp_path / 'small_run.py'
    config.write_text(SMALL_RUN.format(base=CONFIG))
    output = _run(['tools/train.py', str(config), '--work-dir', str(tmp_path)])
    return tmp_path, config, output


def test_classification_train_then_test(trained):
    tmp_path, config, output = trained
    assert 'Epoch(train) [1][2/2]' in output
    assert re.search(r'Epoch\(val\) \[1\]\[2/2\]\s+accuracy/top1: [0-9.]+',
                     output), output[-3000:]

    drawn = tmp_path / 'drawn'
    output = _run(['tools/test.py', str(config),
                   str(tmp_path / 'epoch_1.pth'), '--work-dir',
                   str(tmp_path), '--show-dir', str(drawn)])
    assert re.search(r'accuracy/top1: [0-9.]+', output), output[-3000:]
    assert len(list(drawn.glob('*.png'))) > 0


def test_deploy_convert_then_test(trained):
    tmp_path, config, _ = trained
    deploy = tmp_path / 'deploy.pth'

    output = _run(['tools/deploy/convert.py', str(config),
                   str(tmp_path / 'epoch_1.pth'), str(deploy),
                   '--alpha-groups', 'none', '--parity-images', '8'])
    assert deploy.is_file()
    assert re.search(r'deploy checkpoint \| [0-9.]+ \| [0-9.]+x', output)
    parity = re.search(r'parity on 8 images: max relative difference '
                       r'(\S+), predictions agree (\d+)/(\d+)', output)
    assert parity, output[-3000:]
    # With one scale group per channel the deployed model computes the
    # fake-quantized function up to float rounding.
    assert float(parity.group(1)) < 1e-3
    assert parity.group(2) == parity.group(3)

    output = _run(['tools/test.py', str(config), str(deploy), '--work-dir',
                   str(tmp_path / 'deploy_test')])
    assert 'projections run on the bitwise op (ternary)' in output
    assert re.search(r'accuracy/top1: [0-9.]+', output), output[-3000:]
