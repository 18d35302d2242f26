"""Scores of stylised images by a judge the optimisation never sees (the ``eval`` extra).

* :class:`Evaluator`: the VGG-19 ratios of outputs against one content photo and style image,
  plus, with a :class:`Judge` (ImageNet VGG-16 and the LPIPS heads), the judge's ratios.
* :func:`optional_judge` / :func:`load_judge`: that judge, or None where the extra is not
  installed or the outputs are smaller than :data:`JUDGE_MIN_SIDE`.
"""

from nst_jax._src.metrics import JUDGE_MIN_SIDE, Evaluator, Judge, load_judge, optional_judge

__all__ = [
    "JUDGE_MIN_SIDE",
    "Evaluator",
    "Judge",
    "load_judge",
    "optional_judge",
]
