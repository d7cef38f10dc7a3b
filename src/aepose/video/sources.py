"""Input sources for prediction: what each command-line argument names.

:func:`expand_sources` turns arguments into an ordered list of :class:`SourceItem` (media
files and streams) plus one-line problems for the arguments that yield nothing, so a run
can report bad inputs and finish the rest. Besides files, folders and glob patterns it
recognises frame sources that are not files (streams): webcam indices (``0``), URLs
(``rtsp://``, ``http(s)://`` ...) and image sequences given as a printf pattern
(``frames/%05d.png``); which files such a pattern names (FFmpeg image2's grammar and
numbering rule) is decided here too (:func:`sequence_files`). Nothing is opened or decoded
here: :mod:`aepose.video.readers` reads the frames of the items this module names.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from aepose.errors import AeposeError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LIVE_SCHEMES",
    "MAX_SEQUENCE_WIDTH",
    "SEQUENCE_START_RANGE",
    "STREAM_SCHEMES",
    "VIDEO_EXTENSIONS",
    "SequenceFiles",
    "SourceItem",
    "Sources",
    "expand_sources",
    "is_local_sequence",
    "sequence_files",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})

Kind = Literal["image", "video"]


STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"})
"""URL schemes read as video streams (through OpenCV's FFmpeg backend)."""
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "udp", "tcp", "srt"})
"""Schemes of live streams (frames dropped when processing falls behind). An http(s) URL is
live unless its path ends in a video extension (``http://host/clip.mp4`` is a file) or
names an image sequence (``http://host/frames/%05d.png``)."""

_PRINTF = re.compile(r"%0?\d*d")  # the frame-number field of an image-sequence pattern
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class SourceItem:
    """One media file or stream to predict on.

    ``path`` is spelled as the user (or the glob) gave it; for a stream (``url`` set: a
    webcam index, a URL or an image-sequence pattern, as given) it is a short name for the
    outputs (``webcam0``, ``clip`` for ``http://host/clip.mp4``, the pattern's folder).
    ``live``: a camera or live stream, whose frames are dropped when processing falls behind.
    """

    path: Path
    kind: Kind
    url: str | None = None
    live: bool = False

    @property
    def name(self) -> str:
        """The source as the user named it (the URL, webcam index or file path)."""
        return self.url if self.url is not None else str(self.path)


@dataclass(frozen=True)
class Sources:
    """Expanded inputs: the files in order, and one ``"PATH: reason"`` line per bad argument."""

    items: tuple[SourceItem, ...]
    problems: tuple[str, ...]


