"""Build of bce_ext's native kernels.

As torchvision and pytorch_scatter do, it builds the CUDA kernels when the installed torch has
CUDA, a CUDA toolkit is found and a GPU is visible, or when FORCE_CUDA=1; a CPU-only extension
otherwise. It prints which. Switches (environment variables):
  FORCE_CUDA=1              build the CUDA kernels without a visible GPU; fail, rather than build
                            CPU only, when torch has no CUDA or no toolkit is found (a CUDA
                            compile error always fails the build)
  BCE_EXT_CPU_ONLY=1        never build the CUDA kernels
  CUDA_HOME=/path           the toolkit to use (else the one nvcc on PATH, or /usr/local/cuda*,
                            belongs to, asked of nvcc itself, so a wrapper script is seen through)
  TORCH_CUDA_ARCH_LIST=...  GPU architectures, e.g. "9.0" (default: those of the visible GPUs, as
                            torch's own default; with FORCE_CUDA=1 and no GPU, Volta to Hopper, 7.0
                            to 9.0, less those the installed nvcc no longer supports, with PTX for
                            the newest)
  BCE_EXT_BUILD_DIR=/path   where the compiled objects are kept (default: build/ in the checkout)
  BCE_EXT_DEBUG=1           -O0 -g
  BCE_EXT_SANITIZE=1        AddressSanitizer and UndefinedBehaviorSanitizer in the C++ code (compile
                            and link; every UB report is fatal). Build it into its own folder
                            (`setup.py build --build-base DIR`) and run it with the sanitizer
                            runtime preloaded: tools/sanitize.sh does both (docs/contributing.md)
Headers that a bare toolkit lacks (cusparse.h, which ATen's CUDA headers include) are taken from a
pip-installed toolkit beside torch (site-packages/nvidia/*/include), searched after the toolkit's
own. The extension must be built against the torch it runs with, so install with
`pip install --no-build-isolation .` (see README).

The objects are compiled by ninja into a fixed folder named for everything that changes them (the
Python ABI, the torch version and build, the CPU/CUDA choice with its architectures, the debug and
sanitizer switches), so a second install of an unchanged tree (the quickstart's second command after
its first; pip builds an editable install in a fresh temporary folder each time) recompiles nothing,
and one that changes a source recompiles only what depends on it.
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# Volta to Hopper; architectures the installed nvcc no longer supports are dropped.
DEFAULT_ARCHS = ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0"]


def _flag(name):
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def _say(msg):
    print(f"[bce_ext setup] {msg}", file=sys.stderr)


def _nvcc_toolkit(nvcc):
    """The toolkit root of `nvcc`, asked of nvcc itself: a wrapper script (as /usr/local/bin/nvcc on
    the development machines) hides it from realpath(), which is what torch's own guess uses."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cu")
        open(src, "w").close()
        try:
            out = subprocess.run([nvcc, "--dryrun", "-c", src, "-o", os.path.join(tmp, "p.o")],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
    m = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.realpath(m.group(1).strip()) if m else None


def find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return home
    candidates = ([shutil.which("nvcc")]
                  + sorted(glob.glob("/usr/local/cuda*/bin/nvcc"), reverse=True))
    for nvcc in filter(None, candidates):
        home = _nvcc_toolkit(nvcc)
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return home
    return None


def pip_toolkit_includes():
    """Header folders of a pip-installed CUDA toolkit (nvidia/cu13/include holds cusparse.h, which
    ATen's CUDA headers include and a bare nvcc install may lack): beside torch first, then in the
    site folders."""
    import site

    import torch
    roots = [os.path.dirname(os.path.dirname(torch.__file__))]
    roots += site.getsitepackages() + [site.getusersitepackages()]
    found = []
    for root in roots:
        for inc in sorted(glob.glob(os.path.join(root, "nvidia", "*", "include"))):
            if os.path.exists(os.path.join(inc, "cusparse.h")) and inc not in found:
                found.append(inc)
    return found


def nvcc_archs(cuda_home):
    try:
        out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--list-gpu-arch"],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {f"{m[:-1]}.{m[-1]}" for m in re.findall(r"compute_(\d+)", out)}


def visible_gpu_archs():
    """The compute capabilities of the visible GPUs, as TORCH_CUDA_ARCH_LIST entries (none: [])."""
    import torch
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except RuntimeError:  # a broken driver is no visible GPU
        return []
    archs = {"%d.%d" % torch.cuda.get_device_capability(i) for i in range(count)}
    return sorted(archs, key=lambda a: tuple(map(int, a.split("."))))


def cuda_plan():
    """(cuda_home, arch list) when the CUDA kernels are to be built, else (None, reason)."""
    if _flag("BCE_EXT_CPU_ONLY"):
        return None, "BCE_EXT_CPU_ONLY is set"
    import torch
    if torch.version.cuda is None:
        return None, f"torch {torch.__version__} has no CUDA"
    gpus = visible_gpu_archs()
    if not gpus and not _flag("FORCE_CUDA"):
        return None, "no GPU is visible (FORCE_CUDA=1 builds the CUDA kernels anyway)"
    home = find_cuda_home()
    if home is None:
        return None, "no CUDA toolkit (nvcc) found; set CUDA_HOME"
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    supported = nvcc_archs(home)
    known = [a for a in gpus if supported is None or a in supported]
    if not archs and gpus and len(known) == len(gpus):
        archs = ";".join(gpus)
    elif not archs:
        # No GPU, or one newer than this nvcc knows (as torch's default: the newest supported
        # architecture with PTX, which the driver compiles for the newer GPU at load time).
        keep = [a for a in DEFAULT_ARCHS if a in (supported or set(DEFAULT_ARCHS))]
        archs = ";".join(keep[:-1] + [keep[-1] + "+PTX"]) if not gpus else \
            ";".join(known + [keep[-1] + "+PTX"])
    return home, archs


def shared_runtime_link_flags():
    """The C++ runtime (libstdc++) and the unwinder (libgcc_s) as shared libraries, whatever the
    compiler adds: torch's libraries use the process's one libstdc++, and the extension must too.
    A compiler that links them statically by default (a g++ wrapper with -static-libstdc++, as on
    one CUDA image: the extension then defined its own __cxa_throw and locale machinery) builds an
    extension whose error messages come out garbled or crash the process, because one stream
    object then meets two copies of the runtime. Named first, the shared libraries resolve every
    reference; a static copy that the compiler names later finds nothing left to provide."""
    if not sys.platform.startswith("linux"):
        return []
    return ["-Wl,--push-state,--no-as-needed", "-lstdc++", "-lgcc_s", "-Wl,--pop-state"]


def openmp_flags():
    """at::parallel_for is inline OpenMP code in torch's headers when torch uses OpenMP: without
    -fopenmp it compiles to a serial loop. libgomp.so.1 then resolves to the copy torch loaded."""
    import torch
    return ["-fopenmp"] if torch._C.has_openmp and sys.platform.startswith("linux") else []


# -fsanitize=address,undefined: ASan finds reads and writes outside a heap block (torch's CPU
# tensors come from posix_memalign, which the preloaded ASan runtime gives red zones), UBSan
# undefined shifts, overflows, misaligned and null accesses. -fno-sanitize-recover=all makes every
# UBSan report abort, as ASan's do, so a report cannot scroll past unnoticed. The optimisation level
# stays the release one: the loops under test are the ones that ship. -g1 (line tables) is enough
# for the reports' stack traces and compiles in about half the time of -g.
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g1"]


def sanitize_flags():
    """Compile and link flags of BCE_EXT_SANITIZE=1 (CPU code only: nvcc gets none)."""
    if not _flag("BCE_EXT_SANITIZE"):
        return [], []
    _say("BCE_EXT_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build; run it with "
         "libasan preloaded (tools/sanitize.sh)")
    return SANITIZE_FLAGS, ["-fsanitize=address,undefined"]


def build_folder(archs, cxx_flags):
    """The fixed folder of the compiled objects (see the module docstring): one per set of
    everything that changes them, so that switching torch or the CUDA choice never reuses stale
    objects, and switching back finds its own still there."""
    import torch
    key = "\n".join([sys.implementation.cache_tag, torch.__version__,
                     str(torch.version.git_version), str(torch.version.cuda), archs or "cpu",
                     " ".join(cxx_flags)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    device = "cuda" if archs else "cpu"
    name = f"{sys.implementation.cache_tag}-torch{torch.__version__}-{device}-{digest}"
    root = os.environ.get("BCE_EXT_BUILD_DIR") or os.path.join(ROOT, "build")
    return os.path.join(os.path.abspath(root), "objects", name)


def cuda_instances():
    """One CUDA file per loss and direction, generated from the list of losses in
    csrc/losses/registry.h (its BCE_EXT_LOSSES entries), so that nvcc compiles the losses' kernels
    in parallel and a new loss needs no file of its own here. Written under build/generated/cuda
    only when their text changes (an unchanged tree recompiles nothing)."""
    with open(os.path.join(ROOT, "csrc", "losses", "registry.h")) as f:
        text = f.read()
    block = re.search(r"#define BCE_EXT_LOSSES\(X\)((?:.*\\\n)*.*)", text).group(1)
    names = re.findall(r"X\((\w+)\)", block)
    assert names, "no losses found in csrc/losses/registry.h"
    folder = os.path.join("build", "generated", "cuda")
    os.makedirs(os.path.join(ROOT, folder), exist_ok=True)
    paths = []
    for name in names:
        for direction, signature in (
                ("forward", "at::Tensor loss_forward_cuda<losses::{0}>(const LossCall&)"),
                ("backward", "TensorPair loss_backward_cuda<losses::{0}>(const LossCall&, "
                             "const at::Tensor&, std::array<bool, 2>)")):
            source = (f"// Generated by setup.py from csrc/losses/registry.h: the CUDA kernels of "
                      f"losses::{name}'s\n// {direction} op, every dtype and variant, in a "
                      f"translation unit of their own.\n"
                      f'#include "../../../csrc/losses/registry.h"\n'
                      f'#include "../../../csrc/cuda/loss_cuda_host.cuh"\n\n'
                      f"namespace bce_ext::cuda {{\n\n"
                      f"template {signature.format(name)};\n\n"
                      f"}}  // namespace bce_ext::cuda\n")
            path = os.path.join(folder, f"{name}_{direction}.cu")
            full = os.path.join(ROOT, path)
            if not os.path.exists(full) or open(full).read() != source:
                with open(full, "w") as f:
                    f.write(source)
            paths.append(path)
    return paths


def build_extension():
    home, archs = cuda_plan()
    if home is None and _flag("FORCE_CUDA"):
        sys.exit(f"[bce_ext setup] FORCE_CUDA=1 but the CUDA kernels cannot be built: {archs}")
    if home is not None:
        os.environ["CUDA_HOME"] = home  # read by torch.utils.cpp_extension at import
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/ops/*.cpp")
                     + glob.glob("csrc/cpu/*.cpp") + glob.glob("csrc/meta/*.cpp")
                     + glob.glob("csrc/autocast/*.cpp") + glob.glob("csrc/autograd/*.cpp")
                     + glob.glob("csrc/siglip/*.cpp"))
    # The CUDA build's kernels, or (without BCE_EXT_WITH_CUDA) the error that says they are missing.
    sources += ["csrc/cuda/loss_cuda_missing.cpp"]
    debug = _flag("BCE_EXT_DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    san_compile, san_link = sanitize_flags()
    cxx = opt + ["-fdiagnostics-color=always"] + openmp_flags() + san_compile
    macros = []
    kwargs = {"extra_link_args": shared_runtime_link_flags() + openmp_flags() + san_link}
    if home is not None:
        sources += sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/siglip/*.cu"))
        sources += cuda_instances()
        macros += [("BCE_EXT_WITH_CUDA", None), ("BCE_EXT_CUDA_ARCHS", f'"{archs}"')]
        # -isystem, not -I: searched after the toolkit's own headers, so they only fill its gaps.
        system = [f for inc in pip_toolkit_includes() for f in ("-isystem", inc)]
        # No --use_fast_math: log, log1p and division stay accurate (docs/behaviour.md).
        # --threads: nvcc compiles a file's architectures two at a time (more, beside ninja's one
        # job per core, can run a small machine out of memory).
        extra = {"cxx": cxx + system, "nvcc": opt + ["-lineinfo", "--threads=2"] + system}
        ext = CUDAExtension("bce_ext._C", sources, extra_compile_args=extra, define_macros=macros,
                            **kwargs)
        _say(f"building CPU and CUDA kernels (CUDA_HOME={home}, TORCH_CUDA_ARCH_LIST={archs})")
    else:
        ext = CppExtension("bce_ext._C", sources, extra_compile_args={"cxx": cxx},
                           define_macros=macros, **kwargs)
        _say(f"building CPU kernels only: {archs}")
    objects = build_folder(archs if home is not None else None, cxx)

    class BuildExt(BuildExtension):
        """torch's ninja build, its objects in build_folder() whatever folder setuptools or pip
        gives (the linked library still goes where they ask)."""

        def finalize_options(self):
            super().finalize_options()
            self.build_temp = objects

        def build_extensions(self):
            _say(f"objects in {objects}")
            super().build_extensions()

    return [ext], {"build_ext": BuildExt}


ext_modules, cmdclass = build_extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
