# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Weights-only checkpoint loading that still reads mmengine and official
VMamba / Vim checkpoints on torch >= 2.6.

``torch.load`` defaults to ``weights_only=True`` since torch 2.6, which
rejects any pickled object that is not a tensor or a plain container.
mmengine 0.10.7 checkpoints also hold numpy scalars and arrays and the
message hub's ``HistoryBuffer``; official VMamba checkpoints pickle a yacs
``CfgNode`` and Vim checkpoints an ``argparse.Namespace``. This module
allow-lists exactly those types (a ``CfgNode`` is read back as an
``OrderedDict``, so yacs need not be installed) and keeps loading
weights-only: a checkpoint that pickles anything else is rejected with
:class:`UnsafeCheckpointError` and nothing in it runs.

Importing :mod:`mmtvmamba` registers :func:`load_checkpoint_file` as
mmengine's loader for local paths, so ``Runner.resume``,
``load_checkpoint`` and ``init_cfg=dict(type='Pretrained')`` use it.
"""
import argparse
import os
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Any, Callable, List, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

__all__ = [
    'UnsafeCheckpointError', 'checkpoint_safe_globals', 'load_checkpoint_file',
    'register_checkpoint_loader'
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """Raised when a checkpoint pickles a type outside the allow-list."""


def _numpy_globals() -> List[Any]:
    """Return the numpy types that mmengine checkpoints pickle."""
    dtype_classes = [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
        'uint32', 'uint64', 'float16', 'float32', 'float64')]
    multiarray = np.core.multiarray if np.__version__ < '2' else \
        np._core.multiarray
    entries = [np.dtype, np.ndarray, multiarray.scalar,
               multiarray._reconstruct] + dtype_classes
    # Files written with numpy 1.x name the module numpy.core, numpy 2.x
    # writes numpy._core; accept both spellings.
    aliases = []
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        aliases += [(multiarray.scalar, f'{module}.scalar'),
                    (multiarray._reconstruct, f'{module}._reconstruct')]
    return entries + aliases


# HistoryBuffer registers these in a class dict only when an instance is
# created, so the names are listed here instead of read from that dict.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner: Any, name: str) -> Callable:
    """Stand in for ``getattr`` while unpickling, for one use only.

    mmengine's message hub pickles ``HistoryBuffer``'s statistics methods
    (``min``, ``max``, ``mean``, ``current``) as ``getattr(HistoryBuffer,
    name)``. Any other attribute lookup is rejected.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


def checkpoint_safe_globals() -> List[Union[Callable, tuple]]:
    """Return the allow-list passed to ``torch.serialization.safe_globals``.
    """
    return _numpy_globals() + [
        HistoryBuffer,
        argparse.Namespace,
        (OrderedDict, 'yacs.config.CfgNode'),
        (_history_buffer_method, 'builtins.getattr'),
    ]


def load_checkpoint_file(filename: str, map_location=None) -> Any:
    """Load a local checkpoint weights-only with the allow-listed types.

    Args:
        filename (str): Path of the checkpoint.
        map_location: As in :func:`torch.load`. Defaults to None.

    Raises:
        FileNotFoundError: If ``filename`` is not a file.
        UnsafeCheckpointError: If the file pickles a type outside
            :func:`checkpoint_safe_globals`.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} is not a file; check '
                                'the path')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f'rejected checkpoint {filename}: it pickles an object type that '
            'is not allow-listed, and weights-only loading never runs such '
            f'code. Detail: {_first_line(error)}. If you trust the file, '
            'convert it once with torch.load(..., weights_only=False) and '
            'save only its tensors and plain containers.') from None


def _first_line(error: Exception) -> str:
    """Return the line of torch's message that names the rejected object."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if 'Unsupported global' in line:
            return line
        if line.endswith('WeightsUnpickler error:') and index + 1 < len(lines):
            return lines[index + 1]
    return lines[-1] if lines else type(error).__name__


def register_checkpoint_loader() -> None:
    """Make :func:`load_checkpoint_file` mmengine's loader for local files.
    """

    # mmengine logs the loader's name after its first 10 characters, so the
    # function keeps mmengine's own name: 'load_from_local' logs 'local'.
    def load_from_local(filename, map_location=None):
        return load_checkpoint_file(filename, map_location)

    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)


if os.getenv('MMTVMAMBA_KEEP_TORCH_LOAD', '0') != '1':
    register_checkpoint_loader()
