# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Time a deployed VMamba classifier against its full-precision model.

Both models are mmpretrain ImageClassifiers with the same backbone weights
and a 1000-class head. No official checkpoint is downloaded, so the
weights are random. The Q2T scales are initialized from real photos, as
on the first training step, so the activation codes follow real image
statistics. By default each Q2T quantizer shares its scales within at most
8 channel groups (``--scale-groups``), as a model trained for exact
deployment does; ``--scale-groups none`` gives every channel its own
scale, which the deployed model approximates. The script prints, for each
batch size, the median milliseconds per image over the repeats of

- the full-precision model (``fp32``);
- the fake-quantized model (``fake-quant``), the function that the
  deployed models compute;
- one deployed model per ``--alpha-groups`` value (``deploy-gN``), whose
  projections run on the bitwise op with N scale groups each;

then the speed-up of each deployed model, how many of its top-1
predictions on real photos equal those of the fake-quantized model, and
the storage of the last deployed model beside float32. When the selective
scan has more than one CPU implementation, every model is timed with each
(``--scan-impls``), so the speed-up of the projections is not mixed up with
the speed-up of the scan.

Example::

    python tools/benchmark/benchmark_deploy.py --arch tiny --threads 2
"""
import argparse
import copy
import importlib
import os
import os.path as osp
import statistics
import tempfile
import time
from contextlib import nullcontext
from typing import Dict, List, Optional

import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS, init_default_scope
from mmpretrain.structures import DataSample

import mmtvmamba  # noqa: F401
from mmtvmamba.deploy import (convert_to_deploy, deploy_state_dict,
                              measure_storage, save_deploy_checkpoint)

# The package re-exports the function selective_scan under the module's
# name, so the module is looked up explicitly.
scan_module = importlib.import_module('mmtvmamba.models.selective_scan')

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
PHOTOS = osp.join(ROOT, '..', 'shared', 'data', 'hymenoptera', 'val')


def build_quant(scale_groups: Optional[int]) -> dict:
    """Return the ``quant`` option of the fake-quantized backbone."""
    return dict(
        mode='ternary',
        weight=True,
        act=dict(type='Q2T', radius=2, scale_groups=scale_groups),
        deploy='ternary')


def groups_arg(value: str) -> Optional[int]:
    """Parse a group count: a positive int or ``none``."""
    if value.lower() == 'none':
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(
            f'invalid group count {value!r}; pass a positive integer or '
            "'none'")
    return int(value)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny',
                        choices=['tiny', 'small', 'base'],
                        help='VMamba size')
    parser.add_argument('--image-size', type=int, default=224,
                        help='input side in pixels')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8],
                        help='images per forward')

    parser.add_argument('--repeats', type=int, default=5,
                        help='timed forwards per model; the median is shown')
    parser.add_argument('--threads', type=int, nargs='+', default=[2],
                        help='torch intra-op thread counts; every model is '
                        'timed with each')

    parser.add_argument('--scale-groups', type=groups_arg, default=8,
                        help='channel groups that share a Q2T scale in the '
                        "fake-quantized model; 'none' for one scale per "
                        'channel')
    parser.add_argument('--alpha-groups', type=groups_arg, nargs='+',
                        default=[8],
                        help="scale groups per deployed projection, one "
                        "deployed model per value; 'none' for one per "
                        'channel')
    parser.add_argument('--photos', type=int, default=32,
                        help='real photos for calibration and parity')
    parser.add_argument('--scan-impls', nargs='+', default=None,
                        help='selective scan implementations to time; '
                        'default: every CPU one available')
    parser.add_argument('--no-fuse', dest='fuse', action='store_false',
                        help='deploy without fusing the block norms, GELU '
                        'and residuals into the projections')
    args = parser.parse_args()
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Raise on counts and sizes below 1."""
    for name in ('image_size', 'repeats', 'photos'):
        if getattr(args, name) < 1:
            raise ValueError(f'--{name.replace("_", "-")} must be at least '
                             f'1, got {getattr(args, name)}')
    for name in ('batch_sizes', 'threads'):
        if min(getattr(args, name)) < 1:
            raise ValueError(f'--{name.replace("_", "-")} must be positive, '
                             f'got {getattr(args, name)}')


def build_classifier(arch: str, quant: dict) -> torch.nn.Module:
    """Return an ImageClassifier with a TVMambaVSSM backbone."""
    width = dict(tiny=768, small=768, base=1024)[arch]
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='mmtvmamba.TVMambaVSSM', arch=arch,
                          quant=quant),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=width))).eval()


def load_photos(count: int, size: int) -> torch.Tensor:
    """Return ``count`` ImageNet-normalized photos of ``size`` pixels."""
    from mmcv import imread, imresize
    if not osp.isdir(PHOTOS):
        raise FileNotFoundError(f'photos not found at {PHOTOS}')
    paths = sorted(
        osp.join(folder, name) for folder, _, names in os.walk(PHOTOS)
        for name in names)[:count]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    images = []
    for path in paths:
        image = imresize(imread(path, channel_order='rgb'), (size, size))
        tensor = torch.from_numpy(image).permute(2, 0, 1).float()
        images.append((tensor - mean) / std)
    return torch.stack(images)


