"""``nst-jax serve``: a local page that runs the command line's jobs and shows them paint.

* :mod:`nst_jax.studio._jobs`: what a job is (a request mapped to the command line's own options,
  resolved and run by the same library calls), the queue that runs them one at a time, and the jobs
  directory they live in (it survives a restart).
* :mod:`nst_jax.studio._app`: the JSON API and the page (Starlette), with the checks on what a
  client sends.
* :mod:`nst_jax.studio._serve`: the ``nst-jax serve`` command (uvicorn).

Needs the ``studio`` extra (``pip install -e '.[studio]'``).
"""
