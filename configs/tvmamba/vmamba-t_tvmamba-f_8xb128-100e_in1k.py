# TVMamba-F on VMamba-T: as TVMamba-T, but the budget decays to a quarter of
# the channels instead of zero, and evaluation keeps the trained five-level
# channels (a five-level channel runs as two ternary matrix multiplies).
_base_ = './vmamba-t_tvmamba-t_8xb128-100e_in1k.py'

model = dict(architecture=dict(backbone=dict(quant=dict(deploy='five_level'))))
custom_hooks = [
    dict(
        type='mmtvmamba.Q2TAnnealingHook',
        interval=200,
        dwell=2,
        start=1 / 3,
        final_ratio=0.25,
        decay='linear',
        score_topk=0.1)
]
