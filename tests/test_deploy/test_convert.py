# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Tests of the deploy conversion of quantized VMamba backbones."""
import copy
import sys

import pytest
import torch

from mmtvmamba.deploy import linear as deploy_linear
from mmtvmamba.deploy import (DeployLinear2d, DeploySS2D, FusedVSSBlock,
                              convert_to_deploy,
                              count_deploy_projections, deploy_state_dict,
                              measure_storage, read_deploy_meta,
                              save_deploy_checkpoint)
from mmtvmamba.models.backbones.tvmamba_vssm import TVMambaVSSM
import mmtvmamba.ops as ops
from mmtvmamba.ops import extension_available
from mmtvmamba.quantization import Q2TQuantizer

ARCH = dict(depths=(1, 1, 2, 1), dims=16, ssm_ratio=1.0)
QUANT = dict(mode='ternary', weight=True, act=dict(type='Q2T', radius=2))


def build_backbone(seed=0, deploy='ternary', spread=0.5, arch=ARCH,
                   **quant):
    """Return a quantized backbone with data-initialized, spread scales."""
    torch.manual_seed(seed)
    backbone = TVMambaVSSM(
        arch=arch, out_indices=(3, ), quant=dict(QUANT, deploy=deploy,
                                                 **quant))
    backbone.train()
    backbone(torch.randn(2, 3, 64, 64))
    backbone.eval()
    for module in backbone.modules():
        if isinstance(module, Q2TQuantizer):
            noise = torch.randn(module.alpha.numel()) * spread
            module.alpha.data.mul_(noise.exp())
    return backbone


def relative_error(output, reference):
    return ((output - reference).abs().max() / reference.abs().max()).item()


@torch.no_grad()
def test_exact_layout_matches_fake_quant():
    backbone = build_backbone()
    x = torch.randn(2, 3, 64, 64)
    expected = backbone(x)[0]

    deployed = copy.deepcopy(backbone)
    count = convert_to_deploy(deployed, 'ternary', alpha_groups=None)

    # Per block: in, x, 4 dt and out projections of SS2D, fc1 and fc2.
    assert count == 9 * 5
    torch.testing.assert_close(deployed(x)[0], expected, rtol=1e-4,
                               atol=1e-4)


@torch.no_grad()
@pytest.mark.parametrize('deploy', ['ternary', 'five_level'])
def test_scale_groups_deploy_exactly(deploy):
    backbone = build_backbone(seed=5, deploy=deploy, act=dict(
        type='Q2T', radius=2, scale_groups=4))
    if deploy == 'five_level':
        for module in backbone.modules():
            if isinstance(module, Q2TQuantizer):
                module.radius[::3] = 1
    x = torch.randn(2, 3, 64, 64)
    expected = backbone(x)[0]

    deployed = copy.deepcopy(backbone)
    convert_to_deploy(deployed, deploy, alpha_groups=4)

    if deploy == 'ternary':
        # Every distinct scale is one group of whole words: fc1 of the last
        # stage reads 128 channels, 4 words, and needs no padding.
        projection = deployed.layers[3].blocks[0].mlp.fc1
        assert projection.three.width == 128
        assert projection.three.k_scale.unique().numel() == 4
    torch.testing.assert_close(deployed(x)[0], expected, rtol=1e-4,
                               atol=1e-4)


@torch.no_grad()
def test_five_level_variant_matches_fake_quant():
    backbone = build_backbone(deploy='five_level')
    for module in backbone.modules():
        if isinstance(module, Q2TQuantizer):
            module.radius[::3] = 1
    x = torch.randn(1, 3, 64, 64)
    expected = backbone(x)[0]

    deployed = copy.deepcopy(backbone)
    convert_to_deploy(deployed, 'five_level', alpha_groups=None)

    projection = deployed.layers[0].blocks[0].mlp.fc1
    assert projection.five.width > 0
    assert projection.three.width > 0
    torch.testing.assert_close(deployed(x)[0], expected, rtol=1e-4,
                               atol=1e-4)


