# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Train TVMamba Mask R-CNN on real COCO images with tools/train.py, evaluate
the checkpoint with tools/test.py, then resume the run."""
import glob
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_tvmamba-t_coco128.py')
DATA = osp.join(ROOT, '..', 'shared', 'data', 'coco128')

# A narrow backbone, small images and four images per split keep each run
# to about a minute on two CPU cores.
SMALL_RUN = """
_base_ = '{base}'
model = dict(architecture=dict(
    backbone=dict(
        arch=dict(_delete_=True, depths=(1, 1, 1, 1), dims=16, ssm_ratio=1.0)),
    neck=dict(in_channels=[16, 32, 64, 128]),
    test_cfg=dict(rcnn=dict(score_thr=0.0))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))
]
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader, dataset=dict(indices=4, pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(indices=4, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=100)
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0)
"""


def _write_config(directory):
    path = osp.join(directory, 'small_run.py')
    with open(path, 'w') as f:
        f.write(SMALL_RUN.format(base=CONFIG))
    return path


def _run(args, cwd):
    result = subprocess.run([sys.executable] + args, cwd=cwd,
                            capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    if not osp.isdir(DATA):
        pytest.fail(f'the COCO subset is missing at {DATA}')
    work_dir = str(tmp_path_factory.mktemp('det'))
    config = _write_config(work_dir)
    output = _run(['tools/train.py', config, '--work-dir', work_dir], ROOT)
    return config, work_dir, output


def test_train_writes_checkpoint_and_logs_losses(trained):
    _, work_dir, output = trained
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    losses = [float(v) for v in re.findall(r' loss: ([0-9.]+)', output)]
    assert len(losses) == 2
    for name in ('loss_rpn_cls', 'loss_bbox', 'loss_mask'):
        assert name in output


def test_test_tool_prints_bbox_and_segm_map(trained, tmp_path):
    config, work_dir, _ = trained
    output = _run([
        'tools/test.py', config, osp.join(work_dir, 'epoch_1.pth'),
        '--work-dir', str(tmp_path), '--out', str(tmp_path / 'preds.pkl'),
        '--show-dir', 'drawn'
    ], ROOT)
    assert re.search(r'coco/bbox_mAP: [0-9.]+', output), output[-3000:]
    assert re.search(r'coco/segm_mAP: [0-9.]+', output), output[-3000:]
    assert osp.isfile(tmp_path / 'preds.pkl')
    drawn = glob.glob(str(tmp_path / '*' / 'drawn' / '*.jpg'))
    assert len(drawn) == 4


def test_resume_continues_from_saved_iteration(trained):
    config, work_dir, _ = trained
    output = _run([
        'tools/train.py', config, '--work-dir', work_dir, '--resume',
        osp.join(work_dir, 'epoch_1.pth'), '--cfg-options',
        'train_cfg.max_epochs=2'
    ], ROOT)
    assert re.search(r'resumed epoch: 1, iter: 2', output), output[-3000:]
    assert 'Epoch(train) [2][2/2]' in output
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('epoch_2.pth')


def test_missing_data_fails_with_clear_message(tmp_path):
    result = subprocess.run([
        sys.executable, 'tools/train.py', CONFIG, '--work-dir',
        str(tmp_path), '--cfg-options',
        f'train_dataloader.dataset.data_root={tmp_path}/absent/'
    ], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert 'dataset paths of' in result.stderr
    assert 'absent' in result.stderr


def test_deploy_checkpoint_evaluates(trained, tmp_path):
    _, work_dir, _ = trained
    # The resume test overwrites the config in work_dir with resume=True;
    # tools/test.py must evaluate with either.
    config = osp.join(work_dir, 'small_run.py')
    deployed = str(tmp_path / 'deploy.pth')
    output = _run([
        'tools/deploy/convert.py', config,
        osp.join(work_dir, 'epoch_1.pth'), deployed, '--alpha-groups',
        'none', '--parity-images', '2'
    ], ROOT)
    parity = re.search(
        r'parity on 2 images: max relative difference of the backbone and '
        r'neck features ([0-9.e+-]+)', output)
    assert parity, output[-3000:]
    assert float(parity.group(1)) < 1e-3

    output = _run([
        'tools/test.py', config, deployed, '--work-dir',
        str(tmp_path / 'test')
    ], ROOT)
    assert re.search(r'coco/bbox_mAP: [0-9.]+', output), output[-3000:]
    assert re.search(r'coco/segm_mAP: [0-9.]+', output), output[-3000:]
