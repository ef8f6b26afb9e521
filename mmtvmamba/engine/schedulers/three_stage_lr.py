# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Three-stage schedule: a constant factor in each third of training."""
from typing import Sequence

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler

from mmtvmamba.registry import PARAM_SCHEDULERS

__all__ = ['ThreeStageParamScheduler', 'ThreeStageLR']


@PARAM_SCHEDULERS.register_module()
class ThreeStageParamScheduler(_ParamScheduler):
    """Multiply a parameter by one factor per third of ``[begin, end)``.

    The stages are ``[begin, b1)``, ``[b1, b2)`` and ``[b2, end)`` with
    ``b1 = begin + round(L / 3)`` and ``b2 = begin + round(2 L / 3)``,
    ``L = end - begin``. The schedule is chainable: at each boundary the
    current value is multiplied by the ratio of the new factor to the old
    one, so it composes with other schedulers as ``MultiStepLR`` does.

    Args:
        optimizer (Optimizer | OptimWrapper): The wrapped optimizer.
        param_name (str): Name of the scheduled parameter.
        factors (Sequence[float]): Positive factor of each stage.
            Defaults to (0.1, 0.5, 1.0), the TVMamba fine-tuning schedule.
        begin (int): First step of the schedule. Defaults to 0.
        end (int): Step after the last one; must be finite.
        last_step (int): Used when resuming. Defaults to -1.
        by_epoch (bool): Steps are epochs. Defaults to True.
        verbose (bool): Print each update. Defaults to False.
    """

    def __init__(self,
                 optimizer,
                 param_name: str,
                 factors: Sequence[float] = (0.1, 0.5, 1.0),
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False) -> None:
        factors = tuple(float(f) for f in factors)
        if len(factors) != 3 or min(factors) <= 0:
            raise ValueError(f'factors={factors} must be three positive '
                             'numbers, e.g. (0.1, 0.5, 1.0)')
        if end == INF:
            raise ValueError('ThreeStage schedulers need a finite end; set '
                             'end to the number of epochs or iterations')
        if end - begin < 3:
            raise ValueError(f'the schedule [{begin}, {end}) must span at '
                             'least 3 steps')
        self.factors = factors
        length = end - begin
        self.boundaries = (round(length / 3), round(2 * length / 3))
        super().__init__(
            optimizer,
            param_name,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls,
                              *args,
                              begin: int = 0,
                              end: int = INF,
                              by_epoch: bool = True,
                              epoch_length: int = None,
                              **kwargs) -> 'ThreeStageParamScheduler':
        """Build an iteration-based instance from epoch-based arguments."""
        if not by_epoch or not epoch_length or epoch_length <= 0:
            raise ValueError('convert_to_iter_based needs by_epoch=True and '
                             f'a positive epoch_length, got {epoch_length}')
        return cls(
            *args,
            begin=int(begin * epoch_length),
            end=int(end * epoch_length) if end != INF else INF,
            by_epoch=False,
            **kwargs)

    def _get_value(self) -> list:
        """Compute the chained value at ``last_step`` (0 at ``begin``)."""
        step = self.last_step
        if step == 0:
            ratio = self.factors[0]
        elif step == self.boundaries[0]:
            ratio = self.factors[1] / self.factors[0]
        elif step == self.boundaries[1]:
            ratio = self.factors[2] / self.factors[1]
        else:
            ratio = 1.0
        return [
            group[self.param_name] * ratio
            for group in self.optimizer.param_groups
        ]


@PARAM_SCHEDULERS.register_module()
class ThreeStageLR(LRSchedulerMixin, ThreeStageParamScheduler):
    """Three-stage learning rate: 0.1x, 0.5x, then 1x the base rate.

    See :class:`ThreeStageParamScheduler` for the arguments, without
    ``param_name``.
    """
