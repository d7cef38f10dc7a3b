"""The command line's parser class and value types: argparse with did-you-mean hints, one-line
errors and range-checked numbers. No torch, no app: ``aepose --help`` builds it in
milliseconds."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aepose.choices import FRAME_SIDES
from aepose.config import (
    MAX_INPUT_SIZE,
    MAX_TEST_SCALE,
    MIN_TEST_SCALE,
    PRESETS,
    did_you_mean,
    override_keys,
)

# --set sections an unknown ``--name VALUE`` may belong to, in the order they are suggested.
SET_SECTIONS = {"train": ("train", "model", "data", "test"),
                 "demo": ("train", "model", "data", "test"),
                 "test": ("test",), "predict": ("test",), "serve": ("test",)}
_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's own test for negative numbers


class Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean hint for unknown subcommands and options.

    Abbreviated options are refused: a typo should get a hint, not a silent match. An
    unknown option is reported before a missing required one, since the unknown one is
    usually the required one misspelt (``--wieghts``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.argv: list[str] = []
        self.set_sections: tuple[str, ...] = ()  # where ``--name`` may be a --set key

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # Kept for error(): argparse checks required options before it returns the extras.
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'?([\w-]+)'?", choice.group(2))
            message += did_you_mean(choice.group(1), options)
        elif message.startswith("the following arguments are required"):
            unknown = self._unknown(self.argv)
            if unknown:
                message = self._unrecognized(unknown)
        # One line, like every other error (the usage is one --help away).
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def given(self, option: str) -> bool:
        """Whether the command line named ``option`` (``--x V`` or ``--x=V``)."""
        tokens = self.argv[:self.argv.index("--")] if "--" in self.argv else self.argv
        return any(t == option or t.startswith(option + "=") for t in tokens)

    def reject_extras(self, extras: list[str]) -> None:
        """Unknown options, each with the closest option this (sub)command has."""
        self.error(self._unrecognized(extras))

    def _known(self) -> list[str]:
        return [o for action in self._actions for o in action.option_strings]

    def _unknown(self, argv: list[str]) -> list[str]:
        """The tokens of ``argv`` that look like options this parser lacks, with the value
        that follows each (if any)."""
        known = set(self._known())
        unknown: list[str] = []
        for i, token in enumerate(argv):
            if token == "--":
                break
            if token.startswith("-") and not _NUMBER.match(token) \
                    and token.split("=")[0] not in known:
                unknown.append(token)
                following = argv[i + 1] if i + 1 < len(argv) else ""
                if "=" not in token and following and not following.startswith("-"):
                    unknown.append(following)
        return unknown

    def _unrecognized(self, extras: list[str]) -> str:
        """``unrecognized arguments: ...``: stray arguments first, then each unknown option
        followed by its suggestion. The value that followed an unknown option is its own
        (``--cnf 0.2``): it appears only where the suggestion uses it (``--set key=0.2``),
        never after a suggestion, where it read as part of it (``did you mean '--conf'?
        0.2``)."""
        strays: list[str] = []
        hints: list[str] = []
        i = 0
        while i < len(extras):
            token = extras[i]
            i += 1
            if not token.startswith("-"):
                strays.append(token)
                continue
            value = extras[i] if i < len(extras) and "=" not in token \
                and not extras[i].startswith("-") else None
            hints.append(self._hint(token, value))
            i += value is not None
        return "unrecognized arguments: " + " ".join([*strays, *hints])

    def _hint(self, token: str, value: str | None) -> str:
        """``token`` with a suggestion: a config field as ``--set section.field=VALUE`` when
        its name is one, else the closest option."""
        name, _, inline = token.partition("=")
        key = _config_key(name.lstrip("-").replace("-", "_"), self.set_sections)
        if key is not None:
            shown = inline or value or "VALUE"
            return f"{token}{' ' + value if value and not inline else ''}; did you mean " \
                f"--set {key}={shown}?"
        return token + did_you_mean(name, self._known())


def _config_key(field: str, sections: Sequence[str]) -> str | None:
    """``section.field`` for the first of ``sections`` that has ``field``, else None."""
    keys = set(override_keys(next(iter(PRESETS.values()))))
    return next((f"{s}.{field}" for s in sections if f"{s}.{field}" in keys), None)


# argparse ``type=`` functions: a numeric option is range-checked where it enters, and a bad
# value is one line naming the option and the allowed range (``argument --batch-size: 0 is
# not an integer in [1, 4096]``). Every subcommand's numeric options use these.


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    allowed = f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not {allowed}")
        return value

    return parse


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high], or (low, high] with ``low_open``."""
    allowed = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}") from None
        inside = (low < value if low_open else low <= value) and value <= high
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"{value:g} is not {allowed}")
        return value

    return parse


def frame_size(text: str) -> tuple[int, int]:
    """An argparse type: ``WIDTHxHEIGHT``, each side in :data:`FRAME_SIDES`."""
    low, high = FRAME_SIDES
    width, x, height = text.lower().partition("x")
    try:
        size = (int(width), int(height)) if x else None
    except ValueError:
        size = None
    if size is None or not all(low <= side <= high for side in size):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not WIDTHxHEIGHT with sides in [{low}, {high}]")
    return size


MAX_COUNT = 10**9  # iterations, epochs, images: large enough for any real run
positive_int = int_in(1, MAX_COUNT)
non_negative_int = int_in(0, MAX_COUNT)
seed_int = int_in(0, 2**31 - 1)  # NumPy and torch both take it as it is
batch_size_int = int_in(1, 4096)
workers_int = int_in(0, 256)
# Multiples of 32 only (HRNet's stride) are refused later with their own message.
input_size_int = int_in(32, MAX_INPUT_SIZE)
fraction = float_in(0.0, 1.0)  # thresholds, OKS, scores
# The config's own range for test scales: below it an image shrinks to a few heatmap pixels,
# above it one image asks for gigabytes.
test_scale = float_in(MIN_TEST_SCALE, MAX_TEST_SCALE)


def onnx_opset(text: str) -> int:
    """An argparse type: an ONNX opset the installed exporter writes as asked.

    Measured with torch 2.13: the dynamo exporter writes opset 18 and converts it down with
    onnx's version converter; below 16 the conversion fails and it writes 18 instead, and
    above the newest opset the onnx package knows, too. Those are refused here.
    """
    try:
        import onnx  # the export extra; only needed when --opset is given
    except ImportError:
        raise argparse.ArgumentTypeError("needs pip install 'aepose[export]'") from None
    return int_in(_MIN_ONNX_OPSET, onnx.defs.onnx_opset_version())(text)


_MIN_ONNX_OPSET = 16


