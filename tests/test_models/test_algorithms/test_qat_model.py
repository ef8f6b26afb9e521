# Copyright (c) mmtvmamba contributors. All rights reserved.
import copy
import logging
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

import mmtvmamba  # noqa: F401
from mmtvmamba.models.algorithms import QATModel
from mmtvmamba.quantization import ActQuantizer
from mmtvmamba.utils.checkpoint import load_checkpoint_file

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
DEMO = osp.join(ROOT, 'configs', 'demo')
DATA = osp.join(ROOT, '..', 'shared', 'data', 'hymenoptera')
TINY_ARCH = dict(depths=(1, 1, 1, 1), dims=8, ssm_ratio=1.0)


def _student_cfg(quant=None):
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='mmtvmamba.TVMambaVSSM',
            arch=TINY_ARCH,
            out_indices=(3, ),
            quant=quant or dict(act=dict(type='Q2T'))),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=64),
        data_preprocessor=dict(
            type='ClsDataPreprocessor', mean=[0] * 3, std=[1] * 3))


def _build(**kwargs):
    init_default_scope('mmpretrain')
    return MODELS.build(
        dict(type='mmtvmamba.QATModel', architecture=_student_cfg(),
             **kwargs))


def _batch():
    torch.manual_seed(0)
    samples = [DataSample().set_gt_label(i % 2) for i in range(4)]
    return torch.randn(4, 3, 32, 32), samples


@pytest.fixture(autouse=True)
def _close_loggers():
    yield
    logging.shutdown()
    MMLogger._instance_dict.clear()


def test_loss_adds_ctrl():
    model = _build(ctrl=dict(loss_weight=0.5))
    losses = model(*_batch(), mode='loss')
    assert set(losses) == {'loss', 'loss_ctrl'}
    assert losses['loss_ctrl'].requires_grad


def test_loss_without_ctrl_is_student_loss():
    model = _build()
    assert set(model(*_batch(), mode='loss')) == {'loss'}


def test_ctrl_equals_direct_computation():
    model = _build(ctrl=dict(loss_weight=0.5, topk_ratio=0.5,
                             layers=('in_proj', 'fc2'), unit='image'))
    records = []

    def keep(module, inputs, output):
        records.append((inputs[0].detach(), output.detach()))

    for module in model.ctrl_quantizers():
        module.register_forward_hook(keep)
    losses = model(*_batch(), mode='loss')

    expected = 0.0
    for x, x_hat in records:
        error = (x_hat - x).pow(2).sum((2, 3))
        k = math.ceil(0.5 * x.shape[0])
        expected += error.t().sort(1, descending=True).values[:, :k].mean(
            1).sum().item()
    assert len(records) == 2 * 1 * 4
    assert losses['loss_ctrl'].item() == pytest.approx(0.5 * expected,
                                                       rel=1e-5)


def test_ctrl_per_token_equals_direct_computation():
    model = _build(ctrl=dict(loss_weight=0.5, topk_ratio=0.25,
                             layers=('in_proj', 'fc2')))
    assert model.ctrl['unit'] == 'token'
    records = []

    def keep(module, inputs, output):
        records.append((inputs[0].detach(), output.detach()))

    for module in model.ctrl_quantizers():
        module.register_forward_hook(keep)
    losses = model(*_batch(), mode='loss')

    expected = 0.0
    for x, x_hat in records:
        error = (x_hat - x).pow(2).transpose(0, 1).flatten(1)
        k = math.ceil(0.25 * error.shape[1])
        expected += error.sort(1, descending=True).values[:, :k].mean(
            1).sum().item()
    assert len(records) == 2 * 1 * 4
    assert losses['loss_ctrl'].item() == pytest.approx(0.5 * expected,
                                                       rel=1e-5)


