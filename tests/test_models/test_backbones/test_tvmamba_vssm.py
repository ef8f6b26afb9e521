# Copyright (c) mmtvmamba contributors. All rights reserved.
import math
import sys

import pytest
import torch

from mmtvmamba.models import TVMambaVSSM, scan_impl
from mmtvmamba.ops import extension_available
from mmtvmamba.quantization import Q2TQuantizer, ternarize_weight

TINY_ARCH = dict(depths=(1, 1, 2, 1), dims=8, ssm_ratio=1.0)


def _expected_size(size, stage):
    for _ in range(stage + 2):
        size = math.ceil(size / 2)
    return size


@pytest.mark.parametrize('arch, dims', [('tiny', (96, 192, 384, 768)),
                                        ('small', (96, 192, 384, 768)),
                                        ('base', (128, 256, 512, 1024))])
def test_arch_output_shapes_odd_input(arch, dims):
    model = TVMambaVSSM(arch=arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 35, 23))
    assert len(outs) == 4
    for stage, out in enumerate(outs):
        assert out.shape == (1, dims[stage], _expected_size(35, stage),
                             _expected_size(23, stage))


@pytest.mark.parametrize('arch, num_tensors', [('tiny', 276), ('small', 402),
                                               ('base', 402)])
def test_arch_official_tensor_count(arch, num_tensors):
    # The official VSSM classifiers hold these counts, with the classifier
    # norm and head (4 tensors) where the backbone has outnorm0-3 (8).
    model = TVMambaVSSM(arch=arch, quant=dict(mode='fp'))
    assert len(model.state_dict()) == num_tensors - 4 + 8


def test_tiny_official_shapes():
    state = TVMambaVSSM(arch='tiny', quant=dict(mode='fp')).state_dict()
    expected = {
        'patch_embed.0.weight': (48, 3, 3, 3),
        'patch_embed.2.weight': (48, ),
        'patch_embed.5.weight': (96, 48, 3, 3),
        'patch_embed.7.bias': (96, ),
        'layers.0.blocks.0.norm.weight': (96, ),
        'layers.0.blocks.0.op.in_proj.weight': (96, 96),
        'layers.0.blocks.0.op.conv2d.weight': (96, 1, 3, 3),
        'layers.0.blocks.0.op.x_proj_weight': (4, 8, 96),
        'layers.0.blocks.0.op.dt_projs_weight': (4, 96, 6),
        'layers.0.blocks.0.op.dt_projs_bias': (4, 96),
        'layers.0.blocks.0.op.A_logs': (384, 1),
        'layers.0.blocks.0.op.Ds': (384, ),
        'layers.0.blocks.0.op.out_norm.weight': (96, ),
        'layers.0.blocks.0.op.out_proj.weight': (96, 96),
        'layers.0.blocks.0.mlp.fc1.weight': (384, 96),
        'layers.0.blocks.0.mlp.fc2.bias': (96, ),
        'layers.0.downsample.1.weight': (192, 96, 3, 3),
        'layers.0.downsample.3.weight': (192, ),
        'layers.3.blocks.1.op.x_proj_weight': (4, 50, 768),
        'layers.3.blocks.1.op.dt_projs_weight': (4, 768, 48),
        'layers.3.blocks.1.op.A_logs': (3072, 1),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert 'layers.0.blocks.0.op.in_proj.bias' not in state
    assert 'layers.0.blocks.0.op.conv2d.bias' not in state


@pytest.mark.parametrize('height, width', [(1, 1), (17, 64), (64, 17),
                                           (33, 33), (50, 70)])
def test_any_input_size(height, width):
    model = TVMambaVSSM(arch=TINY_ARCH).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, height, width))
    for stage, out in enumerate(outs):
        assert out.shape == (2, 8 * 2**stage, _expected_size(height, stage),
                             _expected_size(width, stage))
        assert torch.isfinite(out).all()


def test_detection_sized_input():
    # 800x1216 after padding: stage outputs 200x304 down to 25x38.
    model = TVMambaVSSM(arch=dict(depths=(1, 1, 1, 1), dims=4,
                                  ssm_ratio=1.0)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 800, 1216))
    assert [tuple(o.shape[-2:]) for o in outs] == [(200, 304), (100, 152),
                                                  (50, 76), (25, 38)]


def test_out_indices_and_negative_index():
    model = TVMambaVSSM(arch=TINY_ARCH, out_indices=(1, -1)).eval()
    assert model.out_indices == (1, 3)
    assert hasattr(model, 'outnorm1')
    assert not hasattr(model, 'outnorm0')
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [16, 64]


def test_quantizers_on_every_projection():
    model = TVMambaVSSM(arch=TINY_ARCH)
    block = model.layers[0].blocks[0]
    for quantizer in (block.op.in_proj.act_quant, block.op.x_proj_act_quant,
                      block.op.dt_projs_act_quant, block.op.out_proj.act_quant,
                      block.mlp.fc1.act_quant, block.mlp.fc2.act_quant):
        assert isinstance(quantizer, Q2TQuantizer)
    assert block.op.dt_projs_act_quant.num_channels == 4 * block.op.dt_rank


