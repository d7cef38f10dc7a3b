"""The one exception type that reaches users as a single line."""


class AeposeError(Exception):
    """A problem with the user's input (file, checkpoint, option) explained in one line.

    The CLI prints ``aepose: error: <message>`` and exits with status 2 instead of a
    traceback; library callers can catch it like any exception.
    """


class Interrupted(Exception):  # noqa: N818  (a stop, not an error)
    """Ctrl-C stopped a command after it saved what had finished; the message says where.

    The CLI prints ``aepose: interrupted; <message>`` and exits with status 130 (the
    shell's convention for SIGINT).
    """
