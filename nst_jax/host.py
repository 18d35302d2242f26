"""The host side of a run, for programs that drive the library themselves (the command line does).

* :class:`Plan` / :func:`make_plan`: the inputs of one run checked once, before anything is compiled;
  :func:`nst_jax.stylize` and :func:`nst_jax.sweep` accept one as ``plan=``.
* :func:`check_memory` / :func:`memory_limit_from_env`: refuse a run that would not fit in memory,
  before it allocates.
* :func:`resumed_level`: the level a multi-scale run's checkpoint was taken at.
* :func:`member_mesh` / :data:`MEMBERS`: the device mesh a sweep shards its members over.
* :class:`Progress`: what a ``callback`` receives between compiled chunks of steps.
"""

from nst_jax._src.driver import MEMBERS, Progress, member_mesh
from nst_jax._src.memory import check_memory, memory_limit_from_env
from nst_jax._src.multiscale import resumed_level
from nst_jax._src.plan import Plan, make_plan

__all__ = [
    "MEMBERS",
    "Plan",
    "Progress",
    "check_memory",
    "make_plan",
    "member_mesh",
    "memory_limit_from_env",
    "resumed_level",
]
