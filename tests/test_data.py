"""The sample images shipped in the package (``nst_jax.data``)."""

import numpy as np
import pytest

import nst_jax

from .conftest import run_script


def test_load_reads_the_named_file():
    for name in nst_jax.data.NAMES:
        image = nst_jax.data.load(name)
        assert image.dtype == np.float32 and image.shape[2] == 3 and max(image.shape[:2]) == 256
        np.testing.assert_array_equal(image, nst_jax.load_image(nst_jax.data.path(name)))
    assert nst_jax.data.load("chelsea", 64).shape == (42, 64, 3)


@pytest.mark.parametrize("name, hint", [("chelsa", "did you mean 'chelsea'?"), ("cat", "choose from chelsea, swirls")])
def test_unknown_name_is_one_line(name, hint):
    with pytest.raises(nst_jax.NSTError, match="no sample image") as caught:
        nst_jax.data.path(name)
    assert hint in str(caught.value) and "\n" not in str(caught.value)


def test_files_are_what_the_script_makes(tmp_path):
    """The shipped files are the script's output from examples/ (pixels within one level)."""
    proc = run_script("make_package_data.py", "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in nst_jax.data.NAMES:
        made = nst_jax.load_image(tmp_path / f"{name}.png")
        np.testing.assert_allclose(made, nst_jax.data.load(name), atol=1.01 / 255)
