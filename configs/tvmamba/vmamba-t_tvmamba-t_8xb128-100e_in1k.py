# TVMamba-T on VMamba-T: Q2T activations annealed from five levels to strict
# ternary, CTRL loss, and strict ternary evaluation.
#
# The first third of training keeps every channel five-level; then the
# number of five-level channels decays linearly to zero, re-chosen every
# 200 iterations by influence score.
_base_ = './vmamba-t_fp_8xb128-100e_in1k.py'

student = _base_.model
student.backbone.quant = dict(
    mode='ternary',
    weight=True,
    act=dict(type='Q2T', radius=2, grad_scale='paper'),
    deploy='ternary')
model = dict(
    _delete_=True,
    type='mmtvmamba.QATModel',
    architecture=student,
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
