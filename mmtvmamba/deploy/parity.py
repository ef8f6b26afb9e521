# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Parity of a deployed model against its fake-quantized original."""
from dataclasses import dataclass
from typing import Iterable, List, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

__all__ = ['ParityReport', 'check_parity']


@dataclass
class ParityReport:
    """Agreement of two models on the same inputs.

    Attributes:
        images (int): Images compared.
        max_rel_diff (float): Largest ``max|a - b| / max|a|`` over the
            compared tensors, with ``a`` the fake-quantized output.
        agreed (int): Predictions that agree: positions whose argmax over
            the class axis (axis 1) is the same, e.g. one per image for
            classification logits or one per pixel for segmentation
            logits.
        predictions (int): Predictions compared; 0 when the models' outputs
            are per proposal and the features were compared instead.
        compared (str): ``'outputs'`` or ``'features'``.
    """

    images: int
    max_rel_diff: float
    agreed: int
    predictions: int
    compared: str = 'outputs'

    @property
    def all_agree(self) -> bool:
        """Whether every compared prediction agrees."""
        return self.agreed == self.predictions

    def summary(self) -> str:
        """Return a one-line summary for logs."""
        if self.compared == 'features':
            return (f'parity on {self.images} images: max relative '
                    f'difference of the backbone and neck features '
                    f'{self.max_rel_diff:.3e}; the head outputs are per '
                    'proposal, so compare predictions with tools/test.py')
        return (f'parity on {self.images} images: max relative difference '
                f'{self.max_rel_diff:.3e}, predictions agree '
                f'{self.agreed}/{self.predictions}')


def _flatten(outputs) -> List[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [t for item in outputs for t in _flatten(item)]
    return []


def _tensors(model: nn.Module, data: dict) -> Tuple[List[Tensor], str]:
    """Return the tensors to compare and what they are.

    Outputs with one row per image (class logits, segmentation logits) are
    compared position by position. A detector's ``'tensor'`` outputs are
    per proposal, and a tiny change of the features reorders the
    proposals, so for them the backbone and neck features are compared.
    """
    inputs = data['inputs']
    outputs = _flatten(
        model(inputs, data.get('data_samples'), mode='tensor'))
    if outputs and all(t.dim() >= 2 and len(t) == len(inputs)
                       for t in outputs):
        return outputs, 'outputs'
    # A QAT wrapper keeps the detector as its ``architecture``.
    detector = getattr(model, 'architecture', model)
    if not hasattr(detector, 'extract_feat'):
        raise TypeError(
            f'cannot compare {type(detector).__name__}: its outputs are '
            'not one row per image and it has no extract_feat method')
    return _flatten(detector.extract_feat(inputs)), 'features'


def _compare(reference: Tensor, deployed: Tensor) -> tuple:
    reference, deployed = reference.float(), deployed.float()
    scale = reference.abs().max().clamp(min=1e-12)
    rel_diff = ((reference - deployed).abs().max() / scale).item()
    if reference.dim() < 2:
        return rel_diff, 0, 0
    same = reference.argmax(1) == deployed.argmax(1)
    return rel_diff, int(same.sum()), same.numel()


@torch.no_grad()
def check_parity(reference: nn.Module,
                 deployed: nn.Module,
                 dataloader: Iterable,
                 max_images: int = 64) -> ParityReport:
    """Run both models in ``'tensor'`` mode on real images and compare.

    Args:
        reference (nn.Module): Fake-quantized OpenMMLab model in eval mode.
        deployed (nn.Module): Its deployed copy in eval mode.
        dataloader (Iterable): Batches in the models' data format, e.g. a
            test dataloader.
        max_images (int): Stop after this many images. Defaults to 64.

    Returns:
        ParityReport: The comparison.
    """
    if max_images < 1:
        raise ValueError(f'max_images={max_images} must be at least 1')
    images, worst, agreed, predictions = 0, 0.0, 0, 0
    compared = 'outputs'
    for batch in dataloader:
        data = reference.data_preprocessor(batch, False)
        ref_tensors, compared = _tensors(reference, data)
        dep_tensors, _ = _tensors(deployed, data)
        for ref, dep in zip(ref_tensors, dep_tensors):
            rel_diff, same, count = _compare(ref, dep)
            worst = max(worst, rel_diff)
            if compared == 'outputs':
                agreed += same
                predictions += count
        images += len(data['inputs'])
        print_log(f'parity: {images} images compared', logger='current')
        if images >= max_images:
            break
    if images == 0:
        raise ValueError('the dataloader gave no images to compare')
    return ParityReport(images, worst, agreed, predictions, compared)
