"""The one exception type the library raises for problems a user can fix."""


class NSTError(Exception):
    """A bad input, file or setting, described in one line.

    Command-line tools print ``str(err)`` on stderr and exit non-zero; they
    never show a traceback for this type.
    """


class NumericalError(NSTError):
    """The loss or the image stopped being finite (NaN or Inf) during an optimisation.

    Attributes:
        step: The step of the last image that was still finite.
        image: That image, ``[H, W, 3]`` float32 numpy (unclipped); ``[K, H, W, 3]`` from a sweep.
        members: Indices of the sweep members that failed (``[0]`` for a single run).
    """

    def __init__(self, message: str, *, step: int, image, members=(0,)):
        super().__init__(message)
        self.step = step
        self.image = image
        self.members = [int(m) for m in members]
