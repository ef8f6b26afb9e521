# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Fixtures shared by the op tests: kernel paths and thread counts."""
import pytest
import torch

import mmtvmamba.ops as ops


def _skip_without_extension():
    if not ops.extension_available():
        pytest.skip('mmtvmamba._ext is not built')


@pytest.fixture(params=['avx512', 'avx2', 'portable'])
def isa(request):
    """Select each matmul and pack path this CPU supports, then restore
    'auto'."""
    _skip_without_extension()
    if request.param not in ops.available_isas():
        pytest.skip(f'this CPU does not support the {request.param} path')
    assert ops.set_isa(request.param) == request.param
    yield request.param
    ops.set_isa('auto')


@pytest.fixture(params=['avx512', 'portable'])
def scan_isa(request):
    """Select each selective scan path this CPU supports, then restore
    'auto'."""
    _skip_without_extension()
    if request.param not in ops.available_scan_isas():
        pytest.skip(f'this CPU does not support the {request.param} path')
    assert ops.set_scan_isa(request.param) == request.param
    yield request.param
    ops.set_scan_isa('auto')


@pytest.fixture(params=[1, 2])
def threads(request):
    """Run the test with 1 and with 2 torch threads, then restore the
    previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)
