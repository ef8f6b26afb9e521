# ImageNet-1k classification with a TVMamba-T backbone (ternary VMamba-T).
#
# mmpretrain's ImageNet layout in data/imagenet (train/ and val/ with
# meta/ files) and its Swin recipe; the backbone starts from the official
# VMamba-T (s1l8) checkpoint in checkpoints/.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]

custom_imports = dict(imports=['mmtvmamba'], allow_failed_imports=False)

pretrained = 'checkpoints/vssm1_tiny_0230s_ckpt_epoch_264.pth'
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmtvmamba.TVMambaVSSM',
        arch='tiny',
        out_indices=(3, ),
        drop_path_rate=0.2,
        quant=dict(
            mode='ternary',
            weight=True,
            act=dict(type='Q2T', radius=2, grad_scale='paper')),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'A_logs': dict(decay_mult=0.),
            'Ds': dict(decay_mult=0.),
            'act_quant': dict(decay_mult=0.),
        }))
