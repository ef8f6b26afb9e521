# LSQ-Ternary fine-tuning of the mini VMamba: ternary weights, ternary
# activations with a learned per-channel scale and threshold ratio.
_base_ = './vmamba-mini_fp_hymenoptera.py'

model = dict(
    backbone=dict(
        quant=dict(
            _delete_=True,
            mode='ternary',
            weight=True,
            act=dict(type='LSQ', init_ratio=0.5))))