@torch.no_grad()
def calibrate(model: torch.nn.Module, photos: torch.Tensor) -> None:
    """Initialize the Q2T scales from the photos as training would."""
    model.train()
    samples = [DataSample().set_gt_label(0) for _ in range(len(photos))]
    model(photos, samples, mode='loss')
    model.eval()


def time_forwards(models: Dict[str, torch.nn.Module], inputs: torch.Tensor,
                  repeats: int) -> Dict[str, float]:
    """Return the median seconds of a ``'tensor'`` mode forward per model.

    The models take turns within every repeat, so a slow phase of a shared
    machine slows all of them instead of one.
    """
    times = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(inputs, mode='tensor')
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(inputs, mode='tensor')
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def scan_contexts(requested) -> Dict[str, object]:
    """Return a context manager per selective scan implementation."""
    if not hasattr(scan_module, 'scan_impl'):
        return {'torch': nullcontext}
    names = requested or ['torch', 'fused']
    return {name: (lambda name=name: scan_module.scan_impl(name))
            for name in names}


@torch.no_grad()
def logits(model: torch.nn.Module, photos: torch.Tensor) -> torch.Tensor:
    """Return the class scores of the photos, 8 per forward."""
    return torch.cat([
        model(photos[i:i + 8], mode='tensor')
        for i in range(0, len(photos), 8)
    ])


def compare_logits(name: str, output: torch.Tensor,
                   reference: torch.Tensor) -> str:
    """Describe how far ``output`` is from the fake-quantized scores."""
    same = output.argmax(1) == reference.argmax(1)
    difference = (output - reference).abs().max() / reference.abs().max()
    return (f'{name}: {int(same.sum())}/{len(same)} identical, max '
            f'relative difference {float(difference):.1e}')


def timing_table(models: Dict[str, torch.nn.Module], contexts: dict,
                 args: argparse.Namespace) -> List[str]:
    """Time every model per thread count, scan and batch size; return
    Markdown rows."""
    names = list(models)
    lines = [
        '| threads | scan | batch | ' +
        ' | '.join(f'{n} ms/img' for n in names) + ' | ' +
        ' | '.join(f'{n} vs fp32' for n in names[2:]) + ' |',
        '| --- ' * (3 + 2 * len(names) - 2) + '|'
    ]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for scan, context in contexts.items():
            for batch in args.batch_sizes:
                inputs = torch.randn(batch, 3, args.image_size,
                                     args.image_size)
                with context():
                    seconds = time_forwards(models, inputs, args.repeats)
                ms = {name: 1e3 * value / batch
                      for name, value in seconds.items()}
                cells = [f'{ms[n]:.1f}' for n in names]
                cells += [f"{ms['fp32'] / ms[n]:.2f}x" for n in names[2:]]
                lines.append(f'| {threads} | {scan} | {batch} | ' +
                             ' | '.join(cells) + ' |')
                print_log(lines[-1], logger='current')
    return lines


def main() -> None:
    args = parse_args()
    torch.set_num_threads(max(args.threads))
    torch.manual_seed(0)
    init_default_scope('mmpretrain')

    fp_model = build_classifier(args.arch, dict(mode='fp'))
    quantized = build_classifier(args.arch, build_quant(args.scale_groups))
    quantized.load_state_dict(fp_model.state_dict(), strict=False)
    photos = load_photos(args.photos, args.image_size)
    calibrate(quantized, photos)
    models = {'fp32': fp_model, 'fake-quant': quantized}
    for groups in args.alpha_groups:
        deployed = copy.deepcopy(quantized)
        convert_to_deploy(deployed, 'ternary', groups, args.fuse)
        models[f'deploy-g{groups or "all"}'] = deployed
    lines = timing_table(models, scan_contexts(args.scan_impls), args)

    reference = logits(quantized, photos)
    agreement = [
        compare_logits(name, logits(model, photos), reference)
        for name, model in list(models.items())[2:]
    ]

    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, 'deploy.pth')
        size = save_deploy_checkpoint(deployed, path, 'ternary', groups,
                                      fuse=args.fuse)
        storage = measure_storage(quantized, deployed,
                                  deploy_state_dict(deployed), size)

    fused = 'fused' if args.fuse else 'unfused'
    scales = ('one Q2T scale per channel' if args.scale_groups is None else
              f'Q2T scales shared by at most {args.scale_groups} channel '
              'groups')
    print(f'\nVMamba-{args.arch[0].upper()} at {args.image_size}x'
          f'{args.image_size}, {scales}, median of {args.repeats} forwards; '
          'deploy-gN has N scale groups per projection (gall: one per '
          f'channel), blocks {fused}\n')
    print('\n'.join(lines))
    print(f'\ntop-1 against the fake-quantized model on {len(photos)} real '
          'photos: ' + '; '.join(agreement) + '\n')
    last = list(models)[-1]
    print(storage.table(f'VMamba-{args.arch[0].upper()} ({last})'))


if __name__ == '__main__':
    main()
