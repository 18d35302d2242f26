"""Neural style transfer from the command line: the same tool as the ``nst-jax`` console script.

  python scripts/stylize.py --content photo.jpg --style painting.jpg --output out.png
"""

import sys

from nst_jax.cli._stylize import main

if __name__ == "__main__":
    sys.exit(main())
