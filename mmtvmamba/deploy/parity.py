# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Parity of a deployed model against its fake-quantized original."""
from dataclasses import dataclass
from typing import Iterable, List

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
            output tensors, with ``a`` the fake-quantized output.
        agreed (int): Predictions that agree: positions whose argmax over
            the class axis (axis 1) is the same, e.g. one per image for
            classification logits.
        predictions (int): Predictions compared.
    """

    images: int
    max_rel_diff: float
    agreed: int
    predictions: int

    @property
    def all_agree(self) -> bool:
        """Whether every compared prediction agrees."""
        return self.agreed == self.predictions

    def summary(self) -> str:
        """Return a one-line summary for logs."""
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
    for batch in dataloader:
        data = reference.data_preprocessor(batch, False)
        outputs = [
            _flatten(model(data['inputs'], data.get('data_samples'),
                           mode='tensor')) for model in (reference, deployed)
        ]
        for ref, dep in zip(*outputs):
            rel_diff, same, count = _compare(ref, dep)
            worst = max(worst, rel_diff)
            agreed += same
            predictions += count
        images += len(data['inputs'])
        print_log(f'parity: {images} images compared', logger='current')
        if images >= max_images:
            break
    if images == 0:
        raise ValueError('the dataloader gave no images to compare')
    return ParityReport(images, worst, agreed, predictions)
