# LSQ-Ternary baseline on VMamba-T: ternary weights, and ternary
# activations with a learned per-channel scale and threshold ratio.
_base_ = './vmamba-t_fp_8xb128-100e_in1k.py'

model = dict(
    backbone=dict(
        quant=dict(
            _delete_=True,
            mode='ternary',
            weight=True,
            act=dict(type='LSQ', init_ratio=0.5))))
