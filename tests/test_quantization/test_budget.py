# Copyright (c) mmtvmamba contributors. All rights reserved.
import pytest
import torch

from mmtvmamba.quantization import budget_ratio, select_channels


def _select(scores, budget, dwell=None, kept=None, rounds=0, group=1):
    scores = [torch.tensor(s, dtype=torch.float) for s in scores]
    dwell = dwell or [torch.zeros(len(s), dtype=torch.int32) for s in scores]
    kept = kept or [torch.ones(len(s), dtype=torch.bool) for s in scores]
    return select_channels(scores, budget, dwell, kept, rounds, group)


def test_budget_ratio_full_in_first_third():
    assert budget_ratio(0.0) == 1.0
    assert budget_ratio(1 / 3) == 1.0


@pytest.mark.parametrize('decay', ['linear', 'cosine'])
def test_budget_ratio_decays_to_final(decay):
    values = [budget_ratio(p / 30, decay=decay) for p in range(31)]
    assert values[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert budget_ratio(1.0, final_ratio=0.25, decay=decay) == 0.25


def test_budget_ratio_linear_midpoint():
    assert budget_ratio(2 / 3) == pytest.approx(0.5)


@pytest.mark.parametrize('kwargs, match', [
    (dict(start=1.0), 'start'),
    (dict(final_ratio=1.5), 'final_ratio'),
    (dict(decay='step'), 'invalid budget decay'),
])
def test_budget_ratio_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        budget_ratio(0.5, **kwargs)


def test_select_keeps_top_b_across_layers():
    masks, _ = _select([[0.1, 0.9, 0.3], [0.8, -1.0]], budget=3)
    assert masks[0].tolist() == [False, True, True]
    assert masks[1].tolist() == [True, False]


def test_select_zero_budget_keeps_none():
    masks, dwell = _select([[0.5, 0.2]], budget=0, rounds=3)
    assert not masks[0].any()
    assert dwell[0].tolist() == [0, 0]


def test_select_sets_dwell_on_entry():
    kept = [torch.tensor([False, False, True])]
    masks, dwell = _select([[0.9, 0.1, 0.5]], 2, kept=kept, rounds=2)
    assert masks[0].tolist() == [True, False, True]
    # The first channel entered the set; the third was already in it.
    assert dwell[0].tolist() == [2, 0, 0]


def test_select_keeps_locked_channel_over_better_score():
    dwell = [torch.tensor([0, 1, 0], dtype=torch.int32)]
    masks, new_dwell = _select([[0.9, 0.0, 0.5]], 2, dwell=dwell, rounds=2)
    assert masks[0].tolist() == [True, True, False]
    assert new_dwell[0].tolist() == [0, 0, 0]


def test_select_dwell_lasts_d_rounds():
    masks, dwell = _select([[0.0, 1.0]], 1,
                           kept=[torch.tensor([True, False])], rounds=2)
    assert masks[0].tolist() == [False, True]
    for _ in range(2):
        # The first channel now scores higher but the second is locked.
        masks, dwell = _select([[1.0, 0.0]], 1, dwell=dwell, kept=masks,
                               rounds=2)
        assert masks[0].tolist() == [False, True]
    masks, dwell = _select([[1.0, 0.0]], 1, dwell=dwell, kept=masks,
                           rounds=2)
    assert masks[0].tolist() == [True, False]


def test_select_budget_below_locked_count_wins():
    dwell = [torch.tensor([3, 3, 3], dtype=torch.int32)]
    masks, _ = _select([[0.1, 0.7, 0.4]], 1, dwell=dwell, rounds=3)
    assert masks[0].tolist() == [False, True, False]


def test_select_ranks_groups_by_sum():
    masks, _ = _select([[0.5, 0.5, 0.9, -0.5]], budget=2, group=2)
    assert masks[0].tolist() == [True, True, False, False]


def test_select_rejects_indivisible_groups():
    with pytest.raises(ValueError, match='not multiples of group_size'):
        _select([[0.1, 0.2, 0.3]], budget=2, group=2)
