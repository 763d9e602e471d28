"""Pin and record the numerical environment of a run: threads, BLAS/oneDNN settings, determinism.

Why (measured with ``benchmarks/determinism.py``, torch 2.14.1 on a 2-core AMD EPYC Zen 4 VM; tables
in ``docs/determinism.md``): the same seed and data give other weights (SHA-256 of the ``state_dict``
after 1-4 SGD steps, teacher and student alike) when

* the thread count changes (1 vs 2): oneDNN splits convolution reductions across threads;
* oneDNN's instruction set changes (``ONEDNN_MAX_CPU_ISA=AVX2``: ``jit:avx2`` instead of
  ``jit:avx512_core`` for all 32 convolution primitives, ``gemm:jit`` for one backward-weights);
* torch's own vectorised kernels change (``ATEN_CPU_CAPABILITY=avx2``: batch norm, losses, ...);
* MKL's code path changes (``MKL_CBWR=COMPATIBLE``; MKL runs the ``fc`` layer's GEMMs).

Capping both ISAs at AVX2 on the AVX-512 machine gave the same bytes as an AVX2 EPYC emulated with
qemu (Rome and Milan models, other L1/L2/L3 sizes), so these pins make CPU generations agree, at
about +25 % step time: opt-in (``portable=True``). Without oneDNN (``torch.backends.mkldnn.enabled =
False``) the result no longer depends on the thread count but still on ATen's ISA, at 5-6x the time.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

from kdinterp.core.errors import KdinterpError

__all__ = ["DEFAULT_THREADS", "DeviceError", "ENV_KEYS", "PINNED_DEFAULTS", "PORTABLE_ISA", "configure_torch", "environment_record",
           "pin_environment", "resolve_device"]

class DeviceError(KdinterpError, RuntimeError):
    """A params ``device`` that this machine does not have (``cuda`` without a GPU)."""


#: Threads when neither the caller nor ``OMP_NUM_THREADS`` says otherwise: the reference results were
#: made on 2-core machines with torch's default (one thread per core), and the thread count changes them.
DEFAULT_THREADS = 2

#: Pinned when unset. MKL_DYNAMIC=FALSE: MKL may not use fewer threads than asked (torch already calls
#: mkl_set_dynamic(0): MKL_VERBOSE shows Dyn:0 either way; pinned for code that calls MKL before torch).
#: MKL_CBWR=AUTO: MKL's conditional numerical reproducibility (results independent of memory alignment)
#: on the CPU's own code path; same bytes as unpinned on the AMD EPYC measured (MKL maps AVX2 and AVX512 to
#: AUTO on AMD CPUs: MKL_VERBOSE shows CNR:AUTO). CUBLAS_WORKSPACE_CONFIG: needed by deterministic cuBLAS
#: (torch's reproducibility notes, CUDA >= 10.2).
PINNED_DEFAULTS = {"MKL_DYNAMIC": "FALSE", "MKL_CBWR": "AUTO", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}

#: Pinned by ``pin_environment(portable=True)`` when unset: oneDNN's and ATen's kernels of an AVX2 CPU and
#: MKL's COMPATIBLE path, the one MKL branch that is the same on Intel and AMD CPUs.
PORTABLE_ISA = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}

#: Environment variables that change CPU/GPU numerics; recorded by :func:`environment_record`.
ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DYNAMIC", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
            "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_CPU_ISA_HINTS", "ATEN_CPU_CAPABILITY",
            "CUBLAS_WORKSPACE_CONFIG", "KMP_DETERMINISTIC_REDUCTION")

_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
              "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def pin_environment(threads: int | None = None, *, portable: bool = False) -> None:
    """Set the environment variables that fix the numerics, before torch is imported.

    MKL, oneDNN and OpenMP read them once, when torch loads them: call this first thing in a command.
    A variable the user already set is never overridden.

    Args:
        threads: intra-op threads; default ``OMP_NUM_THREADS`` if set, else :data:`DEFAULT_THREADS`.
            Written to ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` where unset; :func:`configure_torch`
            applies it with ``torch.set_num_threads``. Other thread counts give other weights.
        portable: also pin :data:`PORTABLE_ISA` (oneDNN and ATen capped at AVX2, MKL's COMPATIBLE path):
            AVX2 and AVX-512 CPUs then compute the same bytes (checked against qemu-emulated AVX2 EPYCs),
            for about +25 % time per training step on an AVX-512 CPU. Off by default: it changes every
            result of AVX-512 machines, which made the reference outputs.
    """
    n = threads if threads is not None else (_env_threads() or DEFAULT_THREADS)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    os.environ["KDINTERP_THREADS"] = str(n)
    pins = {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n), **PINNED_DEFAULTS,
            **(PORTABLE_ISA if portable else {})}
    for key, value in pins.items():
        if not os.environ.get(key):
            os.environ[key] = value


def configure_torch(threads: int | None = None) -> None:
    """Apply the run settings to torch (after importing it).

    * ``torch.set_num_threads``: ``threads``, else the count chosen by :func:`pin_environment`, else
      ``OMP_NUM_THREADS``, else :data:`DEFAULT_THREADS`.
    * ``torch.use_deterministic_algorithms(True)``: ops without a deterministic implementation raise
      (on the CPU none of the pipeline's; checked by training the ResNets and upsampling bilinearly).
      Where CUDA is available ``warn_only=True``: the backward of ``AdaptiveAvgPool2d`` (every ResNet)
      has no deterministic CUDA kernel and would raise (torch docs of ``use_deterministic_algorithms``).
    * cuDNN: ``benchmark=False`` (no timing-based algorithm choice), ``deterministic=True``.
    """
    import torch

    n = threads or int(os.environ.get("KDINTERP_THREADS", 0)) or _env_threads() or DEFAULT_THREADS
    torch.set_num_threads(n)
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def resolve_device(choice: str = "auto", key: str = "device") -> Any:
    """The ``torch.device`` for a params ``device`` setting: ``auto`` -> CUDA when available, else CPU.

    Args:
        choice: ``auto``, ``cpu`` or ``cuda``.
        key: the dotted params key it comes from (``dissection.device``), for the message.

    Raises:
        DeviceError: ``cuda`` was asked for but no CUDA device is available.
    """
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"params.yaml {key}: 'cuda', but no CUDA device is available on this machine "
                          f"(torch.cuda.is_available() is False); set {key}: auto or cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def _config_version(pattern: str, config: str) -> str | None:
    match = re.search(pattern, config)
    return match.group(1).strip() if match else None


def _cpu() -> dict[str, Any]:
    """CPU model, relevant instruction-set flags and cache sizes (Linux: /proc/cpuinfo and sysfs)."""
    info: dict[str, Any] = {"machine": platform.machine(), "logical_cpus": os.cpu_count()}
    try:
        first = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split("\n\n")[0]
    except OSError:  # not Linux
        info.update(model=platform.processor() or None, flags=None, caches=None)
        return info
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    present = set(fields.get("flags", "").split())
    info.update(model=fields.get("model name"), vendor=fields.get("vendor_id"),
                family=fields.get("cpu family"), model_number=fields.get("model"),
                flags=[f for f in _CPU_FLAGS if f in present])
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size, shared = (
                (index / name).read_text().strip() for name in ("level", "type", "size", "shared_cpu_list"))
        except OSError:
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        sharing = sum(int(b) - int(a) + 1 for a, _, b in (p.partition("-") if "-" in p else (p, "", p)
                                                          for p in shared.split(",") if p))
        caches[name] = f"{size} shared by {sharing} cpus"
    info["caches"] = caches or None
    return info


def environment_record() -> dict[str, Any]:
    """A JSON-serialisable description of what produced a model, for its metadata.

    No timestamps or host names: the record goes into files whose bytes must be reproducible.
    Versions of MKL and oneDNN are parsed from ``torch.__config__.show()`` (the versions torch was
    built with and links statically); the ATen vector ISA is ``torch.backends.cpu.get_cpu_capability()``.
    """
    import torch

    config = torch.__config__.show()
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "system": platform.system(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "mkl": {"available": torch.backends.mkl.is_available(),
                "version": _config_version(r"Math Kernel Library Version (.*?)(?: for |\n)", config),
                "source": "torch.__config__.show()"},
        "onednn": {"available": torch.backends.mkldnn.is_available(), "enabled": torch.backends.mkldnn.enabled,
                   "version": _config_version(r"(?:MKL-DNN|oneDNN) v([\w.]+)", config),
                   "commit": _config_version(r"(?:MKL-DNN|oneDNN) v[\w.]+ \(Git Hash (\w+)\)", config),
                   "source": "torch.__config__.show()"},
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": _cpu(),
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "env": {key: os.environ.get(key) for key in ENV_KEYS},
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }
