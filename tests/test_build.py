"""The built extension itself: it must share the process's C++ runtime with torch."""
import shutil
import subprocess
import sys

import pytest

import bce_ext


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("nm") is None
                    or shutil.which("readelf") is None, reason="needs Linux and binutils")
def test_extension_shares_the_cpp_runtime():
    """libstdc++ and the unwinder are shared libraries of the extension, not copies inside it
    (setup.py, shared_runtime_link_flags): a compiler that links them statically by default gave
    an extension whose error messages came out garbled or crashed the process."""
    path = bce_ext._C.__file__
    needed = subprocess.run(["readelf", "-d", path], capture_output=True, text=True,
                            check=True).stdout
    assert "libstdc++.so" in needed and "libgcc_s.so" in needed, needed
    defined = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True,
                             check=True).stdout.split()
    runtime = {"__cxa_throw", "__cxa_begin_catch", "_Unwind_RaiseException", "_Unwind_Resume"}
    assert not runtime & set(defined), sorted(runtime & set(defined))


def test_formatted_error_message_is_whole():
    """A check whose message formats sizes through a stream (the first thing a second copy of the
    runtime broke) comes back whole, as PyTorch's."""
    import torch
    import torch.nn.functional as F
    x, t = torch.rand(2, 3), torch.rand(3, 2)
    with pytest.raises(ValueError) as theirs:
        F.binary_cross_entropy(x, t)
    with pytest.raises(ValueError) as ours:
        bce_ext.binary_cross_entropy(x, t)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.skipif(bce_ext._C.with_cuda, reason="this build has the CUDA kernels")
@pytest.mark.parametrize("op", ["binary_cross_entropy", "binary_cross_entropy_with_logits",
                                "sigmoid_focal_loss"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_build_without_cuda_says_how_to_build_it(op, backward):
    """A build without the CUDA kernels (setup.py builds them only where a GPU is visible, or with
    FORCE_CUDA=1) answers a CUDA call with an error that names the fix, not the dispatcher's
    "could not run ... with arguments from the 'CUDA' backend". The CUDA kernel is reached by
    dispatching on the CUDA key directly, so this runs without a GPU."""
    import torch
    overload = getattr(torch.ops.bce_ext, op + ("_backward" if backward else "")).default
    x = torch.rand(3)
    args = (torch.ones(()), x, x) if backward else (x, x)
    cuda = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    with pytest.raises(RuntimeError, match=r"no CUDA kernels.*FORCE_CUDA=1"):
        overload.redispatch(cuda, *args)
