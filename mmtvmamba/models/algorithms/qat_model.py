# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Quantization-aware training wrapper around any OpenMMLab model."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import load_checkpoint
from torch import Tensor, nn

from mmtvmamba.quantization import (CTRL_UNITS, VSSM_LAYERS, ActQuantizer,
                                    ctrl_loss)
from mmtvmamba.registry import MODELS

__all__ = ['QATModel']

STUDENT = 'architecture.'
TEACHER = 'teacher.'
_CTRL_KEYS = ('loss_weight', 'topk_ratio', 'layers', 'unit',
              'channel_ratio')


@MODELS.register_module()
class QATModel(BaseModel):
    """Quantization-aware training of an mmpretrain, mmdet or mmseg model.

    The wrapped model (the student) keeps its data preprocessor and its
    ``loss``, ``predict`` and ``tensor`` modes. In ``loss`` mode the
    wrapper adds its auxiliary losses to the student's loss dict, each under
    its own key, so ``BaseModel.parse_losses`` sums and logs them:

    - ``loss_ctrl``: the channel tail-risk loss (CTRL) over the activation
      quantizers of the layers in ``ctrl['layers']``,
      ``loss_weight * sum_c TopKMean_i(||x_hat_{c,i} - x_{c,i}||^2)``.

    An optional frozen full-precision teacher, built from a config and
    loaded from a checkpoint in :meth:`init_weights`, stays in eval mode
    without gradients.

    Checkpoints hold the student alone, under the student's own keys: the
    state dict drops the teacher and the ``architecture.`` prefix, so
    ``tools/test.py`` with the plain student config loads a checkpoint of a
    wrapped run. Loading accepts both forms.

    Args:
        architecture (dict): Config of the student model.
        ctrl (dict, optional): CTRL settings, or None to disable it.

            - ``loss_weight`` (float): Defaults to 1.0.
            - ``topk_ratio`` (float): Share of the largest errors averaged
              per channel, in (0, 1]. Defaults to 0.1.
            - ``layers`` (tuple[str]): Projections from ``VSSM_LAYERS``
              whose input quantizers count. Defaults to all.
            - ``unit`` (str): ``'token'`` takes each element as one
              example, as the CTRL formula does over the N tokens, so the
              loss does not grow with the image size. ``'image'`` takes
              each image of the batch as one example, its errors summed
              over the tokens. Defaults to ``'token'``.
            - ``channel_ratio`` (float): Share of the channels of each
              layer whose tail means a step computes, in (0, 1]. Below 1
              the loss is an unbiased random estimate, see
              :func:`~mmtvmamba.quantization.ctrl_loss`. Defaults to 1.0,
              the exact loss.

            Defaults to None.
        teacher (dict | str, optional): Config of the full-precision
            teacher, as a model dict or a config file whose ``model`` is
            used. Defaults to None.
        teacher_ckpt (str, optional): Checkpoint of the teacher, loaded in
            :meth:`init_weights`. Defaults to None.
        data_preprocessor (dict, optional): Data preprocessor given to the
            student when its config has none; ``Runner`` passes the
            top-level ``data_preprocessor`` of a config here.
            Defaults to None.
        init_cfg (dict, optional): Initialization of the wrapper.
            Defaults to None.
    """

    def __init__(self,
                 architecture: dict,
                 ctrl: Optional[dict] = None,
                 teacher: Optional[Union[dict, str]] = None,
                 teacher_ckpt: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(architecture, (dict, nn.Module)):
            raise TypeError(f'architecture must be a model config dict, got '
                            f'{type(architecture).__name__}')
        if isinstance(architecture, nn.Module):
            self.architecture = architecture
        else:
            architecture = dict(architecture)
            if data_preprocessor is not None:
                architecture.setdefault('data_preprocessor',
                                        data_preprocessor)
            self.architecture = MODELS.build(architecture)
        if not isinstance(self.architecture, BaseModel):
            raise TypeError(f'the student {type(self.architecture).__name__}'
                            ' is not an mmengine BaseModel')
        self.data_preprocessor = self.architecture.data_preprocessor
        self.ctrl = self._check_ctrl(ctrl)

        self.teacher_ckpt = teacher_ckpt
        self.teacher: Optional[BaseModel] = None
        if teacher is not None:
            if isinstance(teacher, str):
                teacher = Config.fromfile(teacher).model
            self.teacher = MODELS.build(teacher)
            self._freeze_teacher()
        elif teacher_ckpt is not None:
            raise ValueError('teacher_ckpt is set but teacher is None; give '
                             'the teacher config as well')

        self.register_state_dict_post_hook(_save_student_only)
        self.register_load_state_dict_pre_hook(_accept_student_keys)

    @staticmethod
    def _check_ctrl(ctrl: Optional[dict]) -> Optional[dict]:
        if ctrl is None:
            return None
        unknown = set(ctrl) - set(_CTRL_KEYS)
        if unknown:
            raise ValueError(f'unknown ctrl keys {sorted(unknown)}; valid '
                             f'keys are {list(_CTRL_KEYS)}')
        ctrl = {
            **dict(loss_weight=1.0, topk_ratio=0.1, layers=VSSM_LAYERS,
                   unit='token', channel_ratio=1.0),
            **ctrl
        }
        if not 0 < ctrl['topk_ratio'] <= 1:
            raise ValueError(f"ctrl topk_ratio={ctrl['topk_ratio']} must be "
                             'in (0, 1]')
        if not 0 < ctrl['channel_ratio'] <= 1:
            raise ValueError(f"ctrl channel_ratio={ctrl['channel_ratio']} "
                             'must be in (0, 1]; use 1.0 for the exact loss')
        if ctrl['unit'] not in CTRL_UNITS:
            raise ValueError(f"invalid ctrl unit {ctrl['unit']!r}; use one "
                             f'of {CTRL_UNITS}')
        bad = [name for name in ctrl['layers'] if name not in VSSM_LAYERS]
        if bad:
            raise ValueError(f'unknown ctrl layers {bad}; choose from '
                             f'{list(VSSM_LAYERS)}')
        ctrl['layers'] = tuple(ctrl['layers'])
        return ctrl

    def _freeze_teacher(self) -> None:
        self.teacher.eval()
        for param in self.teacher.parameters():
            param.requires_grad = False

    def init_weights(self) -> None:
        """Initialize the student, then load the teacher's checkpoint."""
        self.architecture.init_weights()
        if self.teacher is not None and self.teacher_ckpt is not None:
            load_checkpoint(
                self.teacher, self.teacher_ckpt, map_location='cpu',
                strict=True, logger='current')
            self._freeze_teacher()

    def train(self, mode: bool = True) -> 'QATModel':
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def ctrl_quantizers(self) -> List[ActQuantizer]:
        """Return the student's activation quantizers covered by CTRL."""
        if self.ctrl is None:
            return []
        return [
            module for module in self.architecture.modules()
            if isinstance(module, ActQuantizer)
            and module.layer in self.ctrl['layers']
        ]

    def forward(self,
                inputs: Union[Tensor, Sequence],
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """Run the student; in ``loss`` mode add the auxiliary losses.

        Args:
            inputs (Tensor | Sequence): Preprocessed inputs of the student.
            data_samples (list, optional): Data samples of the student's
                task. Defaults to None.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
                Defaults to ``'tensor'``.
        """
        if mode != 'loss':
            return self.architecture(inputs, data_samples, mode)
        quantizers = self.ctrl_quantizers()
        for quantizer in quantizers:
            quantizer.set_error_recording(True, self.ctrl['unit'])
        try:
            losses = self.architecture(inputs, data_samples, 'loss')
            losses.update(self._aux_losses(quantizers))
        finally:
            for quantizer in quantizers:
                quantizer.set_error_recording(False)
        return losses

    def _aux_losses(self, quantizers: List[ActQuantizer]) -> Dict[str, Tensor]:
        if self.ctrl is None:
            return {}
        errors = [q.pop_errors() for q in quantizers]
        errors = [e for e in errors if e is not None]
        loss = ctrl_loss(errors, self.ctrl['topk_ratio'],
                         self.ctrl['channel_ratio'])
        return dict(loss_ctrl=self.ctrl['loss_weight'] * loss)


def _save_student_only(module: QATModel, state_dict: dict, prefix: str,
                       local_metadata: dict) -> None:
    """Drop the teacher and the ``architecture.`` prefix from a state dict.

    The wrapper's own ``data_preprocessor`` is the student's, so both give
    the same key once the prefix is gone.
    """
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        if local.startswith(TEACHER):
            del state_dict[key]
        elif local.startswith(STUDENT):
            state_dict[prefix + local[len(STUDENT):]] = state_dict.pop(key)


def _accept_student_keys(module: QATModel, state_dict: dict, prefix: str,
                         *args) -> None:
    """Map plain student keys back under ``architecture.`` before loading.

    The teacher keeps its own weights: it is loaded from ``teacher_ckpt``,
    so checkpoints of the wrapper never hold it.
    """
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        if local.startswith((STUDENT, TEACHER)):
            continue
        if local.startswith('data_preprocessor.'):
            state_dict[prefix + STUDENT + local] = state_dict[key]
        else:
            state_dict[prefix + STUDENT + local] = state_dict.pop(key)
    if module.teacher is not None:
        for key, value in module.teacher.state_dict().items():
            state_dict.setdefault(prefix + TEACHER + key, value)
