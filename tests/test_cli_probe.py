"""The XLA_FLAGS probe (nst_jax/cli/_common.py: probe_xla_flags): a flag XLA refuses is one line and exit 5,
found in a fresh child interpreter, never a fork of this process (whose JAX threads run: the suite's)."""

import os
import warnings

import pytest

from nst_jax.cli import _common as common
from nst_jax.cli import _sweep as sweep_cli

from .conftest import EXAMPLES

KNOWN = "--xla_llvm_disable_expensive_passes=true"  # a flag every XLA build knows
UNKNOWN = "--xla_nst_jax_no_such_flag=1"


@pytest.fixture
def fresh_probe(monkeypatch):
    """The probe's per-value cache emptied before and after, and os.fork refused."""
    def no_fork():
        raise AssertionError("the probe forked this process")

    monkeypatch.setattr(os, "fork", no_fork)
    common._probe.cache_clear()
    yield
    common._probe.cache_clear()


def test_a_run_with_xla_flags_set_neither_forks_nor_warns(fresh_probe, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XLA_FLAGS", KNOWN)
    argv = [str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "swirls.png"), "--output-dir", str(tmp_path / "sweep"),
            "--size", "64", "--dry-run"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sweep_cli.main(argv) == 0, capsys.readouterr().err
    assert [str(w.message) for w in caught] == []
    assert common._probe.cache_info().misses == 1  # it did probe
    common.probe_xla_flags()
    assert common._probe.cache_info().hits == 1  # once per value


def test_a_flag_xla_refuses_is_exit_5_naming_it(fresh_probe, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XLA_FLAGS", f"{KNOWN} {UNKNOWN}")
    argv = [str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "swirls.png"), "--output-dir", str(tmp_path / "sweep")]
    assert sweep_cli.main(argv) == 5
    err = capsys.readouterr().err
    assert err.startswith("error: XLA_FLAGS:") and UNKNOWN in err and err.count("\n") == 1, err
    assert not (tmp_path / "sweep").exists()
