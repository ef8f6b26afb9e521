# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Loading full-precision checkpoints into quantized models, with a report
of every key that did not match."""
import logging
from typing import Callable, Dict, Optional

from mmengine.logging import print_log
from torch import Tensor, nn

from .checkpoint import load_checkpoint_file

__all__ = ['extract_state_dict', 'load_pretrained']

#: Substrings of parameter and buffer names that belong to quantizers, which
#: full-precision checkpoints do not contain.
QUANTIZER_KEYS = ('act_quant.', )


def extract_state_dict(checkpoint: dict, prefix: str = '') -> Dict[str, Tensor]:
    """Return the model weights of a checkpoint, without ``prefix``.

    Official VMamba and Vim checkpoints keep weights under ``'model'``,
    mmengine checkpoints under ``'state_dict'``; a bare state dict is
    returned as is.

    Args:
        checkpoint (dict): A loaded checkpoint.
        prefix (str): Keep only keys that start with it, and strip it, e.g.
            ``'backbone.'`` for a detector checkpoint. Defaults to ``''``.

    Raises:
        KeyError: If no key starts with ``prefix``.
    """
    if not isinstance(checkpoint, dict):
        raise TypeError(f'checkpoint must be a dict, got {type(checkpoint)}')
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
            break
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in checkpoint.items()}
    if not prefix:
        return state_dict
    selected = {k[len(prefix):]: v for k, v in state_dict.items()
                if k.startswith(prefix)}
    if not selected:
        raise KeyError(f'no key of the checkpoint starts with prefix '
                       f'{prefix!r}; first keys: {list(state_dict)[:5]}')
    return selected


def load_pretrained(module: nn.Module,
                    filename: str,
                    prefix: str = '',
                    map_keys: Optional[Callable[[dict], dict]] = None,
                    logger: str = 'current') -> dict:
    """Load a checkpoint into ``module`` and log every unmatched key.

    Keys of the module's quantizers, absent from full-precision checkpoints,
    are reported as one count; they keep their initial values and are set
    from data on the first training step. Any other missing or unexpected
    key is listed by name as a warning. Tensors whose shapes differ raise.

    Args:
        module (nn.Module): Model to load into.
        filename (str): Path of the checkpoint.
        prefix (str): Prefix to select and strip. Defaults to ``''``.
        map_keys (callable, optional): Renames keys of the state dict before
            loading. Defaults to None.
        logger (str): Logger name for :func:`print_log`.
            Defaults to ``'current'``.

    Returns:
        dict: ``missing``, ``quantizer_missing`` and ``unexpected`` key
        lists.
    """
    checkpoint = load_checkpoint_file(filename, map_location='cpu')
    state_dict = extract_state_dict(checkpoint, prefix)
    if map_keys is not None:
        state_dict = map_keys(state_dict)
    result = module.load_state_dict(state_dict, strict=False)

    quantizer_missing = [k for k in result.missing_keys
                         if any(q in k for q in QUANTIZER_KEYS)]
    missing = [k for k in result.missing_keys if k not in quantizer_missing]
    print_log(
        f'Loaded {len(state_dict) - len(result.unexpected_keys)} tensors '
        f'from {filename}', logger=logger)
    if quantizer_missing:
        print_log(
            f'{len(quantizer_missing)} quantizer tensors are not in the '
            'checkpoint; they start from defaults and scales are set from '
            'data on the first training step', logger=logger)
    if missing:
        print_log(f'missing keys in the checkpoint: {missing}',
                  logger=logger, level=logging.WARNING)
    if result.unexpected_keys:
        print_log(
            f'unexpected keys in the checkpoint, not loaded: '
            f'{result.unexpected_keys}', logger=logger, level=logging.WARNING)
    return dict(missing=missing, quantizer_missing=quantizer_missing,
                unexpected=list(result.unexpected_keys))
