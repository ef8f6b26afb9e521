# Copyright (c) mmtvmamba contributors. All rights reserved.
"""TVMamba-VSSM: the VMamba v2 backbone with ternary projections."""
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmtvmamba.quantization import QuantConfig
from mmtvmamba.registry import MODELS
from mmtvmamba.utils.pretrained import load_pretrained
from ..layers import LayerNorm2d, VSSBlock

__all__ = ['TVMambaVSSM']


def _patch_embed(in_channels: int, dim: int) -> nn.Sequential:
    """Return VMamba's ``v2`` stem: two stride-2 3x3 convolutions.

    The Identity entries keep the official indices (0, 2, 5, 7) of the
    parameterized layers, so checkpoint keys match.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, dim // 2, 3, 2, 1), nn.Identity(),
        LayerNorm2d(dim // 2), nn.Identity(), nn.GELU(),
        nn.Conv2d(dim // 2, dim, 3, 2, 1), nn.Identity(), LayerNorm2d(dim))


def _downsample(in_dim: int, out_dim: int) -> nn.Sequential:
    """Return VMamba's ``v3`` downsample: a stride-2 3x3 convolution."""
    return nn.Sequential(nn.Identity(), nn.Conv2d(in_dim, out_dim, 3, 2, 1),
                         nn.Identity(), LayerNorm2d(out_dim))


