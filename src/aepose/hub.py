"""Released weights by name: a preset name, an mmpose release file name or a URL becomes a
verified file in the local cache.

``resolve_weights(spec)`` is the one entry the checkpoint reader calls. The rules:

* an ``http(s)://`` URL is downloaded into the cache (once);
* an existing file is used as it is;
* a preset name with released weights (``hrnet_w32_aic_512``) or a release file name
  (``hrnet_w32_aic_512x512-77e2a98a_20210131.pth``) means that file of the URL table
  (:data:`aepose.config.WEIGHTS_URLS`), downloaded into the cache when missing;
* anything else is returned as a path, so that the reader reports the missing file.

Cache folder: ``$AEPOSE_HOME/weights``, else ``$XDG_CACHE_HOME/aepose/weights``, else
``~/.cache/aepose/weights``. ``AEPOSE_WEIGHTS_MIRROR=URL`` replaces
:data:`~aepose.config.WEIGHTS_BASE` in the table's URLs; ``AEPOSE_OFFLINE=1`` never touches
the network and says which file to put where.

Cache keys: a file of the table is cached under its name, whether it came from the default
host or the mirror (the same release file either way); a file from any other URL goes to
``urls/<16 hex digits of the URL's SHA-256>/NAME``, so two URLs ending in the same name
never share an entry.

Integrity: mmpose names its files ``name-XXXXXXXX_date.pth`` (or ``name-XXXXXXXX.pth``) where
``XXXXXXXX`` starts the file's SHA-256. A download is written to ``.NAME.part`` in the cache
folder (``.urls-KEY-NAME.part`` for a URL's own entry), a fixed name per file so that an
interrupted download resumes with an HTTP Range request. It is then hashed and checked to be
a PyTorch checkpoint (a whole zip archive holding ``data.pkl``, or torch's legacy pickle
format: never an error page or a file cut short), and renamed into place only when both
hold; otherwise it is deleted. Local files named with a hash are checked the same way when
loaded.

Time limits (:mod:`aepose.transfer`): ``AEPOSE_DOWNLOAD_TIMEOUT`` seconds (default 30) for
connecting, for the headers and for every 64 KiB of the body. One process at a time
downloads a given file: the others wait on its ``NAME.lock`` (``flock``) while that download
makes progress, and give up with one line when its ``.part`` file has not changed for twice
that limit (a stopped or hung process).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import pickle
import re
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path

from aepose import transfer
from aepose.config import PRESETS, WEIGHTS_BASE, WEIGHTS_URLS, did_you_mean
from aepose.errors import AeposeError
from aepose.io import FileLock

logger = logging.getLogger("aepose")

# "-" then 8 lowercase hex digits, an optional "_date", then the suffix: mmpose's convention.
# (torch.hub's check_hash expects "name-HASH.ext" with nothing after the hash.)
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8})(?:_\d+)?\.pth?$")
_TIMEOUT_S = 30.0  # default of AEPOSE_DOWNLOAD_TIMEOUT
_MAX_TIMEOUT_S = 86400.0  # a day; far larger ones overflow the socket time-out
_CHUNK = 1 << 20
# http.client refuses these in a URL; caught here they cost one line naming the URL.
_NOT_IN_URL = re.compile(r"[\x00-\x20\x7f]")
# torch.save's legacy (pre-zip) format begins with this number pickled (protocol 2).
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
# (path, size, mtime) of files already hashed by this process: a file is hashed once per load,
# not once per read_checkpoint call in the same process.
_VERIFIED: set[tuple[str, int, int]] = set()


def cache_dir() -> Path:
    """``$AEPOSE_HOME/weights``, else ``$XDG_CACHE_HOME/aepose/weights``, else
    ``~/.cache/aepose/weights`` (not created here). One line when ``~`` cannot be expanded
    (a ``~user`` that does not exist, or no HOME and no password entry)."""
    if os.environ.get("AEPOSE_HOME"):
        return _expanded("AEPOSE_HOME") / "weights"
    if os.environ.get("XDG_CACHE_HOME"):
        return _expanded("XDG_CACHE_HOME") / "aepose" / "weights"
    return _expanded(None) / ".cache" / "aepose" / "weights"


def _expanded(variable: str | None) -> Path:
    """The folder of environment ``variable`` with ``~`` expanded (None: the home folder)."""
    text = os.environ[variable] if variable else "~"
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # pathlib's words for "no such user" and "no home folder"
        path = Path(text)
    if not str(path).startswith("~"):
        return path
    if variable:
        raise AeposeError(f"{variable}={text!r}: cannot expand {text.split('/')[0]} (no such "
                          "user, or no home folder); give the folder without ~")
    raise AeposeError(f"no folder for the weights cache: HOME is not set and user {os.getuid()} "
                      "has no home folder in the password database; set AEPOSE_HOME to a "
                      "writable folder")


def weights_url(preset: str) -> str | None:
    """Where ``preset``'s released weights are downloaded from (mirror applied), or None."""
    url = WEIGHTS_URLS.get(preset)
    return _mirrored(url) if url else None


