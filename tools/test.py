# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Evaluate a checkpoint with an OpenMMLab config (mmpretrain, mmdet or
mmseg) and print the metrics of the config's test evaluator."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

import mmtvmamba  # noqa: F401
from mmtvmamba.deploy import convert_to_deploy, read_deploy_meta
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
        help='save images with drawn predictions to this directory; mmdet '
        'puts it under the run folder in the work dir')
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
    """Switch on the config's visualization hook for --show/--show-dir.

    The three libraries name the switches differently: mmdet's
    DetVisualizationHook takes ``draw`` and ``test_out_dir``, mmpretrain's
    VisualizationHook ``enable`` and ``out_dir``, and mmseg's
    SegVisualizationHook ``draw`` with the directory on the visualizer.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise KeyError('--show and --show-dir need default_hooks.'
                       'visualization in the config')
    hook_type = hook.get('type', '').split('.')[-1]
    if hook_type == 'VisualizationHook':
        hook['enable'] = True
        directory_key = 'out_dir'
    else:
        hook['draw'] = True
        directory_key = 'test_out_dir'
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if hook_type == 'SegVisualizationHook':
            cfg.visualizer['save_dir'] = args.show_dir
        else:
            hook[directory_key] = args.show_dir


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to ``cfg``."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    # Testing needs only the weights. A config dumped by a resumed training
    # run sets resume=True, and resuming reads training state (epoch,
    # optimizer) that deploy checkpoints do not have.
    cfg.resume = False
    if args.amp:
        cfg.test_cfg = cfg.get('test_cfg') or {}
        cfg.test_cfg.fp16 = True
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def prepare_deploy_model(runner: Runner, meta: dict) -> None:
    """Give the runner's model the deployed structure of a deploy
    checkpoint, so that the runner can load its packed weights."""
    if is_model_wrapper(runner.model):
        raise ValueError('deploy checkpoints are evaluated in one process; '
                         'run tools/test.py without --launcher')
    # Checkpoints written before block fusion existed carry no 'fuse' entry
    # and were converted without it.
    count = convert_to_deploy(runner.model, meta['variant'],
                              meta['alpha_groups'], meta.get('fuse', False))
    runner.logger.info(f'deploy checkpoint: {count} projections run on the '
                       f"bitwise op ({meta['variant']})")


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
    deploy_meta = read_deploy_meta(args.checkpoint)
    if deploy_meta is not None:
        prepare_deploy_model(runner, deploy_meta)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
