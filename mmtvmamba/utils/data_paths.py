# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Early, readable failures when a config's dataset files are missing."""
import os.path as osp
from typing import List

from mmengine.config import Config

__all__ = ['find_missing_data_paths', 'check_data_paths']

_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_EVALUATOR_OF = dict(val_dataloader='val_evaluator',
                     test_dataloader='test_evaluator')


def _dataset_paths(dataset: dict) -> List[str]:
    paths = []
    data_root = dataset.get('data_root') or ''
    if data_root:
        paths.append(data_root)
    ann_file = dataset.get('ann_file')
    if ann_file:
        paths.append(osp.join(data_root, ann_file))
    for inner in ('dataset', 'datasets'):
        nested = dataset.get(inner)
        if isinstance(nested, dict):
            paths += _dataset_paths(nested)
        elif isinstance(nested, (list, tuple)):
            for item in nested:
                paths += _dataset_paths(item)
    return paths


def _evaluator_paths(evaluators) -> List[str]:
    if not isinstance(evaluators, (list, tuple)):
        evaluators = [evaluators]
    return [e['ann_file'] for e in evaluators
            if isinstance(e, dict) and e.get('ann_file')]


def find_missing_data_paths(cfg: Config, loaders=_LOADERS) -> List[str]:
    """Return the data roots and annotation files of ``cfg`` that do not
    exist, for the given dataloader keys and their evaluators."""
    paths = []
    for key in loaders:
        loader = cfg.get(key)
        if isinstance(loader, dict) and isinstance(loader.get('dataset'),
                                                   dict):
            paths += _dataset_paths(loader['dataset'])
        if key in _EVALUATOR_OF:
            paths += _evaluator_paths(cfg.get(_EVALUATOR_OF[key]))
    missing = []
    for path in paths:
        if '://' not in path and not osp.exists(path) and path not in missing:
            missing.append(path)
    return missing


def check_data_paths(cfg: Config, loaders=_LOADERS) -> None:
    """Raise FileNotFoundError naming every missing dataset path of ``cfg``.
    """
    missing = find_missing_data_paths(cfg, loaders)
    if missing:
        listed = '\n  '.join(osp.abspath(p) for p in missing)
        raise FileNotFoundError(
            f'dataset paths of {cfg.filename} not found:\n  {listed}\n'
            'The demo configs read ../shared/data beside the repository; '
            'full-size configs expect data/coco or data/imagenet in the '
            'working directory (a symlink works). Override paths with '
            '--cfg-options, e.g. train_dataloader.dataset.data_root=DIR.')
