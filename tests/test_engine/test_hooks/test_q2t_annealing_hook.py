# Copyright (c) mmtvmamba contributors. All rights reserved.
import logging
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from q2t_toy import radius_masks, runner_kwargs

from mmtvmamba.engine import Q2TAnnealingHook
from mmtvmamba.quantization import budget_ratio
from mmtvmamba.utils.checkpoint import load_checkpoint_file

HOOK = dict(interval=2, dwell=1, score_topk=0.5)


@pytest.fixture(autouse=True)
def _close_loggers():
    yield
    logging.shutdown()
    MMLogger._instance_dict.clear()


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, Q2TAnnealingHook))


def _five_level_history(runner):
    history = runner.message_hub.get_scalar('train/five_level_channels')
    return [int(v) for v in history.data[0]]


def test_hook_anneals_to_ternary(tmp_path):
    runner = Runner(**runner_kwargs(str(tmp_path), HOOK, max_iters=9))
    runner.train()
    masks = radius_masks(runner.model)
    total = sum(m.numel() for m in masks.values())
    assert all((m == 1).all() for m in masks.values())

    # One entry before training, then one after each of the 9 iterations.
    history = _five_level_history(runner)
    assert history[:4] == [total] * 4
    assert history[-1] == 0
    for done in (4, 6, 8):
        expected = int(budget_ratio(done / 9) * total)
        assert history[done] == expected, f'iteration {done}'


def test_hook_epoch_loop_ends_ternary(tmp_path):
    runner = Runner(
        **runner_kwargs(str(tmp_path), HOOK, max_iters=6, by_epoch=True))
    runner.train()
    assert all((m == 1).all() for m in radius_masks(runner.model).values())
    assert _hook(runner).rounds == 2


@pytest.fixture(scope='module')
def half_budget_run(tmp_path_factory):
    """Train 8 iterations ending with half of the channels five-level."""
    work_dir = str(tmp_path_factory.mktemp('full'))
    runner = Runner(**runner_kwargs(work_dir, dict(HOOK, final_ratio=0.5)))
    runner.train()
    yield runner, work_dir
    logging.shutdown()
    MMLogger._instance_dict.clear()


def test_hook_keeps_final_ratio(half_budget_run):
    masks = radius_masks(half_budget_run[0].model)
    total = sum(m.numel() for m in masks.values())
    assert sum(int((m == 2).sum()) for m in masks.values()) == total // 2


def test_hook_saves_dwell_state(half_budget_run):
    runner, work_dir = half_budget_run
    checkpoint = load_checkpoint_file(osp.join(work_dir, 'iter_4.pth'))
    state = checkpoint['q2t_annealing']
    assert state['rounds'] == 1
    assert set(state['dwell']) == set(radius_masks(runner.model))


def test_hook_resume_reproduces_masks(half_budget_run, tmp_path):
    full, work_dir = half_budget_run

    # Iteration 4 ends the first selection round, mid-anneal.
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    kwargs = runner_kwargs(str(tmp_path), dict(HOOK, final_ratio=0.5))
    resumed = Runner(**kwargs, resume=True, load_from=checkpoint)
    resumed.train()

    expected, actual = radius_masks(full.model), radius_masks(resumed.model)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    full_hook, resumed_hook = _hook(full), _hook(resumed)
    assert full_hook.rounds == resumed_hook.rounds
    for name, counter in full_hook.dwell_counters.items():
        assert torch.equal(counter, resumed_hook.dwell_counters[name]), name


def test_hook_rejects_model_without_q2t(tmp_path):
    kwargs = runner_kwargs(str(tmp_path), HOOK, max_iters=2)
    kwargs['model']['backbone']['quant'] = dict(mode='fp')
    with pytest.raises(ValueError, match='no Q2TQuantizer'):
        Runner(**kwargs).train()


@pytest.mark.parametrize('kwargs, match', [
    (dict(interval=0), 'interval'),
    (dict(scope='model'), 'invalid scope'),
    (dict(decay='step'), 'invalid decay'),
    (dict(start=1.0), 'start'),
    (dict(score_topk=0.0), 'score_topk'),
])
def test_hook_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Q2TAnnealingHook(**kwargs)


def test_two_ranks_choose_same_masks(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', MASTER_PORT='29517')
    script = osp.join(osp.dirname(__file__), 'q2t_toy.py')
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run',
         '--nproc_per_node', '2', '--master_port', '29517', script,
         str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    rank0 = torch.load(tmp_path / 'masks_rank0.pt', weights_only=True)
    rank1 = torch.load(tmp_path / 'masks_rank1.pt', weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # The final budget keeps half the channels: the masks are not trivial.
    kept = sum(int((m == 2).sum()) for m in rank0.values())
    assert 0 < kept < sum(m.numel() for m in rank0.values())