def test_ctrl_channel_ratio_estimates_loss():
    inputs, samples = _batch()
    exact = _build(ctrl=dict(layers=('in_proj', )))
    sampled = _build(ctrl=dict(layers=('in_proj', ), channel_ratio=0.5))
    sampled.load_state_dict(exact.state_dict())
    assert sampled.ctrl['channel_ratio'] == 0.5
    exact_loss = exact(inputs, samples, mode='loss')['loss_ctrl']

    torch.manual_seed(1)
    estimates = torch.stack([
        sampled(inputs, samples, mode='loss')['loss_ctrl'].detach()
        for _ in range(200)
    ])
    standard_error = estimates.std() / math.sqrt(len(estimates))
    assert estimates.std() > 0
    assert abs(estimates.mean() - exact_loss.detach()) < 4 * standard_error


def test_ctrl_layers_select_quantizers():
    model = _build(ctrl=dict(layers=('x_proj', )))
    layers = {q.layer for q in model.ctrl_quantizers()}
    assert layers == {'x_proj'}


def test_predict_and_tensor_modes_delegate():
    model = _build().eval()
    inputs, samples = _batch()
    predictions = model(inputs, samples, mode='predict')
    assert len(predictions) == 4
    assert model(inputs, mode='tensor').shape == (4, 2)


def test_teacher_frozen_and_not_saved():
    teacher = _student_cfg(quant=dict(mode='fp'))
    model = _build(teacher=teacher).train()
    assert not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    keys = list(model.state_dict())
    assert not any(k.startswith('teacher.') for k in keys)
    assert not any(k.startswith('architecture.') for k in keys)


def test_state_dict_round_trip():
    model = _build(teacher=_student_cfg(quant=dict(mode='fp')))
    state = copy.deepcopy(model.state_dict())
    other = _build(teacher=_student_cfg(quant=dict(mode='fp')))
    result = other.load_state_dict(state, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_state_dict_loads_into_plain_student():
    model = _build()
    init_default_scope('mmpretrain')
    plain = MODELS.build(_student_cfg())
    result = plain.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(ctrl=dict(weight=1.0)), ValueError, 'unknown ctrl keys'),
    (dict(ctrl=dict(topk_ratio=0.0)), ValueError, 'topk_ratio'),
    (dict(ctrl=dict(unit='pixel')), ValueError, 'invalid ctrl unit'),
    (dict(ctrl=dict(channel_ratio=0.0)), ValueError, 'channel_ratio'),
    (dict(ctrl=dict(layers=('qkv', ))), ValueError, 'unknown ctrl layers'),
    (dict(teacher_ckpt='t.pth'), ValueError, 'teacher config'),
])
def test_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _build(**kwargs)


def _small_run(cfg, work_dir):
    student = cfg.model.get('architecture', cfg.model)
    student.backbone.arch = TINY_ARCH
    student.head.in_channels = 64
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.indices = 8
        cfg[split].batch_size = 4
        cfg[split].num_workers = 0
        cfg[split].persistent_workers = False
    cfg.work_dir = work_dir
    cfg.load_from = None
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.param_scheduler = []
    cfg.log_level = 'WARNING'
    return cfg


def test_wrapped_checkpoint_tests_with_plain_config(tmp_path):
    if not osp.isdir(DATA):
        pytest.fail(f'the ants and bees photos are missing at {DATA}')
    wrapped = Config.fromfile(
        osp.join(DEMO, 'hymenoptera', 'vmamba-mini_tvmamba-t_hymenoptera.py'))
    runner = Runner.from_cfg(_small_run(wrapped, str(tmp_path / 'train')))
    runner.train()
    assert isinstance(runner.model, QATModel)
    checkpoint = str(tmp_path / 'train' / 'epoch_1.pth')
    saved = load_checkpoint_file(checkpoint)['state_dict']
    assert not any(k.startswith('architecture.') for k in saved)

    # The plain classifier config of the same student, without the wrapper.
    plain = Config.fromfile(osp.join(DEMO, 'tvmamba-t_hymenoptera.py'))
    plain = _small_run(plain, str(tmp_path / 'test'))
    plain.model.backbone.quant.deploy = 'ternary'
    plain.load_from = checkpoint
    tester = Runner.from_cfg(plain)
    metrics = tester.test()
    assert 'accuracy/top1' in metrics
    loaded = tester.model.state_dict()
    assert set(loaded) == set(saved)
    for key, value in saved.items():
        assert torch.equal(loaded[key].cpu(), value), key
