"""Strict mode (docs/behaviour.md, section 4). On CUDA a BCE input or target element outside [0, 1]
(or NaN) gives a NaN loss by default, with no host synchronisation; in strict mode the CUDA forward
raises the CPU's RuntimeError instead ("all elements of input should be between 0 and 1", or of
target), at the cost of one synchronisation per call. The CPU kernels always raise. The flag lives
in the native library and is process-wide; it starts on when the environment has BCE_EXT_STRICT=1
at import."""
from . import _C

__all__ = ["set_strict", "is_strict"]


def set_strict(enabled):
    """Turns strict mode on (``True``) or off (``False``) for the whole process."""
    _C.set_strict(bool(enabled))


def is_strict():
    """Whether strict mode is on."""
    return bool(_C.is_strict())
