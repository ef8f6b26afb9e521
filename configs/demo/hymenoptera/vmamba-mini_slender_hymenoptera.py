# Slender-Mamba* fine-tuning of the mini VMamba: ternary weights, ternary
# activations scaled by each token's absolute maximum.
_base_ = './vmamba-mini_fp_hymenoptera.py'

model = dict(
    backbone=dict(
        quant=dict(
            _delete_=True,
            mode='ternary',
            weight=True,
            act=dict(type='Slender', scale='absmax'))))
