# Short CPU demo of TVMamba-T classification on ants and bees.
#
# Reads ../shared/data/hymenoptera beside the repository (245 train and 153
# val photos, two classes) at 96x96, starting from random weights.
_base_ = '../tvmamba-t_8xb128_in1k.py'

hymenoptera_root = '{{ fileDirname }}/../../../shared/data/hymenoptera/'
image_size = 96
max_epochs = 2

model = dict(
    backbone=dict(init_cfg=None),
    head=dict(
        num_classes=2,
        loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )),
    train_cfg=None)
data_preprocessor = dict(num_classes=2)

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
    batch_size=16,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=hymenoptera_root,
        data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=hymenoptera_root,
        data_prefix='val',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
         end=max_epochs)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=1, max_keep_ckpts=1))
