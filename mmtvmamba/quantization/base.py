# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Common part of the activation quantizers: layer name and CTRL record."""
from typing import Optional

import torch
from torch import Tensor, nn

from .losses import CTRL_UNITS, channel_errors

__all__ = ['ActQuantizer']


class ActQuantizer(nn.Module):
    """Base of the activation quantizers of linear projections.

    Subclasses quantize inputs of ``num_channels`` channels on axis ``dim``
    and call :meth:`record_error` with their input and output. While
    ``record_errors`` is True and the module is training, the per-channel,
    per-example squared quantization errors of the last forward are kept
    in ``errors`` (with their graph) for the CTRL.

    Args:
        num_channels (int): Number of channels C.
        dim (int): Channel axis of the inputs.
        layer (str): Name of the quantized projection, e.g. ``'in_proj'``.
            Defaults to ``''``.
    """

    def __init__(self, num_channels: int, dim: int, layer: str = '') -> None:
        super().__init__()
        if num_channels <= 0:
            raise ValueError(f'num_channels={num_channels} must be positive')
        self.num_channels = num_channels
        self.dim = dim
        self.layer = layer
        self.record_errors = False
        self.error_unit = 'image'
        self.errors: Optional[Tensor] = None

    def set_error_recording(self, enabled: bool, unit: str = 'image') -> None:
        """Switch the CTRL error record on or off and drop the last one.

        Args:
            enabled (bool): Keep the errors of the next training forwards.
            unit (str): Example unit of the errors, see
                :data:`~mmtvmamba.quantization.losses.CTRL_UNITS`.
                Defaults to ``'image'``.
        """
        if unit not in CTRL_UNITS:
            raise ValueError(f'invalid CTRL unit {unit!r}; use one of '
                             f'{CTRL_UNITS}')
        self.record_errors = enabled
        self.error_unit = unit
        self.errors = None

    def pop_errors(self) -> Optional[Tensor]:
        """Return the recorded (C, N) errors and clear the record."""
        errors, self.errors = self.errors, None
        return errors

    def record_error(self, x_hat: Tensor, x: Tensor) -> None:
        """Keep the errors of ``x_hat`` against ``x`` when recording."""
        if not (self.training and self.record_errors):
            return
        errors = channel_errors(x_hat, x, self.dim, self.error_unit)
        # A module called twice in one step (weight sharing) adds up.
        if self.errors is not None:
            errors = torch.cat([self.errors, errors], dim=1)
        self.errors = errors

    def check_channels(self, x: Tensor) -> None:
        """Raise if ``x`` does not have ``num_channels`` on axis ``dim``."""
        if x.dim() < 2 or x.shape[self.dim] != self.num_channels:
            raise ValueError(
                f'input of shape {tuple(x.shape)} does not have '
                f'{self.num_channels} channels on axis {self.dim}, as the '
                f'{type(self).__name__} of layer {self.layer!r} expects')

