# Full-precision baseline: fine-tune VMamba-T on ImageNet-1k for 100 epochs.
#
# The schedule of every method in this folder: 100 epochs from the official
# checkpoint with the three-stage learning rate (0.1x, 0.5x, then 1x the
# base rate in each third), otherwise the recipe of the FP model.
_base_ = '../tvmamba-t_8xb128_in1k.py'

max_epochs = 100
model = dict(backbone=dict(quant=dict(_delete_=True, mode='fp')))
param_scheduler = [
    dict(type='mmtvmamba.ThreeStageLR', by_epoch=True, begin=0,
         end=max_epochs, factors=(0.1, 0.5, 1.0))
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
