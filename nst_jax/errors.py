"""The one exception type the library raises for problems a user can fix."""


class NSTError(Exception):
    """A bad input, file or setting, described in one line.

    Command-line tools print ``str(err)`` on stderr and exit non-zero; they
    never show a traceback for this type.
    """
