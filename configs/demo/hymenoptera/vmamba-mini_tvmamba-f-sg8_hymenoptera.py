# TVMamba-F fine-tuning of the mini VMamba with Q2T scales shared by at
# most 8 channel groups per projection, so the deployed model computes the
# trained function exactly.
_base_ = './vmamba-mini_tvmamba-f_hymenoptera.py'

model = dict(
    architecture=dict(
        backbone=dict(
            quant=dict(act=dict(scale_groups=8)))))
