# Copyright (c) mmtvmamba contributors. All rights reserved.
"""The four-direction cross scan of SS2D and its inverse merge."""
import torch
from torch import Tensor

__all__ = ['cross_scan', 'cross_merge']


def cross_scan(x: Tensor) -> Tensor:
    """Unfold a feature map into four scan orders.

    Args:
        x (Tensor): Feature map of shape (B, C, H, W).

    Returns:
        Tensor: Shape (B, 4, C, H * W). Direction 0 is row-major, 1 is
        column-major, 2 and 3 are 0 and 1 reversed.
    """
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def cross_merge(ys: Tensor, height: int, width: int) -> Tensor:
    """Sum the four scan outputs back on the row-major grid.

    Args:
        ys (Tensor): Scan outputs of shape (B, 4, C, H * W), in the orders
            of :func:`cross_scan`.
        height (int): H of the feature map.
        width (int): W of the feature map.

    Returns:
        Tensor: Shape (B, C, H * W), row-major.
    """
    rows = ys[:, 0] + ys[:, 2].flip(-1)
    cols = ys[:, 1] + ys[:, 3].flip(-1)
    cols = cols.unflatten(-1, (width, height)).transpose(-1, -2).flatten(-2)
    return rows + cols

