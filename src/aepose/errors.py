"""The one exception type that reaches users as a single line."""


class AeposeError(Exception):
    """A problem with the user's input (file, checkpoint, option) explained in one line.

    The CLI prints ``aepose: error: <message>`` and exits with status 2 instead of a
    traceback; library callers can catch it like any exception.
    """
