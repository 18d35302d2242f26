"""Neural style transfer (Gatys et al.) in JAX/Flax."""

import os

# jaxlib's CPU LAPACK kernels (eigh, used by the W2 style loss) run on SciPy's OpenBLAS, whose
# own thread pool competes with XLA's: measured 0.02 s vs 0.8-3 s per 512x512 eigh on 2 busy
# cores. One OpenBLAS thread unless the user chose otherwise (effective when nst_jax is imported
# before SciPy's OpenBLAS is loaded, i.e. before jax runs its first LAPACK call).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
