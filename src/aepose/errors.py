"""The one exception type that reaches users as a single line."""


class AeposeError(ValueError):
    """A problem with the user's input (file, checkpoint, option, setting) explained in one
    line.

    The CLI prints ``aepose: error: <message>`` and exits with status 1 instead of a
    traceback; library callers can catch it like any exception. A ValueError, so callers
    that catch bad values that way (configs, tracker inputs) keep working.
    """
