# Copyright (c) mmtvmamba contributors. All rights reserved.
import pytest
import torch
from mmengine.optim import OptimWrapper

from mmtvmamba.engine import ThreeStageLR
from mmtvmamba.registry import PARAM_SCHEDULERS


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler, optimizer, steps):
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    return values


def test_three_stage_factors_per_third():
    optimizer = _optimizer()
    scheduler = ThreeStageLR(optimizer, end=9, by_epoch=False)
    lrs = _lrs(scheduler, optimizer, 11)
    assert lrs == pytest.approx([0.1] * 3 + [0.5] * 3 + [1.0] * 5)


def test_three_stage_custom_factors_and_begin():
    optimizer = _optimizer(2.0)
    scheduler = ThreeStageLR(
        optimizer, factors=(0.5, 0.25, 1.0), begin=2, end=8, by_epoch=False)
    lrs = _lrs(scheduler, optimizer, 8)
    assert lrs == pytest.approx([2.0, 2.0, 1.0, 1.0, 0.5, 0.5, 2.0, 2.0])


def test_three_stage_epoch_to_iter():
    optimizer = _optimizer()
    scheduler = ThreeStageLR.build_iter_from_epoch(
        optimizer, begin=0, end=3, by_epoch=True, epoch_length=2)
    assert scheduler.end == 6
    assert _lrs(scheduler, optimizer, 6) == pytest.approx(
        [0.1, 0.1, 0.5, 0.5, 1.0, 1.0])


def test_three_stage_registered_with_scope():
    optimizer = OptimWrapper(_optimizer())
    scheduler = PARAM_SCHEDULERS.build(
        dict(type='mmtvmamba.ThreeStageLR', end=30, by_epoch=True),
        default_args=dict(optimizer=optimizer))
    assert isinstance(scheduler, ThreeStageLR)
    assert scheduler.boundaries == (10, 20)


@pytest.mark.parametrize('kwargs, match', [
    (dict(factors=(0.1, 1.0)), 'three positive'),
    (dict(factors=(0.1, 0.0, 1.0)), 'three positive'),
    (dict(end=2), 'at least 3 steps'),
])
def test_three_stage_rejects_bad_arguments(kwargs, match):
    args = dict(end=9)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ThreeStageLR(_optimizer(), **args)


def test_three_stage_requires_finite_end():
    with pytest.raises(ValueError, match='finite end'):
        ThreeStageLR(_optimizer())
