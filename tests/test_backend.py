"""nst_jax._src.backend: XLA options are added to XLA_FLAGS, never over the user's; the GPU check follows
JAX_PLATFORMS."""

import pytest

from nst_jax._src import backend


def test_merge_keeps_the_users_flags():
    flags = "--xla_gpu_autotune_level=2 --xla_dump_to=/tmp/x"
    merged = backend.merged_xla_flags(flags, {"xla_gpu_autotune_level": "0", "xla_gpu_enable_triton_gemm": "false"})
    assert merged == "--xla_gpu_autotune_level=2 --xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=false"
    assert backend.flag_names(merged) == {"xla_gpu_autotune_level", "xla_dump_to", "xla_gpu_enable_triton_gemm"}
    assert backend.merged_xla_flags("", {"a": "1"}) == "--a=1"


@pytest.mark.parametrize("platforms,gpu", [("cpu", False), ("cuda", True), ("gpu,cpu", True), ("ROCM", True),
                                           ("tpu", False), ("cpu,cuda", False)])
def test_jax_platforms_decides_the_gpu_check(monkeypatch, platforms, gpu):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert backend.gpu_present() is gpu