def _kind(path: Path) -> Kind | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def _folder_media(folder: Path, recursive: bool) -> tuple[list[SourceItem], list[str]]:
    """The images and videos in ``folder`` (and below it when ``recursive``, through symbolic
    links to folders too), sorted, and one problem line per link that loops or leads
    nowhere."""
    # Hidden files and folders are skipped: editors' and OSes' droppings (._x.jpg,
    # .ipynb_checkpoints) and half-written temporary files (our atomic writes use hidden
    # names) are not inputs.
    files: list[Path] = []
    problems: list[str] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of every folder scanned
    for root, dirs, names in os.walk(folder, followlinks=True):
        status = os.stat(root)
        if (status.st_dev, status.st_ino) in seen:  # a link back into scanned folders
            problems.append(f"{root}: symbolic link loop (a folder already scanned), skipped")
            dirs[:] = []
            continue
        seen.add((status.st_dev, status.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            path = Path(root) / name
            if name.startswith("."):
                continue
            if path.is_symlink() and not path.exists():
                problems.append(f"{path}: broken or looping symbolic link, skipped")
            elif _kind(path) is not None and path.is_file():
                files.append(path)
        if not recursive:
            break
    return [SourceItem(p, _kind(p) or "image") for p in sorted(files)], problems


def _glob_media(pattern: str) -> list[SourceItem]:
    # Files the pattern matches that are not media (a README under "data/*") are skipped
    # silently; listing each one as a problem would bury the real ones.
    items = []
    for name in sorted(glob.glob(pattern, recursive=True)):
        path = Path(name)
        kind = _kind(path)
        if kind is not None and path.is_file():
            items.append(SourceItem(path, kind))
    return items


def _expand_one(source: str, recursive: bool) -> tuple[list[SourceItem], list[str]]:
    """The items one argument names, and its problem lines (one when it names nothing)."""
    path = Path(source)
    found = _file_type(path)
    if found == "folder":
        items, problems = _folder_media(path, recursive)
        where = "folder or its subfolders" if recursive else "folder"
        return items, problems if items else [
            *problems, f"{source}: no images or videos in this {where}"]
    if found == "file":
        kind = _kind(path)
        if kind is None:
            suffix = repr(path.suffix) if path.suffix else "(no extension)"
            return [], [f"{source}: unsupported file type {suffix}"]
        return [SourceItem(path, kind)], []
    if found == "link":
        return [], [f"{source}: broken or looping symbolic link"]
    stream = _stream_item(source)
    if stream is not None:
        return stream
    if _is_glob(source):
        items = _glob_media(source)
        return items, [] if items else [f"{source}: pattern matches no image or video files"]
    return [], [f"{source}: no such file or folder"]


def _file_type(path: Path) -> Literal["folder", "file", "link"] | None:
    """What ``path`` is: a folder, a file, a symbolic link leading nowhere, or nothing (also
    for a name the system refuses to look up, such as one over 255 bytes: a pattern's)."""
    try:
        if path.is_dir():
            return "folder"
        if path.is_file():
            return "file"
        return "link" if path.is_symlink() else None
    except OSError:  # ENAMETOOLONG: pathlib's tests only absorb "no such file"
        return None


def _stream_item(source: str) -> tuple[list[SourceItem], list[str]] | None:
    """The stream ``source`` names (webcam index, URL, image-sequence pattern), or None when
    it names no stream; a URL of another scheme or a pattern matching no file is a problem."""
    url = _URL.match(source)
    if url:
        scheme = url.group(1).lower()
        if scheme not in STREAM_SCHEMES:
            return [], [f"{source}: unsupported URL scheme {scheme!r} (streams: "
                        f"{', '.join(sorted(STREAM_SCHEMES))})"]
        file = Path(urlsplit(source).path)
        # A remote image sequence (http://host/frames/%05d.png) is files too: never live.
        sequence = file.suffix.lower() in IMAGE_EXTENSIONS and bool(_PRINTF.search(file.name))
        is_file = file.suffix.lower() in VIDEO_EXTENSIONS or sequence
        live = scheme in LIVE_SCHEMES or not is_file
        stem = file.parent.name if sequence else file.stem  # as a local sequence is named
        name = stem or urlsplit(source).hostname or "stream"
        return [SourceItem(Path(name), "video", url=source, live=live)], []
    if source.isdigit():
        return [SourceItem(Path(f"webcam{int(source)}"), "video", url=source, live=True)], []
    if _PRINTF.search(source):
        try:
            matched = glob.glob(_sequence_glob(source))
        except AeposeError as error:  # a pattern FFmpeg would refuse too
            return [], [str(error)]
        if not matched:
            return [], [f"{source}: image-sequence pattern matches no files"]
        folder = Path(source).parent  # names the outputs ('.' by the folder's own name)
        stem = folder.name or folder.resolve().name or "sequence"
        return [SourceItem(Path(stem), "video", url=source)], []
    return None


def expand_sources(sources: Sequence[str], *, recursive: bool = False) -> Sources:
    """Expand image files, folders, glob patterns, video files and streams into sources.

    Args:
        sources: each entry is an image file (``.jpg .jpeg .png .bmp .webp .tif .tiff``), a
            video file (``.mp4 .avi .mov .mkv .webm .m4v``), a folder (the images and videos
            directly in it, sorted by path, hidden files skipped), a glob pattern
            (``data/*.jpg``; ``**`` matches any depth), a webcam index (``0``: when no file
            of that name exists), a stream URL (schemes :data:`STREAM_SCHEMES`) or an image
            sequence as a printf pattern (``frames/%05d.png``: numbered files read as one
            video, numbering from 0 to 4 onwards, FFmpeg's rule). Extensions are
            case-insensitive.
        recursive: also take images and videos from a folder's subfolders.

    Returns:
        The files and streams in argument order, each once (the first spelling of a file is
        kept), and one ``"ARGUMENT: reason"`` line per argument that is missing, of an
        unsupported type or URL scheme, an empty folder, a pattern matching nothing or a
        broken link, and one line per symbolic link inside a folder that loops or leads
        nowhere. Streams are not opened here (a camera or server is only tried when read).
    """
    items: list[SourceItem] = []
    problems: list[str] = []
    seen: set[Path | str] = set()
    for source in sources:
        found, found_problems = _expand_one(source, recursive)
        problems += found_problems
        for item in found:
            key = item.url if item.url is not None else item.path.resolve()
            if key not in seen:
                seen.add(key)
                items.append(item)
    return Sources(tuple(items), tuple(problems))


# --- image-sequence patterns: FFmpeg image2's grammar and numbering -------------------------

SEQUENCE_START_RANGE = 5
"""An image sequence's first file is numbered 0 to 4 (FFmpeg image2's start_number_range)."""
MAX_SEQUENCE_WIDTH = 255
"""The widest frame-number field of an image-sequence pattern (``%0255d``): a file name has
at most 255 bytes. ``%0999999999d`` once made every name tried a 1 GB string (6 GB taken,
and a 1 GB error line)."""
_SEQUENCE_FIELD = re.compile(r"%%|%(\d*)d")  # a literal %, or the frame-number field


def _sequence_parts(pattern: str) -> tuple[str, int, str]:
    """An image-sequence pattern as (text before the frame number, its width, text after),
    as FFmpeg reads it: ``%d`` is the number, ``%05d`` (or ``%5d``: FFmpeg pads with zeros
    either way) at least that many digits, zero-padded, and ``%%`` a literal ``%``."""
    pieces: list[str] = []  # the text before the field, then the text after it
    width: int | None = None
    text, start = "", 0
    for field in _SEQUENCE_FIELD.finditer(pattern):
        text += pattern[start:field.start()]
        start = field.end()
        if field.group() == "%%":
            text += "%"
        elif width is None:
            width = _field_width(pattern, field.group(1))
            pieces.append(text)
            text = ""
        else:
            raise AeposeError(f"{pattern}: more than one frame-number field (%d) in the "
                              "image-sequence pattern")
    if width is None:
        raise AeposeError(f"{pattern}: no frame-number field (%d) in the image-sequence "
                          "pattern")
    return pieces[0], width, text + pattern[start:]


def _field_width(pattern: str, digits: str) -> int:
    """The width a frame-number field's ``digits`` spell, at most MAX_SEQUENCE_WIDTH."""
    # Compared as text first: int() refuses more than 4300 digits with its own error.
    if len(digits.lstrip("0")) > len(str(MAX_SEQUENCE_WIDTH)) or int(digits or 0) > (
            MAX_SEQUENCE_WIDTH):
        shown = digits if len(digits) <= 12 else f"{digits[:12]}... ({len(digits)} digits)"
        raise AeposeError(f"{_shorten(pattern)}: frame-number width {shown} in the "
                          f"image-sequence pattern is too large (at most "
                          f"{MAX_SEQUENCE_WIDTH}: a file name has at most 255 bytes)")
    return int(digits or 0)


def _shorten(text: str, limit: int = 160) -> str:
    """``text``, its middle elided when longer than ``limit`` characters (for one line)."""
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"


def _sequence_namer(pattern: str) -> Callable[[int], str]:
    """The file name of frame number ``n`` of an image-sequence pattern."""
    before, width, after = _sequence_parts(pattern)
    return lambda number: f"{before}{number:0{width}d}{after}"


def _sequence_glob(pattern: str) -> str:
    """A glob matching every file an image-sequence pattern could name."""
    before, _, after = _sequence_parts(pattern)
    return f"{glob.escape(before)}[0-9]*{glob.escape(after)}"


@dataclass(frozen=True)
class SequenceFiles:
    """The files of a local image sequence, in order, as :func:`sequence_files` lists them.

    ``missing``: the first missing file, which ends the sequence; ``later``: how many files
    the pattern names with numbers after it (not read, as FFmpeg does not read them).
    """

    files: tuple[Path, ...]
    missing: str
    later: int


def sequence_files(pattern: str) -> SequenceFiles:
    """The files a local image-sequence pattern names, by FFmpeg image2's rule.

    The first number is the lowest of 0 to 4 whose file exists (:data:`SEQUENCE_START_RANGE`)
    and the sequence runs on while the next number's file exists.

    Raises:
        AeposeError: the pattern is malformed, or no file is numbered 0 to 4 (the line names
            the files tried and, when other numbered files exist, one of them).
    """
    name = _sequence_namer(pattern)
    first = next((n for n in range(SEQUENCE_START_RANGE) if _file_type(Path(name(n))) == "file"),
                 None)
    if first is None:
        raise AeposeError(_no_start(pattern, name))
    files: list[Path] = []
    while _file_type(Path(name(first + len(files)))) == "file":
        files.append(Path(name(first + len(files))))
    end = first + len(files)
    return SequenceFiles(tuple(files), name(end), _numbered_after(pattern, name, end))


def _no_start(pattern: str, name: Callable[[int], str]) -> str:
    """The line for a pattern whose first file is missing: the names tried and, when other
    numbered files exist (numbering that starts too late, or zero-padding the pattern does
    not spell), one of them."""
    line = (f"image sequence {pattern}: no file {name(0)} to "
            f"{name(SEQUENCE_START_RANGE - 1)} (the first number must be 0 to "
            f"{SEQUENCE_START_RANGE - 1}, spelled as the pattern says")
    numbered = sorted(glob.glob(_sequence_glob(pattern)))
    return f"{line}; there is {numbered[0]})" if numbered else f"{line})"


def _numbered_after(pattern: str, name: Callable[[int], str], missing: int) -> int:
    """How many files the pattern names with numbers after ``missing``."""
    later = 0
    for path in glob.glob(_sequence_glob(pattern)):
        # A file is the pattern's when some number in its path gives back its name.
        numbers = (int(digits) for digits in re.findall(r"\d+", path))
        later += any(n > missing and name(n) == path for n in numbers)
    return later


def is_local_sequence(url: str) -> bool:
    """Whether a stream's ``url`` (:attr:`SourceItem.url`) is a local image sequence: a
    printf pattern that is not a URL, its files read one by one rather than by FFmpeg."""
    return bool(_PRINTF.search(url)) and not _URL.match(url)
