# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Conversion of a trained model to its deployed form, and deploy
checkpoints."""
import os
import os.path as osp
import tempfile
from typing import Optional

import torch
from mmengine.logging import print_log
from torch import nn

from mmtvmamba.models.layers import SS2D
from mmtvmamba.models.layers.vss_block import VSSBlock
from mmtvmamba.quantization import Q2TQuantizer, TernaryLinear2d
from mmtvmamba.utils.checkpoint import load_checkpoint_file
from .block import fuse_vss_block
from .linear import (DeployLinear2d, DeployTernaryLinear,
                     projection_buffer_ids)
from .ss2d import DeploySS2D

__all__ = [
    'DEPLOY_META_KEY', 'DEPLOY_RADIUS', 'convert_to_deploy',
    'deploy_state_dict', 'save_deploy_checkpoint', 'read_deploy_meta',
    'count_deploy_projections'
]

#: Key of the conversion options in the ``meta`` of a deploy checkpoint.
DEPLOY_META_KEY = 'mmtvmamba_deploy'

#: Activation radius of each deploy variant: TVMamba-T forces ternary codes,
#: TVMamba-F keeps the five-level channels chosen in training.
DEPLOY_RADIUS = {'ternary': 1, 'five_level': None}

FLOAT_DTYPES = {'float32': torch.float32, 'float16': torch.float16}


def _check_options(variant: str, alpha_groups: Optional[int]) -> None:
    if variant not in DEPLOY_RADIUS:
        raise ValueError(f'invalid deploy variant {variant!r}; use '
                         "'ternary' (TVMamba-T) or 'five_level' (TVMamba-F)")
    if alpha_groups is not None and (not isinstance(alpha_groups, int)
                                     or alpha_groups < 1):
        raise ValueError(f'alpha_groups={alpha_groups!r} must be a positive '
                         'int, or None for one scale group per channel')


def _check_quantizers(model: nn.Module) -> None:
    for name, module in model.named_modules():
        act_quant = getattr(module, 'act_quant', None)
        if isinstance(module, TernaryLinear2d) and act_quant is not None:
            if not isinstance(act_quant, Q2TQuantizer):
                raise TypeError(
                    f'{name} uses {type(act_quant).__name__} activations; '
                    'deploy conversion supports Q2T-trained models only')
            if not module.quant.weight:
                raise ValueError(f'{name} keeps float weights; deploy '
                                 'conversion needs ternary weights')


def convert_to_deploy(model: nn.Module,
                      variant: str = 'ternary',
                      alpha_groups: Optional[int] = 8,
                      fuse: bool = True) -> int:
    """Replace the fake-quantized projections of ``model`` in place.

    Every quantized :class:`SS2D` becomes a :class:`DeploySS2D` and every
    other quantized :class:`TernaryLinear2d` a :class:`DeployLinear2d`.
    Float layers, and models or teachers without quantization, are left
    unchanged. Call it after loading the trained weights; the model is
    switched to eval mode, the only mode of a deployed model.

    Args:
        model (nn.Module): Model to convert, e.g. an mmpretrain classifier.
        variant (str): ``'ternary'`` (TVMamba-T) or ``'five_level'``
            (TVMamba-F). Defaults to ``'ternary'``.
        alpha_groups (int, optional): Channel scale groups per projection
            part; None for one group per channel, which reproduces the
            fake-quantized model up to float rounding. Defaults to 8.
        fuse (bool): Move the LayerNorms and GELUs of every
            :class:`VSSBlock` into its deployed projections (see
            :func:`fuse_vss_block`). The fused LayerNorm rounds differently
            from :func:`torch.nn.functional.layer_norm` in the last bits,
            which can flip a code that lies on a rounding boundary.
            Defaults to True.

    Returns:
        int: The number of deployed projections.
    """
    _check_options(variant, alpha_groups)
    _check_quantizers(model)
    model.eval()
    options = dict(alpha_groups=alpha_groups, radius=DEPLOY_RADIUS[variant])
    _replace_children(model, options)
    if fuse:
        _fuse_blocks(model)
    return count_deploy_projections(model)


def _replace_children(parent: nn.Module, options: dict) -> None:
    for name, child in parent.named_children():
        if isinstance(child, SS2D) and child.quant is not None:
            setattr(parent, name, DeploySS2D(child, **options))
        elif (isinstance(child, TernaryLinear2d)
              and child.act_quant is not None):
            setattr(parent, name, DeployLinear2d.from_linear(child, **options))
        else:
            _replace_children(child, options)


def _fuse_blocks(parent: nn.Module) -> None:
    for name, child in parent.named_children():
        if isinstance(child, VSSBlock):
            setattr(parent, name, fuse_vss_block(child))
        else:
            _fuse_blocks(child)


def count_deploy_projections(model: nn.Module) -> int:
    """Return how many :class:`DeployTernaryLinear` modules ``model`` has."""
    return sum(
        isinstance(module, DeployTernaryLinear) for module in model.modules())


def deploy_state_dict(model: nn.Module, float_dtype: str = 'float32') -> dict:
    """Return the state dict of a deployed model for saving.

    Args:
        model (nn.Module): A model converted by :func:`convert_to_deploy`.
        float_dtype (str): ``'float32'`` or ``'float16'`` for the float
            parameters outside the deployed projections. The projections'
            scales stay float32, because rounding them would change the
            activation codes, and packed weights and indices keep their
            integer types. Defaults to ``'float32'``.
    """
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f'invalid float_dtype {float_dtype!r}; use one of '
                         f'{list(FLOAT_DTYPES)}')
    dtype = FLOAT_DTYPES[float_dtype]
    packed, layout = projection_buffer_ids(model)
    exact = packed | layout
    state = {}
    for key, value in model.state_dict(keep_vars=True).items():
        keep = id(value) in exact
        value = value.detach().cpu()
        if value.is_floating_point() and not keep:
            value = value.to(dtype)
        state[key] = value.clone()
    return state


def save_deploy_checkpoint(model: nn.Module,
                           path: str,
                           variant: str,
                           alpha_groups: Optional[int],
                           float_dtype: str = 'float32',
                           extra_meta: Optional[dict] = None,
                           fuse: bool = True) -> int:
    """Write a deploy checkpoint atomically and return its size in bytes.

    The file contains ``state_dict`` and ``meta``; ``meta[DEPLOY_META_KEY]``
    records the conversion options so loaders can rebuild the structure.
    It is written to a temporary file in the same directory and renamed,
    so an interrupted save never leaves a partial checkpoint at ``path``.

    Args:
        model (nn.Module): A model converted by :func:`convert_to_deploy`.
        path (str): Output file.
        variant (str): The variant used for the conversion.
        alpha_groups (int, optional): The scale groups used.
        float_dtype (str): Type of the floating tensors on disk.
            Defaults to ``'float32'``.
        extra_meta (dict, optional): More ``meta`` entries, e.g. the
            dataset meta of the trained checkpoint. Defaults to None.
        fuse (bool): Whether the conversion fused the blocks.
            Defaults to True.
    """
    if count_deploy_projections(model) == 0:
        raise ValueError('the model has no deployed projections; convert it '
                         'with convert_to_deploy first')
    meta = dict(extra_meta or {})
    meta[DEPLOY_META_KEY] = dict(
        variant=variant,
        alpha_groups=alpha_groups,
        float_dtype=float_dtype,
        fuse=fuse)
    checkpoint = dict(
        state_dict=deploy_state_dict(model, float_dtype), meta=meta)

    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(suffix='.tmp', dir=directory)
    try:
        with os.fdopen(handle, 'wb') as file:
            torch.save(checkpoint, file)
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise
    size = osp.getsize(path)
    print_log(f'wrote deploy checkpoint {path} ({size / 2**20:.2f} MiB)',
              logger='current')
    return size


def read_deploy_meta(path: str) -> Optional[dict]:
    """Return the conversion options stored in checkpoint ``path``, or None
    if it is not a deploy checkpoint."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    checkpoint = load_checkpoint_file(path, map_location='cpu')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return None
    return meta.get(DEPLOY_META_KEY)
