"""XLA options set through ``XLA_FLAGS``, never over the user's, and a GPU check that starts no backend.

XLA reads ``XLA_FLAGS`` once, when JAX starts a backend, so options must be in the environment
before then: :func:`gpu_present` tells whether JAX will pick a GPU without starting one, and
:func:`merged_xla_flags` adds options to a flag string without overriding any the user set. The
test suite uses both to choose its CPU compile options (``tests/conftest.py``); the library itself
sets no XLA option (``scripts/device_report.py`` measures GPU candidates such as
``--xla_gpu_autotune_level``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def flag_names(xla_flags: str) -> set[str]:
    """The flag names set in an ``XLA_FLAGS`` string: ``"--a=1 --b"`` -> ``{"a", "b"}``."""
    return {part.lstrip("-").split("=", 1)[0] for part in xla_flags.split() if part.startswith("--")}


def merged_xla_flags(xla_flags: str, defaults: Mapping[str, str]) -> str:
    """``xla_flags`` with each of ``defaults`` appended unless already set there."""
    present = flag_names(xla_flags)
    extra = [f"--{name}={value}" for name, value in defaults.items() if name not in present]
    return " ".join([xla_flags.strip(), *extra]).strip()


def gpu_present() -> bool:
    """Whether the platform JAX will pick is a GPU, without starting a backend where it can be avoided.

    ``JAX_PLATFORMS`` decides when set; otherwise an installed CUDA/ROCm plugin and a visible device
    (``nvidia-smi``-free check: ``/dev/nvidia0`` or ``/dev/kfd``).
    """
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms:
        return platforms.split(",")[0] in ("cuda", "gpu", "rocm")
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/kfd")
