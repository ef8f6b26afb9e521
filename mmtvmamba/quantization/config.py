# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Parsing and validation of the ``quant`` option of quantized backbones."""
from dataclasses import dataclass, field
from typing import Optional, Tuple

from .functional import GRAD_SCALE_MODES

__all__ = ['QuantConfig', 'VSSM_LAYERS', 'ACT_TYPES', 'DEPLOY_MODES']

#: Linear projections of a VMamba block that can be quantized.
VSSM_LAYERS = ('in_proj', 'x_proj', 'dt_proj', 'out_proj', 'fc1', 'fc2')

#: Keyword arguments of each activation quantizer type, after ``type``.
ACT_TYPES = {
    'Q2T': ('radius', 'grad_scale', 'init_alpha', 'eps', 'scale_groups'),
    'LSQ': ('init_alpha', 'init_ratio', 'eps'),
    'Slender': ('scale', 'eps'),
}
#: Values of ``deploy``: the radius of every Q2T channel in eval mode.
DEPLOY_MODES = {None: None, 'five_level': None, 'ternary': 1}
_TOP_KEYS = ('mode', 'weight', 'act', 'layers', 'weight_eps', 'deploy')


@dataclass(frozen=True)
class QuantConfig:
    """Quantization setup of a backbone: the quantized projections and
    their weight and activation quantizers.

    Build it with :meth:`from_cfg` from the ``quant`` dict of a config:

    - ``None`` or ``dict(mode='fp')``: full precision, e.g. the teacher or
      the FP16 baseline;
    - ``dict(mode='ternary', weight=True, act=dict(type='Q2T', radius=2,
      grad_scale='paper'), layers=('in_proj', ...))``: ternary weights and
      Q2T activations on the listed layers. ``act=None`` keeps activations
      in full precision;
    - ``act=dict(type='Q2T', scale_groups=8)`` shares each Q2T scale
      within at most 8 channel groups, so the deployed model computes the
      trained function exactly (see
      :class:`~mmtvmamba.quantization.Q2TQuantizer`);
    - ``act=dict(type='LSQ', init_ratio=0.5)`` selects the LSQ-Ternary
      baseline and ``act=dict(type='Slender', scale='absmax')`` the
      Slender-Mamba* baseline;
    - ``deploy='ternary'`` evaluates every Q2T channel with radius 1
      (TVMamba-T); ``deploy='five_level'`` or None keeps the trained
      per-channel radius (TVMamba-F). Training ignores it.

    Args:
        weight (bool): Ternarize the weights. Defaults to True.
        act (dict, optional): Keyword arguments of the activation quantizer
            with its ``type``; None for full-precision activations.
        layers (tuple[str]): Names of the quantized projections.
        weight_eps (float): Lower bound of the weight scale.
        deploy (str, optional): ``'ternary'``, ``'five_level'`` or None.
    """

    weight: bool = True
    act: Optional[dict] = field(default_factory=lambda: dict(type='Q2T'))
    layers: Tuple[str, ...] = VSSM_LAYERS
    weight_eps: float = 1e-5
    deploy: Optional[str] = None

    @classmethod
    def from_cfg(cls,
                 cfg: Optional[dict],
                 known_layers: Tuple[str, ...] = VSSM_LAYERS
                 ) -> Optional['QuantConfig']:
        """Validate a ``quant`` dict; return None for full precision.

        Raises:
            ValueError: On an unknown key, mode, layer or quantizer option.
        """
        if cfg is None:
            return None
        if isinstance(cfg, QuantConfig):
            return cfg
        cfg = dict(cfg)
        unknown = set(cfg) - set(_TOP_KEYS)
        if unknown:
            raise ValueError(f'unknown quant keys {sorted(unknown)}; '
                             f'valid keys are {list(_TOP_KEYS)}')
        mode = cfg.pop('mode', 'ternary')
        if mode == 'fp':
            return None
        if mode != 'ternary':
            raise ValueError(f"invalid quant mode {mode!r}; use 'ternary' "
                             "or 'fp'")

        layers = tuple(cfg.get('layers', known_layers))
        bad_layers = [name for name in layers if name not in known_layers]
        if bad_layers:
            raise ValueError(f'unknown quantized layers {bad_layers}; '
                             f'choose from {list(known_layers)}')
        act = cfg.get('act', dict(type='Q2T'))
        if act is not None:
            act = cls._check_act(dict(act))
        deploy = cfg.get('deploy')
        if deploy not in DEPLOY_MODES:
            raise ValueError(f'invalid quant deploy {deploy!r}; use '
                             "'ternary' (TVMamba-T), 'five_level' "
                             '(TVMamba-F) or None')
        return cls(
            weight=bool(cfg.get('weight', True)),
            act=act,
            layers=layers,
            weight_eps=float(cfg.get('weight_eps', 1e-5)),
            deploy=deploy)

    @staticmethod
    def _check_act(act: dict) -> dict:
        act.setdefault('type', 'Q2T')
        if act['type'] not in ACT_TYPES:
            raise ValueError(f"unknown activation quantizer {act['type']!r}; "
                             f'available: {list(ACT_TYPES)}')
        valid = ('type', ) + ACT_TYPES[act['type']]
        unknown = set(act) - set(valid)
        if unknown:
            raise ValueError(f'unknown activation quantizer keys '
                             f"{sorted(unknown)} for type {act['type']!r}; "
                             f'valid keys are {list(valid)}')
        if act['type'] != 'Q2T':
            return act
        grad_scale = act.get('grad_scale', 'paper')
        if grad_scale not in GRAD_SCALE_MODES:
            raise ValueError(f'invalid grad_scale {grad_scale!r}; use one of '
                             f'{GRAD_SCALE_MODES}')
        return act

    def quantizes(self, layer: str) -> bool:
        """Return whether the projection named ``layer`` is quantized."""
        return layer in self.layers