def cached_file(preset: str) -> Path | None:
    """The cache path of ``preset``'s released weights, whether present or not; None when the
    preset has none."""
    url = WEIGHTS_URLS.get(preset)
    return _cache_path(url) if url else None


def resolve_weights(spec: str | Path, *, verify: bool = True) -> Path:
    """A local weights file for ``spec``: a path, a URL, a preset name or a release file name.

    Downloads into the cache when needed. Files whose name carries a hash prefix are checked
    (``verify=False`` skips that for a local file, e.g. to describe a damaged one; downloads
    are always checked). Raises :class:`AeposeError` with one line on any failure.
    """
    text = str(spec)
    if _is_url(text):
        _file_name(_checked_url(text))  # refused in the user's words, before the mirror maps it
        return _fetch(_unmirrored(text))
    path = Path(spec)
    if path.exists():
        if verify and path.is_file():
            verify_file(path)
        return path
    if os.sep in text or "/" in text:
        return path  # a path the user meant literally: the reader says it is missing
    url = _url_for_name(text)
    if url is not None:
        return _fetch(url)
    if not path.suffix:
        names = [*WEIGHTS_URLS, *(_file_name(u) for u in WEIGHTS_URLS.values())]
        raise AeposeError(f"{text}: no such file, and no preset with released weights is "
                          f"called that{did_you_mean(text, names)}")
    return path


def download(spec: str) -> Path:
    """The cached file of a preset name, release file name or URL (fetched when missing);
    a local path is refused, since there is nothing to download."""
    if not _is_url(spec) and _url_for_name(spec) is None:
        known = ", ".join(WEIGHTS_URLS)
        raise AeposeError(f"{spec}: not a preset with released weights ({known}), a release "
                          "file name or an http(s):// URL")
    return resolve_weights(spec)


def expected_hash(path: str | Path) -> str | None:
    """The 8 hex digits of SHA-256 that the file name promises, or None."""
    match = _HASH_IN_NAME.search(Path(path).name)
    return match.group(1) if match else None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_report(path: Path) -> str:
    """What ``aepose info`` prints after ``hash:``: verified, mismatch or not named."""
    expected = expected_hash(path)
    if expected is None:
        return "not named (no -XXXXXXXX SHA-256 prefix in the file name)"
    actual = sha256_of(path)
    if actual.startswith(expected):
        return f"verified (sha256 {actual[:8]}…)"
    return (f"MISMATCH (sha256 {actual[:8]}…, the name says {expected}): the file is damaged "
            "or renamed; loading it is refused")


def verify_file(path: Path) -> None:
    """Raise one line when ``path``'s SHA-256 does not start with the hash in its name."""
    expected = expected_hash(path)
    if expected is None:
        return
    if _identity(path) in _VERIFIED:
        return
    actual = sha256_of(path)
    if not actual.startswith(expected):
        raise AeposeError(f"{path}: SHA-256 starts {actual[:8]} but the file name says "
                          f"{expected}: damaged or renamed file, refusing to load it")
    _VERIFIED.add(_identity(path))


