"""The README's "Use as a library" examples, run in order as written."""

import os
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def library_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("## Use as a library", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_use_as_a_library_examples_run(monkeypatch):
    blocks = library_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(README.parent)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    ns = namespace
    assert ns["gram"].shape == (128, 128)
    assert np.isfinite(float(ns["total"])) and ns["grad"].shape == ns["photo"].shape
    assert ns["totals"].shape == (2,)
    assert ns["images"].shape == (3, *ns["photo"].shape)
    # More style weight, less style loss: the three members differ in the expected direction.
    style = [float(ns["loss"](ns["vgg"], im, ns["targets"], ns["weights"])[1]["style"]) for im in ns["images"]]
    assert style[0] > style[1] > style[2], style
    assert ns["history"][-1] < ns["history"][0]  # the Flax model's perceptual loss falls
    assert ns["result"].image.shape == ns["photo"].shape
    assert os.getcwd() == str(README.parent)
