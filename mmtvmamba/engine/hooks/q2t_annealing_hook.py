# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Quinary-to-ternary annealing of the Q2T quantizers of a model."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor

from mmtvmamba.quantization import (Q2TQuantizer, budget_ratio,
                                    select_channels)
from mmtvmamba.quantization.budget import DECAY_MODES
from mmtvmamba.registry import HOOKS

DATA_BATCH = Optional[Union[dict, tuple, list]]
SCOPES = ('global', 'layer')
STATE_KEY = 'q2t_annealing'


@HOOKS.register_module()
class Q2TAnnealingHook(Hook):
    """Anneal Q2T activations from five levels to ternary under a budget.

    Training progress is ``runner.iter / runner.max_iters``, so epoch- and
    iteration-based loops behave the same. Until ``start`` every channel of
    every :class:`~mmtvmamba.quantization.Q2TQuantizer` has radius 2. After
    that, every ``interval`` iterations (and at the last one), the hook

    1. switches on influence scoring in the quantizers for that iteration,
       so the scores come from the gradients of the training step itself;
    2. after the step, averages the scores over ranks (``all_reduce``), so
       every rank makes the same choice;
    3. keeps the ``B_max(t)`` channels of highest score five-level
       (:func:`~mmtvmamba.quantization.select_channels`, with dwell and
       groups) and sets every other channel to radius 1.

    ``B_max(t)`` is ``budget_ratio(t) * C`` rounded down, with ``C`` the
    number of quantized channels of the model (``scope='global'``) or of
    each quantizer (``scope='layer'``). It decays to ``final_ratio * C`` at
    the end, so with the default ``final_ratio=0`` every channel is ternary
    when training ends. The number of five-level channels is logged as
    ``train/five_level_channels``.

    The radius masks are module buffers and the dwell counters are saved in
    the checkpoint under ``'q2t_annealing'``, so resuming restores both.

    Args:
        interval (int): Iterations ``T`` between selection rounds.
            Defaults to 100.
        dwell (int): Rounds ``D`` a channel that became five-level is kept
            before it is reconsidered. Defaults to 0.
        group_size (int): Channels ``G`` selected together; must divide the
            width of every Q2T quantizer. Defaults to 1.
        start (float): Share of training with every channel five-level.
            Defaults to 1/3.
        final_ratio (float): Share of channels still five-level at the end.
            Defaults to 0.0.
        decay (str): Decay of the budget, ``'linear'`` or ``'cosine'``.
            Defaults to ``'linear'``.
        score_topk (float): Share of each channel's elements averaged by the
            influence score, in (0, 1]. Defaults to 0.1.
        scope (str): ``'global'`` ranks all channels of the model against
            each other, ``'layer'`` gives each quantizer its own budget.
            Defaults to ``'global'``.
    """

    priority = 'NORMAL'

    def __init__(self,
                 interval: int = 100,
                 dwell: int = 0,
                 group_size: int = 1,
                 start: float = 1 / 3,
                 final_ratio: float = 0.0,
                 decay: str = 'linear',
                 score_topk: float = 0.1,
                 scope: str = 'global') -> None:
        if interval < 1 or dwell < 0 or group_size < 1:
            raise ValueError(f'interval={interval} and group_size='
                             f'{group_size} must be >= 1 and dwell={dwell} '
                             '>= 0')
        if decay not in DECAY_MODES:
            raise ValueError(f'invalid decay {decay!r}; use one of '
                             f'{DECAY_MODES}')
        if scope not in SCOPES:
            raise ValueError(f'invalid scope {scope!r}; use one of {SCOPES}')
        if not 0 < score_topk <= 1:
            raise ValueError(f'score_topk={score_topk} must be in (0, 1]')
        # Raises on an invalid start or final_ratio.
        budget_ratio(0.5, start, final_ratio, decay)
        self.interval = interval
        self.dwell = dwell
        self.group_size = group_size
        self.start = start
        self.final_ratio = final_ratio
        self.decay = decay
        self.score_topk = score_topk
        self.scope = scope
        self.quantizers: List[Tuple[str, Q2TQuantizer]] = []
        self.dwell_counters: Dict[str, Tensor] = {}
        self.rounds = 0
        self._loaded_state: Optional[dict] = None

    # -- checkpoint state ---------------------------------------------------

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the dwell counters and the round count.

        Args:
            runner (Runner): The runner of the training process.
            checkpoint (dict): The checkpoint being saved.
        """
        checkpoint[STATE_KEY] = dict(
            rounds=self.rounds,
            dwell={
                name: counter.clone()
                for name, counter in self.dwell_counters.items()
            })

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the dwell counters saved by a previous run.

        Args:
            runner (Runner): The runner of the training process.
            checkpoint (dict): The loaded checkpoint.
        """
        self._loaded_state = checkpoint.get(STATE_KEY)
        if self.quantizers:
            self._restore_state()

    def _restore_state(self) -> None:
        state = self._loaded_state
        if state is None:
            return
        missing = [n for n, _ in self.quantizers if n not in state['dwell']]
        if missing:
            raise KeyError(f'the checkpoint has no dwell counters for the '
                           f'Q2T quantizers {missing}; resume from a '
                           'checkpoint of the same model')
        self.rounds = int(state['rounds'])
        for name, quantizer in self.quantizers:
            self.dwell_counters[name] = state['dwell'][name].to(
                quantizer.radius.device, torch.int32)

    # -- training -------------------------------------------------------------

    def before_train(self, runner) -> None:
        """Find the Q2T quantizers and set the stage of the schedule.

        Args:
            runner (Runner): The runner of the training process.
        """
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.quantizers = [(name, module)
                           for name, module in model.named_modules()
                           if isinstance(module, Q2TQuantizer)]
        if not self.quantizers:
            raise ValueError('Q2TAnnealingHook found no Q2TQuantizer in the '
                             "model; use quant=dict(act=dict(type='Q2T')) "
                             'in the backbone or remove the hook')
        widths = [q.num_channels for _, q in self.quantizers]
        if any(width % self.group_size for width in widths):
            raise ValueError(f'group_size={self.group_size} does not divide '
                             f'the quantizer widths {sorted(set(widths))}')
        self.dwell_counters = {
            name: torch.zeros_like(q.radius, dtype=torch.int32)
            for name, q in self.quantizers
        }
        self._restore_state()
        if runner.iter / runner.max_iters <= self.start:
            for _, quantizer in self.quantizers:
                quantizer.radius.fill_(2)
        self._log_count(runner)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        """Switch scoring on when this iteration ends a selection round.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): The index of the batch in the loader.
            data_batch (dict, optional): The batch. Defaults to None.
        """
        if not self._is_round(runner):
            return
        ratio = self._ratio(runner)
        if 0 < ratio < 1:
            for _, quantizer in self.quantizers:
                quantizer.set_scoring(True, self.score_topk)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        """Choose the five-level channels at the end of a round.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): The index of the batch in the loader.
            data_batch (dict, optional): The batch. Defaults to None.
            outputs (dict, optional): The step's outputs. Defaults to None.
        """
        if self._is_round(runner):
            self._select(self._ratio(runner))
            self.rounds += 1
            for _, quantizer in self.quantizers:
                quantizer.set_scoring(False)
        self._log_count(runner)

    def _is_round(self, runner) -> bool:
        done = runner.iter + 1
        last = done >= runner.max_iters
        return (done % self.interval == 0
                or last) and done / runner.max_iters > self.start

    def _ratio(self, runner) -> float:
        return budget_ratio((runner.iter + 1) / runner.max_iters, self.start,
                            self.final_ratio, self.decay)

    def _log_count(self, runner) -> None:
        count = sum(int((q.radius == 2).sum()) for _, q in self.quantizers)
        runner.message_hub.update_scalar('train/five_level_channels', count)

    # -- selection -------------------------------------------------------------

    @torch.no_grad()
    def _select(self, ratio: float) -> None:
        names = [name for name, _ in self.quantizers]
        modules = [q for _, q in self.quantizers]
        if ratio >= 1 or ratio <= 0:
            for name, quantizer in self.quantizers:
                quantizer.radius.fill_(2 if ratio >= 1 else 1)
                if ratio <= 0:
                    self.dwell_counters[name].zero_()
            return

        scores = reduce_scores(modules)
        kept = [q.radius == 2 for q in modules]
        dwell = [self.dwell_counters[name] for name in names]
        if self.scope == 'global':
            total = sum(q.num_channels for q in modules)
            masks, dwell = select_channels(scores, int(ratio * total), dwell,
                                           kept, self.dwell, self.group_size)
        else:
            masks, counters = [], []
            for i, quantizer in enumerate(modules):
                mask, counter = select_channels(
                    scores[i:i + 1], int(ratio * quantizer.num_channels),
                    dwell[i:i + 1], kept[i:i + 1], self.dwell,
                    self.group_size)
                masks += mask
                counters += counter
            dwell = counters
        for name, quantizer, mask, counter in zip(names, modules, masks,
                                                  dwell):
            quantizer.radius.copy_(
                torch.where(mask, 2, 1).to(quantizer.radius.dtype))
            self.dwell_counters[name] = counter.to(torch.int32)


def reduce_scores(quantizers: Sequence[Q2TQuantizer]) -> List[Tensor]:
    """Return the channel scores of each quantizer, averaged over ranks.

    A quantizer that did not run in the scored step gets zero scores.
    """
    missing = [q.layer or type(q).__name__ for q in quantizers
               if q.scores is None]
    if missing:
        print_log(f'{len(missing)} Q2T quantizers got no influence scores '
                  f'in the scored step ({sorted(set(missing))}); their '
                  'channels score 0', logger='current')
    flat = torch.cat([
        q.scores.float() if q.scores is not None else torch.zeros(
            q.num_channels, device=q.radius.device) for q in quantizers
    ])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
    return list(flat.split([q.num_channels for q in quantizers]))
