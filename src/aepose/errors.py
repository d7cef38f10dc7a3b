"""The exception types that reach users as a single line, and that line."""


class AeposeError(ValueError):
    """A problem with the user's input (file, checkpoint, option, setting) explained in one
    line.

    The CLI prints ``aepose: error: <message>`` and exits with status 1 instead of a
    traceback; library callers can catch it like any exception. A ValueError, so callers
    that catch bad values that way (configs, tracker inputs) keep working.
    """


class Interrupted(Exception):  # noqa: N818  (a stop, not an error)
    """Ctrl-C stopped a command after it saved what had finished; the message says where.

    The CLI prints ``aepose: interrupted; <message>`` and exits with status 130 (the
    shell's convention for SIGINT).
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (how containers, schedulers and torchrun stop a job) reached a command that
    handles it as Ctrl-C: what finished is kept. The CLI exits with status 143."""


def one_line(error: BaseException) -> str:
    """An exception as one line: an OS error by its file and the OS's words."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return " ".join(str(error).split())
