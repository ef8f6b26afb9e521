# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Plot the training losses that mmengine logged for a run.

Reads ``vis_data/scalars.json`` (one JSON object per logged iteration,
written by mmengine's LocalVisBackend) and draws every key that contains
``loss`` against the iteration.

Example:
    python tools/analysis/plot_training_curves.py \\
        work_dirs/demo_mask-rcnn_tvmamba-t_coco128 --out docs/images/loss.png
"""
import argparse
import glob
import json
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def find_scalars(path: str) -> str:
    """Return the newest ``scalars.json`` at or below ``path``."""
    if osp.isfile(path):
        return path
    found = glob.glob(osp.join(path, '**', 'vis_data', 'scalars.json'),
                      recursive=True)
    if not found:
        raise FileNotFoundError(f'no vis_data/scalars.json under {path}; '
                                'pass a work dir of a finished run')
    return max(found, key=osp.getmtime)


def read_losses(scalars_file: str) -> Dict[str, List[Tuple[int, float]]]:
    """Return ``{loss name: [(iteration, value), ...]}`` of a run."""
    series = defaultdict(list)
    with open(scalars_file) as f:
        for line in f:
            record = json.loads(line)
            if 'loss' not in record or 'iter' not in record:
                continue
            for key, value in record.items():
                if 'loss' in key:
                    series[key].append((record['iter'], value))
    if not series:
        raise ValueError(f'{scalars_file} contains no training losses')
    return dict(series)


def plot_losses(series: Dict[str, List[Tuple[int, float]]], out: str,
                title: str) -> None:
    """Draw the total loss and its parts on one axis and save to ``out``."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for name, points in sorted(series.items()):
        iters, values = zip(*points)
        ax.plot(iters, values, label=name, linewidth=2.5 if name == 'loss'
                else 1.2)
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('path', help='work dir of a run or a scalars.json')
    parser.add_argument('--out', required=True, help='output image (.png)')
    parser.add_argument('--title', default='training losses',
                        help='title of the plot')
    args = parser.parse_args()
    scalars_file = find_scalars(args.path)
    plot_losses(read_losses(scalars_file), args.out, args.title)
    print(f'plotted {scalars_file} to {args.out}')


if __name__ == '__main__':
    main()