@torch.no_grad()
def test_fused_blocks_match_unfused():
    backbone = build_backbone(seed=3)
    x = torch.randn(2, 3, 64, 64)
    unfused = copy.deepcopy(backbone)
    convert_to_deploy(unfused, 'ternary', alpha_groups=None, fuse=False)
    fused = copy.deepcopy(backbone)
    convert_to_deploy(fused, 'ternary', alpha_groups=None, fuse=True)

    block = fused.layers[1].blocks[0]
    assert isinstance(block, FusedVSSBlock)
    assert isinstance(block.mlp.act, torch.nn.Identity)
    assert block.op.in_proj.norm is not None
    assert block.op.out_norm is None
    assert block.op.out_proj.norm is not None
    assert block.mlp.fc1.activation == 'gelu'
    assert isinstance(unfused.layers[1].blocks[0].mlp.act, torch.nn.GELU)
    torch.testing.assert_close(fused(x)[0], unfused(x)[0], rtol=1e-4,
                               atol=1e-4)


def project_with_two_ops(projection, x, residual):
    """Compute DeployTernaryLinear.project with q2t_pack and the matmul op
    of each part, the pair that q2t_linear fuses."""
    norm = projection.norm
    norm_args = () if norm is None else (norm.weight, norm.bias, norm.eps)
    parts = [p for p in (projection.five, projection.three) if p.width]
    out, bias = residual, projection.bias
    for i, part in enumerate(parts):
        packed, rms = ops.q2t_pack(x, part.index, part.alpha,
                                   part.code_radius, projection.eps,
                                   *norm_args)
        matmul = ops.quinary_mm if part.code_radius == 2 else ops.ternary_mm
        activation = projection.activation if i == len(parts) - 1 else 'none'
        out = matmul(packed, part.weight, part.width, rms,
                     projection.weight_scale, bias, part.k_scale, out,
                     activation)
        bias = None
    return out


