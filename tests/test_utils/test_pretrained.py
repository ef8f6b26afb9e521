# Copyright (c) mmtvmamba contributors. All rights reserved.
import argparse

import pytest
import torch

from mmtvmamba.models import TVMambaVSSM
from mmtvmamba.utils import extract_state_dict, load_pretrained

TINY_ARCH = dict(depths=(1, 1, 2, 1), dims=8, ssm_ratio=1.0)


def _official_checkpoint(path, arch=TINY_ARCH):
    """Write a full-precision checkpoint in the official VMamba layout.

    The official classifier has the backbone's keys without outnorm0-3, plus
    classifier.norm and classifier.head, and pickles its run config.
    """
    torch.manual_seed(0)
    source = TVMambaVSSM(arch=arch, quant=dict(mode='fp'))
    last_dim = source.dims[-1]
    model = {k: v for k, v in source.state_dict().items()
             if not k.startswith('outnorm')}
    model['classifier.norm.weight'] = torch.full((last_dim, ), 2.0)
    model['classifier.norm.bias'] = torch.full((last_dim, ), 0.5)
    model['classifier.head.weight'] = torch.randn(1000, last_dim)
    model['classifier.head.bias'] = torch.zeros(1000)
    torch.save(dict(model=model, config=argparse.Namespace(name='vssm'),
                    epoch=264, max_accuracy=82.6), path)
    return model


def test_official_checkpoint_loads_through_init_cfg(tmp_path):
    path = str(tmp_path / 'vssm_official.pth')
    official = _official_checkpoint(path)
    model = TVMambaVSSM(
        arch=TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    state = model.state_dict()
    for key, value in official.items():
        if not key.startswith('classifier.'):
            assert torch.equal(state[key], value), key
    assert torch.equal(state['outnorm3.weight'],
                       official['classifier.norm.weight'])


def test_report_lists_unmatched_keys(tmp_path):
    path = str(tmp_path / 'vssm_official.pth')
    _official_checkpoint(path)
    model = TVMambaVSSM(arch=TINY_ARCH)
    report = load_pretrained(model, path, map_keys=model._map_official_keys)
    assert sorted(report['unexpected']) == [
        'classifier.head.bias', 'classifier.head.weight'
    ]
    assert sorted(report['missing']) == [
        'outnorm0.bias', 'outnorm0.weight', 'outnorm1.bias',
        'outnorm1.weight', 'outnorm2.bias', 'outnorm2.weight'
    ]
    quantizer_keys = [k for k in model.state_dict() if 'act_quant.' in k]
    assert sorted(report['quantizer_missing']) == sorted(quantizer_keys)


def test_report_is_logged(tmp_path, capsys):
    path = str(tmp_path / 'vssm_official.pth')
    _official_checkpoint(path)
    model = TVMambaVSSM(arch=TINY_ARCH)
    load_pretrained(model, path, logger=None)
    printed = capsys.readouterr().out
    assert 'unexpected keys' in printed
    assert 'classifier.head.weight' in printed
    assert 'missing keys' in printed
    assert 'outnorm0.weight' in printed
    assert 'quantizer tensors are not in the checkpoint' in printed


def test_shape_mismatch_raises(tmp_path):
    path = str(tmp_path / 'wide.pth')
    _official_checkpoint(path, arch=dict(depths=(1, 1, 2, 1), dims=16,
                                         ssm_ratio=1.0))
    model = TVMambaVSSM(arch=TINY_ARCH)
    with pytest.raises(RuntimeError, match='size mismatch'):
        load_pretrained(model, path)


def test_detector_checkpoint_prefix(tmp_path):
    source = TVMambaVSSM(arch=TINY_ARCH)
    path = str(tmp_path / 'detector.pth')
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(1)
    torch.save(dict(state_dict=state, meta=dict(epoch=1)), path)
    model = TVMambaVSSM(arch=TINY_ARCH)
    report = load_pretrained(model, path, prefix='backbone.')
    assert report == dict(missing=[], quantizer_missing=[], unexpected=[])
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_extract_state_dict_unknown_prefix():
    with pytest.raises(KeyError, match='prefix'):
        extract_state_dict({'state_dict': {'a.w': 1}}, prefix='backbone.')
