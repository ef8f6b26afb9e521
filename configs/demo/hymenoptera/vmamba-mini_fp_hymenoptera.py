# Full-precision fine-tuning of the mini VMamba pre-trained by
# vmamba-mini_fp-pretrain_hymenoptera.py: the FP row of the comparison.
#
# Every method in this folder fine-tunes from that checkpoint for the same
# number of epochs with the three-stage learning rate (0.1x, 0.5x, 1x).
# Pass the checkpoint with `--cfg-options load_from=PATH`.
_base_ = './vmamba-mini_fp-pretrain_hymenoptera.py'

max_epochs = 6
load_from = 'work_dirs/vmamba-mini_fp-pretrain_hymenoptera/epoch_20.pth'
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='mmtvmamba.ThreeStageLR', by_epoch=True, begin=0,
         end=max_epochs, factors=(0.1, 0.5, 1.0))
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
