# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Evaluate a checkpoint with an OpenMMLab config (mmpretrain, mmdet or
mmseg) and print the metrics of the config's test evaluator."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmtvmamba  # noqa: F401
from mmtvmamba.utils import check_data_paths


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file (.pkl)')
    parser.add_argument(
        '--show-dir',
        help='save images with drawn predictions to this dir, relative to '
        'the work dir''s timestamped folder')
    parser.add_argument(
        '--show', action='store_true', help='show predictions in a window')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='seconds each shown image stays on screen')
    parser.add_argument(
        '--amp', action='store_true', help='test with mixed precision')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=2')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    """Switch on the config's visualization hook for --show/--show-dir."""
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise KeyError('--show and --show-dir need a visualization hook in '
                       'default_hooks (e.g. DetVisualizationHook)')
    hook = hooks['visualization']
    hook['draw'] = True
    if 'enable' in hook or 'Pretrain' in hook.get('type', ''):
        hook['enable'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        key = 'out_dir' if 'Pretrain' in hook.get('type', '') or \
            'Cls' in hook.get('type', '') else 'test_out_dir'
        hook[key] = args.show_dir


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to ``cfg``."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = cfg.get('test_cfg') or {}
        cfg.test_cfg.fp16 = True
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main():
    args = parse_args()
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {args.out} must end with .pkl or .pickle')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found; '
                                'pass the .pth file written by train.py')
    cfg = merge_args(Config.fromfile(args.config), args)
    check_data_paths(cfg, ['test_dataloader'])

    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
