# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Time one training step of a QAT classifier against its FP counterpart.

Both models are the same mmpretrain ImageClassifier with a TVMambaVSSM
backbone. The QAT one has ternary weights and Q2T activations and is wrapped
in ``mmtvmamba.QATModel`` with CTRL. QAT steps are timed without and with
influence scoring, the most expensive step of the Q2T annealing, which the
hook runs only every ``interval`` iterations; the mean step of training
weighs the two accordingly. A step is forward, backward and an SGD update
on the same random batch. The FP step, the QAT step and the QAT step with
scoring take turns in every repeat. The script prints median step times
over the repeats, their ratios to the FP step and the 1-minute load
average of the machine before and after the run.

Example::

    python tools/benchmark/benchmark_qat_step.py --arch tiny --batch-size 8 \
        --image-size 112 --repeats 10
"""
import argparse
import os
import statistics
import time

import torch
from mmengine.registry import MODELS, init_default_scope
from mmpretrain.structures import DataSample

import mmtvmamba  # noqa: F401
from mmtvmamba.quantization import CTRL_UNITS, Q2TQuantizer

TINY_WIDTHS = dict(depths=(1, 1, 2, 1), dims=16, ssm_ratio=1.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--arch', default='mini',
        help="backbone arch: 'tiny', 'small', 'base' or 'mini' (depths "
        '1-1-2-1, width 16)')
    parser.add_argument('--batch-size', type=int, default=16,
                        help='images per step')
    parser.add_argument('--image-size', type=int, default=64,
                        help='height and width of the images in pixels')
    parser.add_argument('--repeats', type=int, default=10,
                        help='timed steps per model')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed steps per model before timing')
    parser.add_argument(
        '--interval',
        type=int,
        default=200,
        help='steps between influence-scoring steps of the annealing hook, '
        'used for the mean step time (the Mask R-CNN config uses 200)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads; default: torch default')
    parser.add_argument(
        '--ctrl-unit', default='token', choices=CTRL_UNITS,
        help="CTRL example unit of the QAT model: 'token' (the QATModel "
        "default) or 'image'")
    parser.add_argument(
        '--ctrl-channel-ratio', type=float, default=1.0,
        help='share of the channels of each layer whose CTRL tail means a '
        'step computes, in (0, 1]; 1.0 (default) is the exact loss, less is '
        'an unbiased random estimate')
    args = parser.parse_args()
    for name in ('batch_size', 'image_size', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    if not 0 < args.ctrl_channel_ratio <= 1:
        parser.error('--ctrl-channel-ratio must be in (0, 1], got '
                     f'{args.ctrl_channel_ratio}')
    return args


def classifier_cfg(arch, quant: dict) -> dict:
    widths = {'tiny': 768, 'small': 768, 'base': 1024}
    in_channels = widths.get(arch, TINY_WIDTHS['dims'] * 8)
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='mmtvmamba.TVMambaVSSM',
            arch=TINY_WIDTHS if arch == 'mini' else arch,
            out_indices=(3, ),
            drop_path_rate=0.0,
            quant=quant),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=2,
                  in_channels=in_channels),
        data_preprocessor=dict(
            type='ClsDataPreprocessor', mean=[0] * 3, std=[1] * 3))


class StepTimer:
    """Run and time training steps of one model, with or without scoring.

    Args:
        model (nn.Module): The classifier or QAT wrapper to train.
        scoring (bool): Switch influence scoring on before every step.
    """

    def __init__(self, model: torch.nn.Module, scoring: bool) -> None:
        self.model = model.train()
        self.scoring = scoring
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        self.quantizers = [
            m for m in model.modules() if isinstance(m, Q2TQuantizer)
        ]
        self.times = []

    def step(self, inputs, samples, record: bool) -> None:
        """Run one step and keep its wall time in seconds if ``record``."""
        for quantizer in self.quantizers:
            quantizer.set_scoring(self.scoring, 0.1)
        start = time.perf_counter()
        losses = self.model(inputs, samples, mode='loss')
        loss = sum(value for key, value in losses.items() if 'loss' in key)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if record:
            self.times.append(time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    fp_model = MODELS.build(classifier_cfg(args.arch, dict(mode='fp')))
    qat_model = MODELS.build(
        dict(
            type='mmtvmamba.QATModel',
            architecture=classifier_cfg(args.arch,
                                        dict(act=dict(type='Q2T'))),
            ctrl=dict(loss_weight=1e-4, topk_ratio=0.1,
                      unit=args.ctrl_unit,
                      channel_ratio=args.ctrl_channel_ratio)))
    qat_model.architecture.load_state_dict(fp_model.state_dict(),
                                           strict=False)
    inputs = torch.randn(args.batch_size, 3, args.image_size,
                         args.image_size)
    samples = [
        DataSample().set_gt_label(i % 2) for i in range(args.batch_size)
    ]

    timers = dict(
        fp=StepTimer(fp_model, scoring=False),
        plain=StepTimer(qat_model, scoring=False),
        scoring=StepTimer(qat_model, scoring=True))
    load_before = os.getloadavg()[0]
    # The three kinds of step take turns, so a change of machine load
    # during the run reaches all of them alike.
    for step in range(args.warmup + args.repeats):
        for timer in timers.values():
            timer.step(inputs, samples, record=step >= args.warmup)
    load_after = os.getloadavg()[0]
    fp_median, plain_median, scoring_median = (
        statistics.median(timer.times) for timer in timers.values())
    # The annealing hook scores one step in every `interval`.
    mean_step = (scoring_median +
                 (args.interval - 1) * plain_median) / args.interval

    print(f'arch={args.arch} batch={args.batch_size} '
          f'image={args.image_size}px repeats={args.repeats} '
          f'threads={torch.get_num_threads()} ctrl_unit={args.ctrl_unit} '
          f'ctrl_channel_ratio={args.ctrl_channel_ratio} '
          f'load_1min={load_before:.2f}->{load_after:.2f}')
    print(f'FP step:                          median {fp_median * 1e3:8.1f} '
          'ms')
    print(f'QAT step (Q2T + CTRL):            median '
          f'{plain_median * 1e3:8.1f} ms  {plain_median / fp_median:.2f}x FP')
    print(f'QAT step with influence scoring:  median '
          f'{scoring_median * 1e3:8.1f} ms  '
          f'{scoring_median / fp_median:.2f}x FP')
    print(f'QAT mean step, scoring every {args.interval} steps: '
          f'{mean_step * 1e3:8.1f} ms  {mean_step / fp_median:.2f}x FP')


if __name__ == '__main__':
    main()
