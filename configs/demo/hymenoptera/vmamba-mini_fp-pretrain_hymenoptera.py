# Full-precision pre-training of a mini VMamba on ants and bees, on the CPU.
#
# The starting point of the method comparison in this folder: a VMamba
# with one or two blocks per stage and widths 16-32-64-128, trained from
# random weights on the 245 training photos of ../shared/data/hymenoptera
# at 64x64 and evaluated on the 153 validation photos.
_base_ = '../tvmamba-t_hymenoptera.py'

image_size = 64
max_epochs = 20
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True, depths=(1, 1, 2, 1), dims=16, ssm_ratio=1.0,
            drop_path_rate=0.0),
        quant=dict(_delete_=True, mode='fp')),
    head=dict(in_channels=128))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=image_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=image_size, edge='short'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=2, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=30),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
         end=max_epochs)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
default_hooks = dict(
    logger=dict(interval=16),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0)