def test_full_precision_has_no_quantizers():
    model = TVMambaVSSM(arch=TINY_ARCH, quant=dict(mode='fp'))
    assert not any(isinstance(m, Q2TQuantizer) for m in model.modules())


def test_quant_layer_subset():
    model = TVMambaVSSM(
        arch=TINY_ARCH, quant=dict(mode='ternary', layers=('in_proj', )))
    block = model.layers[0].blocks[0]
    assert block.op.in_proj.act_quant is not None
    assert block.op.out_proj.act_quant is None
    assert block.mlp.fc1.act_quant is None


def test_ternary_weights_used_in_forward():
    # A full-precision copy whose projection weights are replaced by their
    # ternarized values must give the same output as the model with ternary
    # weights. This covers the stacked raw x_proj and dt_proj parameters.
    torch.manual_seed(0)
    model = TVMambaVSSM(arch=TINY_ARCH, quant=dict(act=None)).eval()
    reference = TVMambaVSSM(arch=TINY_ARCH, quant=dict(mode='fp')).eval()
    state = model.state_dict()
    projections = ('in_proj.weight', 'out_proj.weight', 'fc1.weight',
                   'fc2.weight', 'x_proj_weight', 'dt_projs_weight')
    for key in state:
        if key.endswith(projections):
            codes, scale = ternarize_weight(state[key])
            state[key] = codes * scale
    reference.load_state_dict(state)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for actual, expected in zip(model(x), reference(x)):
            torch.testing.assert_close(actual, expected)
            assert actual.abs().sum() > 0


def test_backward_reaches_all_trainable_parameters():
    torch.manual_seed(0)
    model = TVMambaVSSM(arch=TINY_ARCH, drop_path_rate=0.1)
    outs = model(torch.randn(2, 3, 24, 40))
    sum(o.mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_frozen_stages():
    model = TVMambaVSSM(arch=TINY_ARCH, frozen_stages=2)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert not model.outnorm1.weight.requires_grad
    assert all(p.requires_grad for p in model.layers[2].parameters())
    assert not model.layers[0].training
    assert model.layers[2].training


def test_with_cp_matches_plain_forward():
    torch.manual_seed(0)
    plain = TVMambaVSSM(arch=TINY_ARCH, quant=dict(mode='fp'))
    checkpointed = TVMambaVSSM(arch=TINY_ARCH, quant=dict(mode='fp'),
                               with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 16, 16, requires_grad=True)
    for a, b in zip(plain.eval()(x), checkpointed.eval()(x)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(arch='huge'), ValueError, 'unknown arch'),
    (dict(arch=dict(depths=(1, 1))), ValueError, 'must include'),
    (dict(arch=dict(depths=(1, 1), dims=(8, ), ssm_ratio=1.0)), ValueError,
     'one positive depth'),
    (dict(arch=3), TypeError, 'str or dict'),
    (dict(out_indices=(4, )), ValueError, 'out of range'),
    (dict(frozen_stages=5), ValueError, 'frozen_stages'),
    (dict(quant=dict(mode='int4')), ValueError, 'invalid quant mode'),
    (dict(quant=dict(layers=('qkv', ))), ValueError, 'unknown quantized'),
    (dict(quant=dict(bits=2)), ValueError, 'unknown quant keys'),
    (dict(quant=dict(act=dict(type='PACT'))), ValueError,
     'unknown activation quantizer'),
    (dict(embed_dims=96), TypeError, 'embed_dims'),
])
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TVMambaVSSM(**kwargs)


def test_rejects_non_image_input():
    model = TVMambaVSSM(arch=TINY_ARCH)
    with pytest.raises(ValueError, match='image batch'):
        model(torch.randn(3, 32, 32))


@pytest.mark.skipif(
    not extension_available(), reason='mmtvmamba._ext is not built')
def test_fused_scan_matches_torch_scan(monkeypatch):
    scan_module = sys.modules['mmtvmamba.models.selective_scan']
    fused = scan_module.cross_selective_scan_fwd
    fused_calls = []

    def counted_fused(*args, **kwargs):
        fused_calls.append(args[0].shape)
        return fused(*args, **kwargs)

    monkeypatch.setattr(scan_module, 'cross_selective_scan_fwd',
                        counted_fused)
    torch.manual_seed(0)
    model = TVMambaVSSM(
        arch=dict(depths=(1, 1, 2, 1), dims=16, ssm_ratio=1.0)).eval()
    # Spread the decays exp(dt * A) over (0, 1). At initialization every
    # A is -1 and dt is small, so every decay is close to 1.
    for name, param in model.named_parameters():
        if name.endswith(('A_logs', 'dt_projs_bias')):
            param.data.normal_(0, 1.5)
    image = torch.randn(2, 3, 64, 64)

    with torch.no_grad():
        with scan_impl('torch'):
            expected = model(image)
        assert fused_calls == []
        with scan_impl('fused'):
            outs = model(image)

    # The model runs one cross selective scan per block, on channels-last
    # tokens. Stage 1 has 16 x 16 tokens of 16 channels.
    assert len(fused_calls) == 5
    assert fused_calls[0] == (2, 16, 16, 16)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
