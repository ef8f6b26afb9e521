# Slender-Mamba* baseline on VMamba-T: ternary weights, and ternary
# activations scaled by each token's absolute maximum (no learned scale).
_base_ = './vmamba-t_fp_8xb128-100e_in1k.py'

model = dict(
    backbone=dict(
        quant=dict(
            _delete_=True,
            mode='ternary',
            weight=True,
            act=dict(type='Slender', scale='absmax'))))
