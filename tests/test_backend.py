"""nst_jax.backend: XLA flag defaults never override the user's, and none apply off a GPU."""

from nst_jax import backend


def test_merge_keeps_the_users_flags():
    flags = "--xla_gpu_autotune_level=2 --xla_dump_to=/tmp/x"
    merged = backend.merged_xla_flags(flags, {"xla_gpu_autotune_level": "0", "xla_gpu_enable_triton_gemm": "false"})
    assert merged == "--xla_gpu_autotune_level=2 --xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=false"
    assert backend.flag_names(merged) == {"xla_gpu_autotune_level", "xla_dump_to", "xla_gpu_enable_triton_gemm"}


def test_nothing_applied_by_default_or_off_a_gpu(monkeypatch):
    env = {"XLA_FLAGS": "--a=1"}
    assert backend.GPU_DEFAULTS == {}  # nothing enabled until measured on a GPU
    assert backend.apply_gpu_defaults(environ=env) == {}
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert backend.apply_gpu_defaults({"xla_gpu_autotune_level": "0"}, environ=env) == {}
    assert env == {"XLA_FLAGS": "--a=1"}
