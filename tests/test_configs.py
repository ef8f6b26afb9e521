# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Every shipped config parses, and its model builds under the default
scopes of the libraries that host it."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope, init_default_scope

import mmtvmamba  # noqa: F401

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', 'configs')
CONFIGS = sorted(glob.glob(osp.join(CONFIG_DIR, '**', '*.py'),
                           recursive=True))
TINY_ARCH = dict(depths=(1, 1, 1, 1), dims=8, ssm_ratio=1.0)


def _student(model_cfg):
    """Return the wrapped model config of a QAT wrapper, else the config."""
    return model_cfg.get('architecture', model_cfg)


def _build(cfg, tiny=True):
    model_cfg = cfg.model.copy()
    if tiny:
        student = _student(model_cfg)
        student.backbone.arch = TINY_ARCH
        if 'neck' in student and 'in_channels' in student.neck:
            student.neck.in_channels = [8, 16, 32, 64]
        if 'head' in student and 'in_channels' in student.head:
            student.head.in_channels = 64
    model = MODELS.build(model_cfg)
    return getattr(model, 'architecture', model)


def test_configs_found():
    names = [osp.relpath(c, CONFIG_DIR) for c in CONFIGS]
    assert 'mask-rcnn_tvmamba-t_coco.py' in names
    assert 'tvmamba-t_8xb128_in1k.py' in names


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(c, CONFIG_DIR) for c in CONFIGS])
def test_config_builds_model(path):
    cfg = Config.fromfile(path)
    assert _student(cfg.model).backbone.type == 'mmtvmamba.TVMambaVSSM'
    init_default_scope(cfg.default_scope)
    model = _build(cfg)
    assert type(model.backbone).__name__ == 'TVMambaVSSM'


def test_detection_config_full_size_forward():
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'mask-rcnn_tvmamba-t_coco.py'))
    assert _student(cfg.model).neck.in_channels == [96, 192, 384, 768]
    assert 'depth' not in _student(cfg.model).backbone
    init_default_scope('mmdet')
    model = _build(cfg, tiny=False).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == [256] * 5


def test_detection_recipe():
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'mask-rcnn_tvmamba-t_coco.py'))
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                             weight_decay=0.05)
    for key in ('norm', 'A_logs', 'Ds', 'act_quant'):
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys[key] == dict(
            decay_mult=0.)


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain', 'mmseg'])
def test_backbone_builds_under_scope(scope):
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        backbone = MODELS.build(
            dict(type='mmtvmamba.TVMambaVSSM', arch=TINY_ARCH))
    assert type(backbone).__name__ == 'TVMambaVSSM'
