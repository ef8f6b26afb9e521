# Copyright (c) mmtvmamba contributors. All rights reserved.
import pytest
import torch

from mmtvmamba.models.layers import cross_merge, cross_scan


@pytest.mark.parametrize('height, width', [(1, 1), (3, 5), (4, 4), (7, 2)])
def test_cross_scan_orders(height, width):
    x = torch.arange(height * width, dtype=torch.float32).view(
        1, 1, height, width)
    xs = cross_scan(x)
    assert xs.shape == (1, 4, 1, height * width)
    assert xs[0, 0, 0].tolist() == x.flatten().tolist()
    column_major = x[0, 0].t().flatten()
    assert xs[0, 1, 0].tolist() == column_major.tolist()
    assert xs[0, 2, 0].tolist() == x.flatten().flip(0).tolist()
    assert xs[0, 3, 0].tolist() == column_major.flip(0).tolist()


@pytest.mark.parametrize('height, width', [(3, 5), (6, 6), (1, 9)])
def test_cross_merge_inverts_scan(height, width):
    x = torch.randn(2, 3, height, width)
    merged = cross_merge(cross_scan(x), height, width)
    torch.testing.assert_close(merged, 4 * x.flatten(2))


def test_cross_merge_is_adjoint_of_scan():
    # <scan(x), y> == <x, merge(y)> for all x, y: merge is the transpose.
    x = torch.randn(1, 2, 3, 4)
    ys = torch.randn(1, 4, 2, 12)
    lhs = (cross_scan(x) * ys).sum()
    rhs = (x.flatten(2) * cross_merge(ys, 3, 4)).sum()
    torch.testing.assert_close(lhs, rhs)
