# Copyright (c) mmtvmamba contributors. All rights reserved.
from .checkpoint import (UnsafeCheckpointError, checkpoint_safe_globals,
                         load_checkpoint_file, register_checkpoint_loader)
from .data_paths import check_data_paths, find_missing_data_paths
from .pretrained import extract_state_dict, load_pretrained

__all__ = [
    'UnsafeCheckpointError', 'checkpoint_safe_globals', 'load_checkpoint_file',
    'register_checkpoint_loader', 'extract_state_dict', 'load_pretrained',
    'check_data_paths', 'find_missing_data_paths'
]