@torch.no_grad()
@pytest.mark.parametrize('variant', ['ternary', 'five_level'])
@pytest.mark.parametrize('threads', [1, 2])
def test_projections_equal_two_op_form(variant, threads):
    backbone = build_backbone(seed=2, deploy=variant)
    for module in backbone.modules():
        if isinstance(module, Q2TQuantizer):
            module.radius[::3] = 1
    convert_to_deploy(backbone, variant, alpha_groups=4)
    block = backbone.layers[0].blocks[0]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in ('op.in_proj', 'op.out_proj', 'mlp.fc1', 'mlp.fc2'):
            projection = block.get_submodule(name)
            x = torch.randn(2, projection.in_features, 150)
            residual = torch.randn(300, projection.out_features)
            expected = project_with_two_ops(projection, x, residual)
            assert torch.equal(projection.project(x, residual),
                               expected), name
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
@pytest.mark.parametrize('tokens', [300, 4200])
def test_projection_forms_agree(tokens, monkeypatch):
    # Calls above FUSED_MAX_TOKENS run q2t_pack and the matmul separately.
    # A limit of 0 sends every call that way, and a large one sends none.
    backbone = build_backbone(seed=7)
    convert_to_deploy(backbone, 'ternary', alpha_groups=4)
    projection = backbone.layers[0].blocks[0].mlp.fc1
    x = torch.randn(2, projection.in_features, tokens // 2)
    residual = torch.randn(tokens, projection.out_features)

    monkeypatch.setattr(deploy_linear, 'FUSED_MAX_TOKENS', 0)
    separate = projection.project(x, residual)
    monkeypatch.setattr(deploy_linear, 'FUSED_MAX_TOKENS', 10**9)
    fused = projection.project(x, residual)

    assert torch.equal(fused, separate)
    assert torch.equal(fused, project_with_two_ops(projection, x, residual))


@torch.no_grad()
def test_partial_fusion_keeps_float_steps():
    # fc2 stays float, so the block keeps its own forward and the residual
    # additions; its norms and the GELU still move into the projections.
    backbone = build_backbone(seed=6, layers=('in_proj', 'fc1'))
    x = torch.randn(1, 3, 64, 64)
    unfused = copy.deepcopy(backbone)
    convert_to_deploy(unfused, alpha_groups=None, fuse=False)
    fused = copy.deepcopy(backbone)
    convert_to_deploy(fused, alpha_groups=None, fuse=True)

    block = fused.layers[0].blocks[0]
    assert not isinstance(block, FusedVSSBlock)
    assert isinstance(block.norm2, torch.nn.Identity)
    assert block.mlp.fc1.activation == 'gelu'
    torch.testing.assert_close(fused(x)[0], unfused(x)[0], rtol=1e-4,
                               atol=1e-4)


@torch.no_grad()
def test_unfused_checkpoint_loads_unfused(tmp_path):
    deployed = build_backbone(seed=4)
    convert_to_deploy(deployed, 'ternary', alpha_groups=2, fuse=False)
    path = tmp_path / 'deploy.pth'
    save_deploy_checkpoint(deployed, str(path), 'ternary', 2, fuse=False)

    meta = read_deploy_meta(str(path))
    fresh = build_backbone(seed=5)
    convert_to_deploy(fresh, meta['variant'], meta['alpha_groups'],
                      meta['fuse'])
    fresh.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
    x = torch.randn(1, 3, 64, 64)

    assert meta['fuse'] is False
    assert torch.equal(fresh(x)[0], deployed(x)[0])


@torch.no_grad()
def test_more_groups_reduce_scale_error():
    backbone = build_backbone(spread=0.2, arch=dict(ARCH, dims=64))
    x = torch.randn(1, 3, 64, 64)
    expected = backbone(x)[0]
    errors = {}
    for groups in (1, 4, 16, None):
        deployed = copy.deepcopy(backbone)
        convert_to_deploy(deployed, 'ternary', alpha_groups=groups)
        errors[groups] = relative_error(deployed(x)[0], expected)

    assert errors[4] < errors[1]
    assert errors[16] < errors[4]
    assert errors[None] < 1e-5


@torch.no_grad()
def test_conversion_replaces_modules():
    deployed = build_backbone()
    convert_to_deploy(deployed)
    block = deployed.layers[0].blocks[0]

    assert isinstance(block.op, DeploySS2D)
    assert isinstance(block.op.in_proj, DeployLinear2d)
    assert isinstance(block.mlp.fc2, DeployLinear2d)
    assert len(block.op.dt_projs) == 4
    assert not any(
        isinstance(module, Q2TQuantizer) for module in deployed.modules())


@torch.no_grad()
def test_float_layers_stay_float():
    backbone = build_backbone(layers=('fc1', 'fc2'))
    x = torch.randn(1, 3, 64, 64)
    expected = backbone(x)[0]

    deployed = copy.deepcopy(backbone)
    count = convert_to_deploy(deployed, alpha_groups=None)

    assert count == 2 * 5
    torch.testing.assert_close(deployed(x)[0], expected, rtol=1e-4,
                               atol=1e-4)


@torch.no_grad()
@pytest.mark.parametrize('layers', [None, ('fc1', 'fc2')])
def test_scan_paths_agree(monkeypatch, layers):
    scan_module = sys.modules['mmtvmamba.models.selective_scan']
    fused = scan_module.cross_selective_scan_fwd
    calls = []

    def counted(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return fused(*args, **kwargs)

    quant = {} if layers is None else dict(layers=layers)
    deployed = build_backbone(**quant)
    convert_to_deploy(deployed, 'ternary', alpha_groups=None)
    for name, param in deployed.named_parameters():
        if name.endswith(('A_logs', 'dt_projs_bias')):
            param.normal_(0, 1.5)
    x = torch.randn(2, 3, 64, 48)
    monkeypatch.setattr(scan_module, 'cross_selective_scan_fwd', counted)

    with scan_module.scan_impl('torch'):
        expected = deployed(x)[0]
    assert calls == []
    out = deployed(x)[0]

    # One cross selective scan per block when the extension is built.
    assert len(calls) == (5 if extension_available() else 0)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_checkpoint_round_trip(tmp_path):
    deployed = build_backbone(seed=1)
    convert_to_deploy(deployed, 'ternary', alpha_groups=4)
    path = tmp_path / 'deploy.pth'
    size = save_deploy_checkpoint(deployed, str(path), 'ternary', 4)

    # A model built from scratch takes the stored shapes on loading.
    fresh = build_backbone(seed=2, spread=0.0)
    convert_to_deploy(fresh, 'ternary', alpha_groups=1)
    state = torch.load(path, weights_only=True)['state_dict']
    fresh.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)

    assert size == path.stat().st_size
    assert read_deploy_meta(str(path)) == dict(
        variant='ternary', alpha_groups=4, float_dtype='float32', fuse=True)
    assert torch.equal(fresh(x)[0], deployed(x)[0])


def test_float16_keeps_projection_scales():
    deployed = build_backbone()
    convert_to_deploy(deployed)
    state = deploy_state_dict(deployed, 'float16')

    assert state['layers.0.blocks.0.mlp.fc1.three.alpha'].dtype == (
        torch.float32)
    assert state['layers.0.blocks.0.mlp.fc1.weight_scale'].dtype == (
        torch.float32)
    # A fused LayerNorm sets codes, so it keeps float32 like the scales.
    assert state['layers.0.blocks.0.mlp.fc1.norm.weight'].dtype == (
        torch.float32)
    assert state['layers.0.blocks.0.op.conv2d.weight'].dtype == (
        torch.float16)
    assert state['layers.0.blocks.0.mlp.fc1.three.weight'].dtype == (
        torch.int32)


def test_storage_counts_packed_weights():
    backbone = build_backbone()
    deployed = copy.deepcopy(backbone)
    convert_to_deploy(deployed, alpha_groups=1)
    state = deploy_state_dict(deployed)
    report = measure_storage(backbone, deployed, state, file_bytes=1)

    # fc1 of stage 1: 64 outputs x 2 planes x 1 word of 16 inputs.
    fc1 = deployed.layers[0].blocks[0].mlp.fc1.three.weight
    assert fc1.shape == (64, 2)
    assert report.packed == sum(
        module.weight.numel() * 4 for module in deployed.modules()
        if hasattr(module, 'k_scale'))
    assert report.packed + report.layout + report.other == sum(
        value.numel() * value.element_size() for value in state.values())
    assert report.float32 < 4 * sum(p.numel() for p in backbone.parameters())


def test_conversion_rejects_invalid_options():
    backbone = build_backbone()
    with pytest.raises(ValueError, match="invalid deploy variant 'int8'"):
        convert_to_deploy(backbone, 'int8')
    with pytest.raises(ValueError, match='alpha_groups=0'):
        convert_to_deploy(backbone, alpha_groups=0)


def test_conversion_rejects_lsq_activations():
    torch.manual_seed(0)
    backbone = TVMambaVSSM(
        arch=ARCH, quant=dict(QUANT, act=dict(type='LSQ'))).eval()
    with pytest.raises(TypeError, match='LSQTernaryQuantizer'):
        convert_to_deploy(backbone)


def test_save_rejects_unconverted_model(tmp_path):
    backbone = build_backbone()
    with pytest.raises(ValueError, match='no deployed projections'):
        save_deploy_checkpoint(backbone, str(tmp_path / 'x.pth'), 'ternary',
                               8)
    assert not (tmp_path / 'x.pth').exists()
    assert count_deploy_projections(backbone) == 0
