# Copyright (c) mmtvmamba contributors. All rights reserved.
from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .selective_scan import (get_scan_impl, linear_recurrence, scan_impl,
                             selective_scan, selective_scan_chunked,
                             selective_scan_ref)

__all__ = [
    'selective_scan', 'selective_scan_ref', 'selective_scan_chunked',
    'linear_recurrence', 'scan_impl', 'get_scan_impl'
]
