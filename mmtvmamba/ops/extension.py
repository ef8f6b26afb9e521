# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Load the compiled ``mmtvmamba._ext`` library and its fake kernels."""
import functools
import logging
import warnings

_FALLBACK_MESSAGE = (
    'mmtvmamba._ext is not built, so the ternary ops and the selective '
    'scan run on the slow pure-PyTorch code ({error}). Build it with '
    '`python setup.py build_ext --inplace` or `pip install -e .` without '
    'MMTVMAMBA_WITH_OPS=0.')


def _warn(message: str) -> None:
    try:
        from mmengine.logging import print_log
    except ImportError:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return
    print_log(message, logger='current', level=logging.WARNING)


def load_extension() -> bool:
    """Import the C++ ops and return whether that succeeded.

    Importing ``mmtvmamba._ext`` registers ``torch.ops.mmtvmamba.*``; the
    fake kernels are registered next. On failure a warning is logged and
    the callers use the pure-PyTorch reference.
    """
    try:
        import mmtvmamba._ext  # noqa: F401
    except ImportError as error:
        _warn(_FALLBACK_MESSAGE.format(error=error))
        return False

    from .cross_selective_scan_op import \
        register_fake_kernel as register_cross_scan_fake
    from .selective_scan_op import register_fake_kernel
    from .ternary_fake import register_fake_kernels
    register_fake_kernels()
    register_fake_kernel()
    register_cross_scan_fake()
    return True


# Cached, so the library is loaded and the warning is logged once.
extension_available = functools.lru_cache(maxsize=None)(load_extension)
