"""The one exception type that reaches users as a single line."""


class AeposeError(ValueError):
    """A problem with the user's input (file, checkpoint, option, setting) explained in one line.

    The CLI prints ``aepose: error: <message>`` and exits with status 1 instead of a
    traceback. It is a ValueError, so library callers may catch it as either.
    """
