# Short CPU demo of TVMamba-T Mask R-CNN on the 128-image COCO subset.
#
# Reads ../shared/data/coco128 beside the repository (100 train and 28 val
# images in train2017/); for another copy, override the dataloaders'
# `dataset.data_root` and the evaluators' `ann_file`. Images are resized to
# at most 512x320, the backbone starts from random weights (no official
# checkpoint is needed) and the schedule is short, so the loss falls but
# mAP stays near zero: this checks the pipeline, not accuracy.
_base_ = '../mask-rcnn_tvmamba-t_coco.py'

coco128_root = '{{ fileDirname }}/../../../shared/data/coco128/'
image_scale = (512, 320)
max_epochs = 3

# A model trained this briefly scores its detections below mmdet's default
# threshold of 0.05, which would leave nothing to evaluate.
model = dict(
    architecture=dict(
        backbone=dict(init_cfg=None),
        test_cfg=dict(rcnn=dict(score_thr=0.001))))

# The 147 iterations of the demo need selection rounds more often than the
# full schedule's every 200 iterations, so the budget decays in steps.
custom_hooks = [
    dict(
        type='mmtvmamba.Q2TAnnealingHook',
        interval=10,
        dwell=1,
        start=1 / 3,
        final_ratio=0.0,
        decay='linear',
        score_topk=0.1)
]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    dataset=dict(
        data_root=coco128_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=2,
    dataset=dict(
        data_root=coco128_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=coco128_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[max_epochs - 1],
        gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=2))
