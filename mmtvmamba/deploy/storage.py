# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Storage of a model in float32 and in its deployed form."""
from dataclasses import dataclass

from torch import nn

from mmtvmamba.quantization.base import ActQuantizer
from .linear import projection_buffer_ids

__all__ = ['StorageReport', 'float_model_bytes', 'measure_storage']

MIB = 2**20


def float_model_bytes(model: nn.Module) -> int:
    """Return the float32 size of the model's parameters in bytes.

    Activation quantizer parameters are left out, because the
    full-precision model does not have them.
    """
    skipped = {
        id(param)
        for module in model.modules() if isinstance(module, ActQuantizer)
        for param in module.parameters()
    }
    return 4 * sum(param.numel() for param in model.parameters()
                   if id(param) not in skipped)


@dataclass
class StorageReport:
    """Sizes in bytes of one model in two forms.

    Attributes:
        float32 (int): Parameters of the full-precision model in float32.
        deploy_file (int): The deploy checkpoint on disk.
        packed (int): Packed ternary weights inside the deploy state dict.
        layout (int): Channel orders and scales of the deployed
            projections.
        other (int): Every other tensor of the deploy state dict.
    """

    float32: int
    deploy_file: int
    packed: int
    layout: int
    other: int

    def table(self, name: str = 'model') -> str:
        """Return a Markdown table in MB (2^20 bytes), the unit of the
        storage columns of the TVMamba paper."""
        ratio = self.float32 / self.deploy_file
        rows = [
            '| model | form | storage (MB) | compression |',
            '| --- | --- | --- | --- |',
            f'| {name} | full precision (float32) | '
            f'{self.float32 / MIB:.1f} | 1.00x |',
            f'| {name} | deploy checkpoint | {self.deploy_file / MIB:.1f} | '
            f'{ratio:.2f}x |',
            '',
            f'deploy checkpoint contents: packed ternary weights '
            f'{self.packed / MIB:.2f} MB, channel layouts and scales '
            f'{self.layout / MIB:.2f} MB, other tensors '
            f'{self.other / MIB:.2f} MB',
        ]
        return '\n'.join(rows)


def measure_storage(float_model: nn.Module, deployed: nn.Module,
                    state_dict: dict, file_bytes: int) -> StorageReport:
    """Break down the deploy state dict and compare it with the float model.

    Args:
        float_model (nn.Module): The model before conversion.
        deployed (nn.Module): The converted model.
        state_dict (dict): The state dict that was saved.
        file_bytes (int): Size of the saved file.
    """
    packed_ids, layout_ids = projection_buffer_ids(deployed)
    live = deployed.state_dict(keep_vars=True)
    packed = layout = other = 0
    for key, value in state_dict.items():
        size = value.numel() * value.element_size()
        source = id(live.get(key))
        if source in packed_ids:
            packed += size
        elif source in layout_ids:
            layout += size
        else:
            other += size
    return StorageReport(
        float_model_bytes(float_model), file_bytes, packed, layout, other)
