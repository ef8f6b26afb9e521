# Mask R-CNN with a TVMamba-T backbone (ternary VMamba-T) on COCO 2017, 1x.
#
# VMamba's detection recipe: AdamW, lr 1e-4, weight decay 0.05 without decay
# on norms, A_logs, Ds and quantizer scales; 1000 warm-up iterations;
# 12 epochs with steps at 8 and 11. Expects COCO in data/coco/ as mmdet
# does, and the official VMamba-T (s1l8) classification checkpoint in
# checkpoints/; set `model.architecture.backbone.init_cfg=None` to train
# from scratch.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmtvmamba'], allow_failed_imports=False)

pretrained = 'checkpoints/vssm1_tiny_0230s_ckpt_epoch_264.pth'
detector = _base_.model
detector.backbone = dict(
    type='mmtvmamba.TVMambaVSSM',
    arch='tiny',
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.2,
    quant=dict(
        mode='ternary',
        weight=True,
        act=dict(type='Q2T', radius=2, grad_scale='paper')),
    init_cfg=dict(type='Pretrained', checkpoint=pretrained))
detector.neck.in_channels = [96, 192, 384, 768]

# Quantization-aware training: the QAT wrapper adds the CTRL loss, and the
# Q2T annealing hook keeps every channel five-level for the first third of
# training, then lowers the number of five-level channels to zero.
# Checkpoints hold the detector alone, so tools/test.py loads them with
# this config or with a plain Mask R-CNN config of the same detector.
model = dict(
    _delete_=True,
    type='mmtvmamba.QATModel',
    architecture=detector,
    # Unweighted, the per-token CTRL of VMamba-T at initialization is about
    # 5e3 (two COCO images at 512x320); this weight puts it near 0.3.
    ctrl=dict(loss_weight=5e-5, topk_ratio=0.1, unit='token'))
custom_hooks = [
    dict(
        type='mmtvmamba.Q2TAnnealingHook',
        interval=200,
        dwell=2,
        start=1 / 3,
        final_ratio=0.0,
        decay='linear',
        score_topk=0.1)
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.),
            'A_logs': dict(decay_mult=0.),
            'Ds': dict(decay_mult=0.),
            'act_quant': dict(decay_mult=0.),
        }))

param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]
