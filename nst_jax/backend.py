"""GPU XLA options that trade compile time for run time: applied only where chosen, and never over the user's.

On an H200 one 512 px CLI run spent 86 s compiling and 2.1 s running (issue 20). Much of XLA:GPU's
compile time goes to autotuning: timing candidate cuDNN convolution algorithms and Triton GEMM
tilings on the device. This module holds the options that trade that time against run time:

==========================================  ==============================================================
``--xla_gpu_autotune_level=N``              0 takes the first algorithm and times none; 4 (XLA's default)
                                            times every candidate and checks results.
``--xla_gpu_enable_triton_gemm=false``      matmuls through cuBLAS, no Triton GEMM fusion to tune.
``--xla_gpu_per_fusion_autotune_cache_dir`` XLA's autotune results on disk, next to JAX's persistent cache,
                                            so a new program reuses the timings of the convolutions it
                                            shares with an earlier one (another aspect ratio does not).
==========================================  ==============================================================

**Nothing is enabled by default.** :data:`GPU_DEFAULTS` is empty until a GPU measurement
(``scripts/device_report.py``'s cold-start rows at each ``--xla-autotune-level``) shows which of
these options shorten the first image without slowing the steps; a choice goes in with its
measured numbers. :func:`apply_gpu_defaults` is the one place that applies them: only on a GPU
backend, only for flags absent from ``XLA_FLAGS``, and only before JAX has created its GPU
backend (XLA reads ``XLA_FLAGS`` once, when it starts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Flag name (without the leading "--") -> value, applied by apply_gpu_defaults. Empty: no default has
# been measured yet (see the module docstring); scripts/device_report.py measures the candidates below.
GPU_DEFAULTS: dict[str, str] = {}

# The options a device report measures (not applied by default).
CANDIDATES: dict[str, str] = {
    "xla_gpu_autotune_level": "0",
    "xla_gpu_enable_triton_gemm": "false",
}


def flag_names(xla_flags: str) -> set[str]:
    """The flag names set in an ``XLA_FLAGS`` string: ``"--a=1 --b"`` -> ``{"a", "b"}``."""
    return {part.lstrip("-").split("=", 1)[0] for part in xla_flags.split() if part.startswith("--")}


def merged_xla_flags(xla_flags: str, defaults: Mapping[str, str]) -> str:
    """``xla_flags`` with each of ``defaults`` appended unless already set there."""
    present = flag_names(xla_flags)
    extra = [f"--{name}={value}" for name, value in defaults.items() if name not in present]
    return " ".join([xla_flags.strip(), *extra]).strip()


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:
        return True


def gpu_present() -> bool:
    """Whether the platform JAX will pick is a GPU, without starting a backend where it can be avoided.

    ``JAX_PLATFORMS`` decides when set; otherwise an installed CUDA/ROCm plugin and a visible device
    (``nvidia-smi``-free check: ``/dev/nvidia0`` or ``/dev/kfd``).
    """
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms:
        return platforms.split(",")[0] in ("cuda", "gpu", "rocm")
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/kfd")


def apply_gpu_defaults(defaults: Mapping[str, str] | None = None,
                       environ: dict[str, str] | None = None) -> dict[str, str]:
    """Adds ``defaults`` (:data:`GPU_DEFAULTS` if None) to ``XLA_FLAGS`` where the user set none of them.

    Only on a GPU and only before JAX has started its backends (afterwards XLA no longer reads
    ``XLA_FLAGS``, and nothing is changed). Returns the flags it added (empty when it added none).
    """
    environ = os.environ if environ is None else environ
    defaults = GPU_DEFAULTS if defaults is None else defaults
    if not defaults or not gpu_present() or _backend_started():
        return {}
    current = environ.get("XLA_FLAGS", "")
    present = flag_names(current)
    added = {k: v for k, v in defaults.items() if k not in present}
    if added:
        environ["XLA_FLAGS"] = merged_xla_flags(current, added)
    return added
