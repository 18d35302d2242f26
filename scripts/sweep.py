"""A grid of style transfers as one compiled program: the same tool as the ``nst-jax-sweep`` console script.

  python scripts/sweep.py --content photo.jpg --style painting.jpg --output-dir sweep/ --style-weights 1:100:5
"""

import sys

from nst_jax.cli._sweep import main

if __name__ == "__main__":
    sys.exit(main())
