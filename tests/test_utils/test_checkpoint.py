# Copyright (c) mmtvmamba contributors. All rights reserved.
import argparse
import os
import sys
import types

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import CheckpointLoader

from mmtvmamba.utils import UnsafeCheckpointError, load_checkpoint_file


class _Exploit:
    """Pickles to a call of os.system; loading it must never run that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class CfgNode(dict):
    """Stand-in for yacs' CfgNode, pickled under yacs' module path."""


CfgNode.__module__ = 'yacs.config'


def _mmengine_style_checkpoint():
    hub = MessageHub.get_instance('test_checkpoint_hub')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_info('iter', 7)
    return dict(
        meta=dict(
            epoch=1,
            iter=7,
            seed=np.int64(42),
            dataset_meta=dict(classes=('a', 'b'), palette=[(1, 2, 3)]),
            mmengine_version='0.10.7'),
        state_dict={'w': torch.ones(2)},
        message_hub=hub.state_dict(),
        scalars=dict(best=np.float32(0.25), arr=np.arange(3)),
        history=HistoryBuffer([1.0, 2.0], [1, 1]))


def test_loads_mmengine_checkpoint_weights_only(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save(_mmengine_style_checkpoint(), path)
    checkpoint = load_checkpoint_file(str(path))
    assert checkpoint['meta']['seed'] == 42
    assert checkpoint['scalars']['arr'].tolist() == [0, 1, 2]
    assert isinstance(checkpoint['history'], HistoryBuffer)
    assert checkpoint['message_hub']['runtime_info']['iter'] == 7


def test_loads_official_vmamba_and_vim_checkpoints(tmp_path, monkeypatch):
    yacs = types.ModuleType('yacs')
    yacs_config = types.ModuleType('yacs.config')
    yacs_config.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, 'yacs', yacs)
    monkeypatch.setitem(sys.modules, 'yacs.config', yacs_config)
    path = tmp_path / 'official.pth'
    torch.save(
        dict(
            model={'w': torch.zeros(1)},
            config=CfgNode(MODEL=CfgNode(NAME='vssm1_tiny_0230s')),
            args=argparse.Namespace(model='vim_tiny'),
            epoch=264), path)
    monkeypatch.delitem(sys.modules, 'yacs.config')
    monkeypatch.delitem(sys.modules, 'yacs')

    checkpoint = load_checkpoint_file(str(path))
    assert checkpoint['config']['MODEL']['NAME'] == 'vssm1_tiny_0230s'
    assert checkpoint['args'].model == 'vim_tiny'


def test_rejects_arbitrary_objects_without_running_them(tmp_path):
    marker = tmp_path / 'executed'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, payload=_Exploit(marker)), path)
    with pytest.raises(UnsafeCheckpointError, match='not allow-listed'):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match='not a file'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))


def test_mmengine_local_loader_is_replaced(tmp_path):
    marker = tmp_path / 'executed'
    path = tmp_path / 'evil.pth'
    torch.save(dict(payload=_Exploit(marker)), path)
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


class _Lookup:
    """Pickles to getattr(HistoryBuffer, 'load_state_dict'), a lookup of an
    allow-listed class that is not one of its statistics methods."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, 'load_state_dict'))


def test_rejects_getattr_outside_history_buffer(tmp_path):
    path = tmp_path / 'lookup.pth'
    torch.save(dict(payload=_Lookup()), path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(str(path))
