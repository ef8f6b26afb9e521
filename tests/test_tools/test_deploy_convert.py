# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the model building of tools/deploy/convert.py."""
import importlib.util
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SCRIPT = osp.join(ROOT, 'tools', 'deploy', 'convert.py')
CONFIG = osp.join(ROOT, 'configs', 'demo', 'hymenoptera',
                  'vmamba-mini_tvmamba-t_hymenoptera.py')


def load_script():
    spec = importlib.util.spec_from_file_location('deploy_convert', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_model_uses_config_data_preprocessor():
    # The config sets mean and std only at its top level, as mmpretrain
    # configs do. The parity check must get the same normalized images that
    # tools/test.py gives the model.
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmpretrain')

    model = load_script().build_model(cfg)

    mean = torch.tensor(cfg.data_preprocessor.mean).view(-1, 1, 1)
    std = torch.tensor(cfg.data_preprocessor.std).view(-1, 1, 1)
    torch.testing.assert_close(model.data_preprocessor.mean, mean)
    torch.testing.assert_close(model.data_preprocessor.std, std)