def _identity(path: Path) -> tuple[str, int, int]:
    """What must be unchanged for an earlier hash check to still hold."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _checked_url(url: str, variable: str | None = None) -> str:
    """``url`` when it is an http(s) URL that can be fetched; else one line naming it (as
    the value of environment ``variable`` when it comes from there)."""
    label = f"{variable}={url!r}" if variable else repr(url)
    if _NOT_IN_URL.search(url):
        raise AeposeError(f"{label}: a URL cannot hold spaces or control characters "
                          "(percent-encode them: %20 for a space)")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (reading the port is what checks it)
    except ValueError as error:
        raise AeposeError(f"{label}: not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AeposeError(f"{label}: not an http(s):// URL")
    return url


def _mirror() -> str | None:
    """``AEPOSE_WEIGHTS_MIRROR`` without its trailing ``/``, checked; None when unset."""
    value = os.environ.get("AEPOSE_WEIGHTS_MIRROR", "").strip()
    if not value:
        return None
    try:
        return _checked_url(value, "AEPOSE_WEIGHTS_MIRROR").rstrip("/")
    except AeposeError as error:
        raise AeposeError(f"{error} (it replaces {WEIGHTS_BASE} in the release URLs; files "
                          "already on this machine go in the cache folder or are passed by "
                          "path)") from None


def _mirrored(url: str) -> str:
    """``url`` with the mirror in place of :data:`WEIGHTS_BASE`, when both apply."""
    if url.startswith(WEIGHTS_BASE + "/"):
        mirror = _mirror()
        if mirror:
            return mirror + url[len(WEIGHTS_BASE):]
    return url


def _unmirrored(url: str) -> str:
    """The inverse of :func:`_mirrored`: a file of the mirror names the official URL, so
    that both share one cache entry."""
    mirror = os.environ.get("AEPOSE_WEIGHTS_MIRROR", "").strip().rstrip("/")
    if mirror and url.startswith(mirror + "/"):
        return WEIGHTS_BASE + url[len(mirror):]
    return url


def _cache_path(url: str) -> Path:
    """Where the file of ``url`` (an official URL, not a mirror's) is cached: a release file
    by its name, any other URL in a folder of its own named by the URL's hash."""
    name = _file_name(url)
    if url in WEIGHTS_URLS.values():
        return cache_dir() / name
    source = urllib.parse.urldefrag(url).url  # the fragment never reaches the server
    return cache_dir() / "urls" / hashlib.sha256(source.encode()).hexdigest()[:16] / name


def _file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if name in ("", ".", "..") or "\x00" in name:
        raise AeposeError(f"{url}: names no file (the URL must end with the file's name)")
    return name


def _url_for_name(name: str) -> str | None:
    """The table URL of a preset name or a release file name; one line for a preset with no
    released weights."""
    if name in WEIGHTS_URLS:
        return WEIGHTS_URLS[name]
    for url in WEIGHTS_URLS.values():
        if _file_name(url) == name:
            return url
    if name in PRESETS:
        raise AeposeError(f"preset {name} has no released weights; train it ('aepose train "
                          f"--preset {name}') or pass a weights file")
    return None


def _offline() -> bool:
    return os.environ.get("AEPOSE_OFFLINE", "").strip() not in ("", "0")


def _download_timeout() -> float:
    """``AEPOSE_DOWNLOAD_TIMEOUT`` in seconds (default 30, at most a day): the longest a
    download may take to connect, to send its headers or to send each next 64 KiB."""
    text = os.environ.get("AEPOSE_DOWNLOAD_TIMEOUT", "").strip()
    if not text:
        return _TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= _MAX_TIMEOUT_S:  # also refuses nan
        raise AeposeError(f"AEPOSE_DOWNLOAD_TIMEOUT={text!r}: expected a number of seconds "
                          f"in (0, {_MAX_TIMEOUT_S:g}] (default {_TIMEOUT_S:g})")
    return seconds


def _fetch(url: str) -> Path:
    """The cached file of ``url`` (official, before the mirror), downloaded and verified when
    absent."""
    target = _cache_path(url)
    if not target.is_file():
        if _offline():
            raise AeposeError(f"{target.name} is not in the cache and AEPOSE_OFFLINE=1: "
                              f"download {_mirrored(url)} elsewhere and put it at {target}")
        _download(url, target)
    _verify_cached(target)
    return target


def _verify_cached(target: Path) -> None:
    """A damaged file in the cache is deleted, so that the next run downloads it again."""
    try:
        verify_file(target)
    except AeposeError as error:
        target.unlink(missing_ok=True)
        raise AeposeError(f"{error}; deleted it from the cache, run again to download it "
                          "afresh") from None


def _download(url: str, target: Path) -> None:
    """Fetch ``url`` (from the mirror when set) to ``target``: resume the part file, verify,
    rename, under the lock."""
    source = _mirrored(url)
    limit = _download_timeout()
    cache_dir().mkdir(parents=True, exist_ok=True)
    with _locked(target, limit):
        if target.is_file():
            return  # another process fetched it while this one waited for the lock
        part = _part_of(target)
        try:
            transfer.get(source, part, limit=limit, label=target.name)
        except transfer.DownloadError as failure:
            raise AeposeError(_failure_message(source, url, target, failure)) from None
        problem = _hash_problem(part, target) or _checkpoint_problem(part)
        if problem:
            part.unlink()
            raise AeposeError(f"{source}: downloaded file {problem}; deleted it")
        target.parent.mkdir(parents=True, exist_ok=True)
        part.replace(target)
        _VERIFIED.add(_identity(target))  # checked: loading it need not hash it again
        logger.info("downloaded %s to %s", source, target)


def _part_of(target: Path) -> Path:
    return cache_dir() / f".{_flat(target)}.part"


def _flat(target: Path) -> str:
    """The name of a cache entry's part and lock files, which sit in the cache folder itself
    (``urls/KEY/NAME`` -> ``urls-KEY-NAME``): a download that fails leaves no empty folder."""
    return "-".join(target.relative_to(cache_dir()).parts)


def _hash_problem(part: Path, target: Path) -> str | None:
    """Why ``part`` is not the file ``target``'s name promises by its hash, or None."""
    expected = expected_hash(target)
    if expected is None:
        return None
    actual = sha256_of(part)
    if actual.startswith(expected):
        return None
    return f"has a SHA-256 starting {actual[:8]}, not {expected} as its name says"


def _checkpoint_problem(part: Path) -> str | None:
    """Why ``part`` is not a whole PyTorch checkpoint, or None.

    torch.save writes a zip archive holding ``ARCHIVE/data.pkl``, whose directory sits at
    the very end (a file cut short does not open), or, before torch 1.6, a pickle stream
    that starts with a magic number (only that start is checked: such a file cut short is
    caught by the Content-Length). An HTML error page or a JSON message is neither.
    """
    try:
        with zipfile.ZipFile(part) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        with part.open("rb") as stream:
            head = stream.read(40)
        if head.startswith(_LEGACY_MAGIC):
            return None
        if head.startswith(b"PK\x03\x04"):
            return "is a zip archive cut short (the directory at its end is missing)"
        what = "an HTML page (an error page?)" if head.lstrip()[:1] == b"<" else "something else"
        return (f"is not a PyTorch checkpoint but {what}: {part.stat().st_size} bytes "
                f"beginning {head!r}")
    if not any(Path(m.filename).name == "data.pkl" for m in members):
        return "is a zip archive without data.pkl, not a PyTorch checkpoint"
    if any(m.header_offset + m.compress_size > part.stat().st_size for m in members):
        return "is cut short (its archive directory names bytes past its end)"
    return None


@contextlib.contextmanager
def _locked(target: Path, limit: float) -> Iterator[None]:
    """Hold the :class:`~aepose.io.FileLock` of ``target``'s ``.lock`` file (deleted on
    release), waiting for a process that holds it while its download makes progress."""
    lock = FileLock(cache_dir() / f"{_flat(target)}.lock")
    lock.acquire(_Patience(target, 2 * limit), poll_s=min(0.5, limit / 4))
    try:
        yield
    finally:
        lock.release()


class _Patience:
    """The bounded wait for another process downloading the same file, called while its
    lock is busy: it keeps waiting while the holder's ``.part`` file changes, and gives up
    with one line naming the holder when it has not changed for ``seconds``. (The holder
    itself needs at most the download limit to connect, and at most that for each 64 KiB;
    twice that also covers hashing the finished file.)"""

    def __init__(self, target: Path, seconds: float) -> None:
        self.target = target
        self.seconds = seconds
        self._seen: tuple[int, int] | None = None
        self._since: float | None = None

    def __call__(self, fd: int) -> None:
        now, seen = time.monotonic(), self._part_state()
        if self._since is None:
            logger.info("waiting for another process downloading %s", self.target.name)
        elif seen == self._seen:
            if now - self._since > self.seconds:
                raise AeposeError(
                    f"{self.target.name}: another process (pid {FileLock.holder(fd)}) is "
                    f"downloading it but has made no progress in {self.seconds:g} s; if it is "
                    "stopped or hung, end it and run again (AEPOSE_DOWNLOAD_TIMEOUT sets the "
                    "limit)")
            return
        self._seen, self._since = seen, now

    def _part_state(self) -> tuple[int, int] | None:
        try:
            stat = _part_of(self.target).stat()
        except FileNotFoundError:
            return None
        return stat.st_size, stat.st_mtime_ns


def _failure_message(source: str, url: str, target: Path, failure: transfer.DownloadError) -> str:
    """One line: the URL fetched, what went wrong, the mirror when it is the likely cause,
    and where a copy fetched by other means goes."""
    hint = ""
    if source != url:
        path = url[len(WEIGHTS_BASE) + 1:]
        hint = (f"; AEPOSE_WEIGHTS_MIRROR={_mirror()} is in use: check that it serves {path}, "
                f"or unset it to download from {WEIGHTS_BASE}")
    if failure.status is not None:
        return (f"cannot download {source}: {failure.reason}{hint}; a copy fetched elsewhere "
                f"goes at {target}")
    return (f"cannot download {source} ({failure.reason}){hint}; without network, download "
            f"it elsewhere and put it at {target}")
