# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Convert a trained TVMamba checkpoint to a deploy checkpoint.

The deploy checkpoint stores packed ternary weights that run on the bitwise
op. The script prints the storage beside the float32 model and checks
parity with the fake-quantized model on real images of the config's test
set. ``tools/test.py CONFIG OUT`` evaluates the written checkpoint.

Example::

    python tools/deploy/convert.py \\
        configs/demo/hymenoptera/vmamba-mini_tvmamba-t_hymenoptera.py \\
        work_dirs/vmamba-mini_tvmamba-t_hymenoptera/epoch_6.pth \\
        work_dirs/vmamba-mini_tvmamba-t_hymenoptera/deploy.pth
"""
import argparse
import copy
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner, load_checkpoint

import mmtvmamba  # noqa: F401
from mmtvmamba.deploy import (DEPLOY_RADIUS, check_parity, convert_to_deploy,
                              deploy_state_dict, measure_storage,
                              save_deploy_checkpoint)
from mmtvmamba.quantization import Q2TQuantizer
from mmtvmamba.utils import check_data_paths


def alpha_groups_arg(value: str) -> Optional[int]:
    """Parse ``--alpha-groups``: a positive int, or ``none``."""
    if value.lower() == 'none':
        return None
    try:
        groups = int(value)
    except ValueError:
        groups = 0
    if groups < 1:
        raise argparse.ArgumentTypeError(
            f'invalid --alpha-groups {value!r}; pass a positive integer or '
            "'none' for one scale group per channel")
    return groups


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config the checkpoint was trained '
                        'with')
    parser.add_argument('checkpoint', help='trained checkpoint (.pth)')
    parser.add_argument('out', help='deploy checkpoint to write (.pth)')

    parser.add_argument(
        '--variant',
        choices=list(DEPLOY_RADIUS),
        default='ternary',
        help="'ternary' forces ternary activations (TVMamba-T); "
        "'five_level' keeps the five-level channels of training (TVMamba-F)")
    parser.add_argument(
        '--alpha-groups',
        type=alpha_groups_arg,
        default=8,
        help="activation scale groups per projection, or 'none' for one "
        'per channel (exact, slower); default 8')
    parser.add_argument(
        '--float-dtype',
        choices=['float32', 'float16'],
        default='float32',
        help='storage type of the float parameters outside the ternary '
        'projections')
    parser.add_argument(
        '--no-fuse',
        dest='fuse',
        action='store_false',
        help='keep the LayerNorms and GELUs of the blocks as separate '
        'modules instead of fusing them into the projections')

    parser.add_argument(
        '--parity-images',
        type=int,
        default=32,
        help='test images for the parity check; 0 skips it')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=4')
    args = parser.parse_args()
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Raise on missing inputs or an output that would overwrite one."""
    for name in ('config', 'checkpoint'):
        path = getattr(args, name)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{name} {path} not found')
    if not args.out.endswith('.pth'):
        raise ValueError(f'output {args.out} must end with .pth')
    if osp.abspath(args.out) == osp.abspath(args.checkpoint):
        raise ValueError('the output would overwrite the trained checkpoint; '
                         'choose another path')
    if args.parity_images < 0:
        raise ValueError(f'--parity-images {args.parity_images} must be 0 '
                         'or more')


def set_eval_radius(model, variant: str) -> None:
    """Make the fake-quantized model evaluate the same variant."""
    for module in model.modules():
        if isinstance(module, Q2TQuantizer):
            module.deploy_radius = DEPLOY_RADIUS[variant]


def build_model(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` as the Runner of ``tools/test.py`` does, with the
    config's top-level ``data_preprocessor`` (its mean and std) unless the
    model sets its own."""
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))

    model = build_model(cfg)
    checkpoint = load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    set_eval_radius(model, args.variant)

    deployed = copy.deepcopy(model)
    count = convert_to_deploy(deployed, args.variant, args.alpha_groups,
                              args.fuse)
    print_log(f'converted {count} projections ({args.variant}, alpha groups '
              f'{args.alpha_groups})', logger='current')

    dataset_meta = checkpoint.get('meta', {}).get('dataset_meta')
    extra = {'dataset_meta': dataset_meta} if dataset_meta else None
    size = save_deploy_checkpoint(deployed, args.out, args.variant,
                                  args.alpha_groups, args.float_dtype, extra,
                                  args.fuse)
    storage = measure_storage(model, deployed,
                              deploy_state_dict(deployed, args.float_dtype),
                              size)
    print(storage.table(osp.splitext(osp.basename(args.config))[0]))

    if args.parity_images:
        check_data_paths(cfg, ['test_dataloader'])
        loader = Runner.build_dataloader(cfg.test_dataloader)
        report = check_parity(model, deployed, loader, args.parity_images)
        print(report.summary())


if __name__ == '__main__':
    main()
