# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Deployment of trained TVMamba models on the bitwise ternary op."""
from .convert import (DEPLOY_META_KEY, DEPLOY_RADIUS,
                      count_deploy_projections, convert_to_deploy,
                      deploy_state_dict, read_deploy_meta,
                      save_deploy_checkpoint)
from .block import FusedVSSBlock, fuse_vss_block
from .layout import PartLayout, build_part_layout, split_groups
from .linear import (DeployLinear2d, DeployTernaryLinear, FusedNorm,
                     TernaryPart)
from .parity import ParityReport, check_parity
from .ss2d import DeploySS2D
from .storage import StorageReport, float_model_bytes, measure_storage

__all__ = [
    'DEPLOY_META_KEY', 'DEPLOY_RADIUS', 'DeployLinear2d', 'DeploySS2D',
    'DeployTernaryLinear', 'FusedNorm', 'FusedVSSBlock', 'ParityReport',
    'PartLayout', 'StorageReport', 'TernaryPart', 'build_part_layout',
    'check_parity', 'convert_to_deploy', 'count_deploy_projections',
    'deploy_state_dict', 'float_model_bytes', 'fuse_vss_block',
    'measure_storage', 'read_deploy_meta', 'save_deploy_checkpoint',
    'split_groups'
]
