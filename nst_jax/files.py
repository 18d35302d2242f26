"""Everything nst_jax reads and writes on disk, in one public namespace.

* **Images**: :func:`load_image`, :func:`save_image` (atomic, with an sRGB profile and the run
  record), :func:`open_image`, :func:`image_format`, :func:`check_output_path` (a probe write before
  any compute), :func:`check_output_size` (whether the format holds the run's size), :func:`header_shape` (an image's
  shape at a size, from its header alone), and the size
  limits :data:`DEFAULT_SIZE`, :data:`MIN_SIZE`, :data:`MAX_SIZE`.
* **Run records** an image carries: :func:`read_record`, :func:`check_record_fits`,
  :data:`RECORD_KEY` (what a record holds: :mod:`nst_jax.spec`).
* **Checkpoints**: :class:`Checkpoint`, :func:`save_checkpoint`, :func:`load_checkpoint`,
  :func:`run_record` (what a run's result depends on) and :func:`run_differences`.
* **Figures**: :func:`labelled_grid`, :func:`save_sheet`, :func:`save_json`.
* **Weights**: :data:`DEFAULT_VGG_FILE`, the shipped VGG-19 (``nst_jax.load_vgg19`` reads it).

Every writer here writes a temporary file in the target directory and renames it into place, so a
reader never sees a partial file.
"""

from nst_jax._src.checkpoint import Checkpoint, load_checkpoint, run_differences, run_record, save_checkpoint
from nst_jax._src.figures import labelled_grid, save_json, save_sheet
from nst_jax._src.image import (
    DEFAULT_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    check_output_path,
    check_output_size,
    header_shape,
    image_format,
    load_image,
    open_image,
    save_image,
)
from nst_jax._src.record import RECORD_KEY, check_record_fits, read_record
from nst_jax._src.vgg_io import DEFAULT_VGG_FILE

__all__ = [
    "DEFAULT_SIZE",
    "DEFAULT_VGG_FILE",
    "MAX_SIZE",
    "MIN_SIZE",
    "RECORD_KEY",
    "Checkpoint",
    "check_output_path",
    "check_output_size",
    "check_record_fits",
    "header_shape",
    "image_format",
    "labelled_grid",
    "load_checkpoint",
    "load_image",
    "open_image",
    "read_record",
    "run_differences",
    "run_record",
    "save_checkpoint",
    "save_image",
    "save_json",
    "save_sheet",
]