@MODELS.register_module()
class TVMambaVSSM(BaseModule):
    """VMamba backbone with ternary weights and Q2T activations.

    A re-implementation of the official VMamba v2 models (``VSSM`` with
    forward type ``v05_noz``, ``ln2d`` norms, ``v2`` stem and ``v3``
    downsampling) whose linear projections (SS2D ``in_proj``, ``x_proj``,
    ``dt_proj``, ``out_proj`` and MLP ``fc1``, ``fc2``) are quantized as
    set by ``quant``. State-dict keys and shapes match the official
    checkpoints.

    Each stage output ``i`` in ``out_indices`` is normalized by its own
    ``outnorm{i}`` and taken before that stage's downsampling, so the
    strides are 4, 8, 16 and 32. Any input height and width works: every
    stride-2 convolution pads by one and rounds up.

    Args:
        arch (str | dict): ``'tiny'`` (depths 2-2-8-2, width 96, ssm_ratio
            1), ``'small'`` (2-2-15-2, 96, ratio 2), ``'base'`` (2-2-15-2,
            128, ratio 2), or a dict with keys ``depths`` (4 ints),
            ``dims`` (an int for the first stage, doubled per stage, or 4
            ints), ``ssm_ratio`` and optionally ``drop_path_rate``.
            Defaults to ``'tiny'``.
        in_channels (int): Image channels. Defaults to 3.
        d_state (int): SSM state size. Defaults to 1.
        dt_rank (int | str): Time-step rank; ``'auto'`` is ceil(C / 16) of
            each stage. Defaults to ``'auto'``.
        d_conv (int): Depthwise convolution kernel size. Defaults to 3.
        mlp_ratio (float): MLP width over C. Defaults to 4.0.
        drop_path_rate (float, optional): Stochastic depth at the last block;
            None takes the arch's value (0.2, 0.3, 0.6 for T, S, B).
            Defaults to None.
        out_indices (Sequence[int]): Stages whose outputs are returned;
            negative values count from the end. Defaults to (0, 1, 2, 3).
        frozen_stages (int): Freeze the stem when >= 0 and stages
            ``0 .. frozen_stages - 1`` with their output norms. -1 freezes
            nothing. Defaults to -1.
        with_cp (bool): Recompute blocks in the backward pass to save
            memory. Defaults to False.
        quant (dict, optional): Quantization, parsed by
            :meth:`QuantConfig.from_cfg`; ``dict(mode='fp')`` or None for
            full precision. Defaults to ``dict(mode='ternary')``: ternary
            weights and Q2T activations on every projection.
        init_cfg (dict | list[dict], optional): Initialization.
            ``dict(type='Pretrained', checkpoint=PATH, prefix=...)`` loads
            an official or mmengine checkpoint and logs every key that did
            not match. Defaults to None.
    """

    arch_settings: Dict[str, dict] = {
        'tiny': dict(depths=(2, 2, 8, 2), dims=96, ssm_ratio=1.0,
                     drop_path_rate=0.2),
        'small': dict(depths=(2, 2, 15, 2), dims=96, ssm_ratio=2.0,
                      drop_path_rate=0.3),
        'base': dict(depths=(2, 2, 15, 2), dims=128, ssm_ratio=2.0,
                     drop_path_rate=0.6),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 d_state: int = 1,
                 dt_rank: Union[int, str] = 'auto',
                 d_conv: int = 3,
                 mlp_ratio: float = 4.0,
                 drop_path_rate: Optional[float] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 quant: Optional[dict] = dict(mode='ternary'),
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        settings = self._parse_arch(arch)
        depths, dims = settings['depths'], settings['dims']
        if drop_path_rate is None:
            drop_path_rate = settings.get('drop_path_rate', 0.)
        self.depths, self.dims = depths, dims
        self.out_indices = self._parse_out_indices(out_indices, len(depths))
        if not -1 <= frozen_stages <= len(depths):
            raise ValueError(f'frozen_stages={frozen_stages} must be in '
                             f'[-1, {len(depths)}]')
        self.frozen_stages = frozen_stages
        self.quant = QuantConfig.from_cfg(quant)

        self.patch_embed = _patch_embed(in_channels, dims[0])
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            blocks = [
                VSSBlock(
                    dims[i],
                    drop_path=rates[sum(depths[:i]) + j],
                    mlp_ratio=mlp_ratio,
                    with_cp=with_cp,
                    quant=self.quant,
                    d_state=d_state,
                    ssm_ratio=settings['ssm_ratio'],
                    dt_rank=dt_rank,
                    d_conv=d_conv) for j in range(depth)
            ]
            downsample = (
                _downsample(dims[i], dims[i + 1])
                if i < len(depths) - 1 else nn.Identity())
            self.layers.append(
                nn.Sequential(
                    OrderedDict(
                        blocks=nn.Sequential(*blocks),
                        downsample=downsample)))
        for i in self.out_indices:
            self.add_module(f'outnorm{i}', LayerNorm2d(dims[i]))

        self.apply(self._init_module)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch not in cls.arch_settings:
                raise ValueError(f'unknown arch {arch!r}; choose from '
                                 f'{list(cls.arch_settings)} or pass a dict')
            settings = dict(cls.arch_settings[arch])
        elif isinstance(arch, dict):
            required = {'depths', 'dims', 'ssm_ratio'}
            allowed = required | {'drop_path_rate'}
            if not required <= set(arch) or not set(arch) <= allowed:
                raise ValueError(f'arch dict keys {sorted(arch)} must '
                                 f'include {sorted(required)} and may add '
                                 "'drop_path_rate'")
            settings = dict(arch)
        else:
            raise TypeError(f'arch must be a str or dict, got {type(arch)}')

        depths = tuple(settings['depths'])
        dims = settings['dims']
        if isinstance(dims, int):
            dims = tuple(dims * 2**i for i in range(len(depths)))
        dims = tuple(dims)
        if len(dims) != len(depths) or min(depths) < 1 or min(dims) < 2:
            raise ValueError(f'arch needs one positive depth and one width '
                             f'>= 2 per stage, got depths={depths}, '
                             f'dims={dims}')
        settings.update(depths=depths, dims=dims)
        return settings

    @staticmethod
    def _parse_out_indices(out_indices: Sequence[int],
                           num_stages: int) -> tuple:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            if not -num_stages <= index < num_stages:
                raise ValueError(f'out_indices entry {index} is out of range '
                                 f'for {num_stages} stages')
            parsed.append(index % num_stages)
        return tuple(sorted(set(parsed)))

    @staticmethod
    def _init_module(module: nn.Module) -> None:
        # VMamba's initialization: truncated normal for linear projections,
        # ones and zeros for LayerNorms. SS2D's raw parameters keep the
        # initialization of SS2D itself.
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        """Load the ``Pretrained`` checkpoint of ``init_cfg``, if any.

        Official classification checkpoints also hold ``classifier.norm``,
        the norm after the last stage; it becomes ``outnorm3`` when that
        stage is an output. The classifier head is reported as unexpected.
        """
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            load_pretrained(
                self,
                init_cfg['checkpoint'],
                prefix=init_cfg.get('prefix', ''),
                map_keys=self._map_official_keys)
            self._is_init = True
            return
        super().init_weights()

    def _map_official_keys(self, state_dict: dict) -> dict:
        last = len(self.depths) - 1
        if last not in self.out_indices:
            return state_dict
        mapped = {}
        for key, value in state_dict.items():
            if key.startswith('classifier.norm.'):
                key = f'outnorm{last}.' + key[len('classifier.norm.'):]
            mapped[key] = value
        return mapped

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed]
        for i in range(self.frozen_stages):
            frozen.append(self.layers[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'outnorm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'TVMambaVSSM':
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: Tensor) -> tuple:
        """Return the normalized outputs of the stages in ``out_indices``.

        Args:
            x (Tensor): Images of shape (B, C, H, W), any H and W >= 1.

        Returns:
            tuple[Tensor]: One (B, dims[i], ceil(H / 2^(i+2)),
            ceil(W / 2^(i+2))) map per output stage.
        """
        if x.dim() != 4:
            raise ValueError(f'expected an image batch (B, C, H, W), got '
                             f'shape {tuple(x.shape)}')
        x = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer.blocks(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'outnorm{i}')(x))
            # The blocks return channels-last memory. PyTorch (2.14, oneDNN)
            # then copies the stride-2 convolution's weight to channels-last
            # on every call, and the last one (768 x 384 x 3 x 3) ran 2-5x
            # slower on one or two Zen 4 cores than with NCHW input.
            x = layer.downsample(x.contiguous())
        return tuple(outs)
