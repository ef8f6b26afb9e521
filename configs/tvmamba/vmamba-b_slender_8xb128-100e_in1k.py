# VMamba-B variant of vmamba-t_slender_8xb128-100e_in1k.py.
_base_ = './vmamba-t_slender_8xb128-100e_in1k.py'

pretrained = 'checkpoints/vssm_base_0229_ckpt_epoch_237.pth'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    head=dict(in_channels=1024))
