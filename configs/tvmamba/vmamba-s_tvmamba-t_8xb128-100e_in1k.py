# VMamba-S variant of vmamba-t_tvmamba-t_8xb128-100e_in1k.py.
_base_ = './vmamba-t_tvmamba-t_8xb128-100e_in1k.py'

pretrained = 'checkpoints/vssm_small_0229_ckpt_epoch_222.pth'
model = dict(
    architecture=dict(
        backbone=dict(
            arch='small',
            drop_path_rate=0.3,
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        head=dict(in_channels=768)))
