# Copyright (c) mmtvmamba contributors. All rights reserved.
"""A tiny TVMamba classifier on random images, trained by a real Runner.

Run under ``torchrun --nproc_per_node 2 q2t_toy.py WORK_DIR`` it trains with
gloo on the CPU and writes each rank's radius masks to
``WORK_DIR/masks_rank{r}.pt``.
"""
import os.path as osp
import sys

import torch
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

import mmtvmamba  # noqa: F401
from mmtvmamba.quantization import Q2TQuantizer

TINY_ARCH = dict(depths=(1, 1, 1, 1), dims=8, ssm_ratio=1.0)


class RandomImages(Dataset):
    """Eight fixed random 32x32 images with labels 0 and 1."""

    def __init__(self, size: int = 8) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(size, 3, 32, 32, generator=generator) * 255
        self.labels = torch.arange(size) % 2

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        sample = DataSample().set_gt_label(int(self.labels[index]))
        return dict(inputs=self.images[index], data_samples=sample)


def classifier_cfg(act: dict = None) -> dict:
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='mmtvmamba.TVMambaVSSM',
            arch=TINY_ARCH,
            out_indices=(3, ),
            quant=dict(act=act or dict(type='Q2T'))),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=64),
        data_preprocessor=dict(
            type='ClsDataPreprocessor', mean=[128] * 3, std=[64] * 3))


def runner_kwargs(work_dir: str,
                  hook: dict,
                  max_iters: int = 8,
                  by_epoch: bool = False,
                  launcher: str = 'none',
                  checkpoint_interval: int = 4) -> dict:
    """Return the arguments of a small Runner with ``hook`` as custom
    hook."""
    if by_epoch:
        train_cfg = dict(by_epoch=True, max_epochs=max_iters // 2)
    else:
        train_cfg = dict(by_epoch=False, max_iters=max_iters)
    return dict(
        model=classifier_cfg(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=RandomImages(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4 if launcher == 'none' else 2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        train_cfg=train_cfg,
        custom_hooks=[dict(type='mmtvmamba.Q2TAnnealingHook', **hook)],
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(
                type='CheckpointHook',
                interval=checkpoint_interval,
                by_epoch=by_epoch)),
        default_scope='mmpretrain',
        launcher=launcher,
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
        log_level='WARNING')


def radius_masks(model: torch.nn.Module) -> dict:
    """Return the radius buffer of every Q2T quantizer by module name."""
    model = getattr(model, 'module', model)
    return {
        name: module.radius.clone()
        for name, module in model.named_modules()
        if isinstance(module, Q2TQuantizer)
    }


def main(work_dir: str) -> None:
    # mmengine 0.10.7 calls torch.cuda.set_device when it starts the process
    # group itself, so start it here with gloo, and keep DDP off CUDA.
    torch.distributed.init_process_group(backend='gloo')
    hook = dict(interval=2, dwell=1, final_ratio=0.5, score_topk=0.5)
    kwargs = runner_kwargs(work_dir, hook, launcher='pytorch')
    kwargs['cfg'] = dict(
        model_wrapper_cfg=dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False))
    runner = Runner(**kwargs)
    runner.train()
    rank = torch.distributed.get_rank()
    torch.save(radius_masks(runner.model),
               osp.join(work_dir, f'masks_rank{rank}.pt'))


if __name__ == '__main__':
    main(sys.argv[1])
