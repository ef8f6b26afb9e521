# TVMamba-T fine-tuning of the mini VMamba: Q2T activations annealed to
# strict ternary under the channel budget, CTRL loss, ternary evaluation.
_base_ = './vmamba-mini_fp_hymenoptera.py'

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
    ctrl=dict(loss_weight=1e-4, topk_ratio=0.1, unit='image'))

custom_hooks = [
    dict(
        type='mmtvmamba.Q2TAnnealingHook',
        interval=8,
        dwell=1,
        start=1 / 3,
        final_ratio=0.0,
        decay='linear',
        score_topk=0.1)
]
