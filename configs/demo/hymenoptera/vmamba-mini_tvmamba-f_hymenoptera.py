# TVMamba-F fine-tuning of the mini VMamba: as TVMamba-T, but a quarter of
# the channels stay five-level at the end and evaluation keeps them.
_base_ = './vmamba-mini_tvmamba-t_hymenoptera.py'

model = dict(architecture=dict(backbone=dict(quant=dict(deploy='five_level'))))
custom_hooks = [
    dict(
        type='mmtvmamba.Q2TAnnealingHook',
        interval=8,
        dwell=1,
        start=1 / 3,
        final_ratio=0.25,
        decay='linear',
        score_topk=0.1)
]
