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

Integrity: mmpose names its files ``name-XXXXXXXX_date.pth`` (or ``name-XXXXXXXX.pth``) where
``XXXXXXXX`` starts the file's SHA-256. A download is written to ``.NAME.part`` in the cache
folder (a fixed name per file, so that an interrupted download resumes with an HTTP Range
request), hashed, and renamed into place only when the hash matches; a mismatch deletes it.
Local files named that way are checked the same way when loaded. One process at a time
downloads a given file: the others wait on ``NAME.lock`` (``flock``) and then find it there.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from aepose.config import PRESETS, WEIGHTS_BASE, WEIGHTS_URLS, did_you_mean
from aepose.errors import AeposeError
from aepose.io import FileLock

logger = logging.getLogger("aepose")

# "-" then 8 lowercase hex digits, an optional "_date", then the suffix: mmpose's convention.
# (torch.hub's check_hash expects "name-HASH.ext" with nothing after the hash.)
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8})(?:_\d+)?\.pth?$")
_TIMEOUT_S = 30.0  # per connect / read; a stalled server fails instead of hanging
_CHUNK = 1 << 20
# What a failed transfer raises: DNS / refused / HTTP status (URLError, HTTPError), a dropped
# connection (ConnectionError, IncompleteRead), a stalled one (TimeoutError).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                   TimeoutError)
# (path, size, mtime) of files already hashed by this process: a file is hashed once per load,
# not once per read_checkpoint call in the same process.
_VERIFIED: set[tuple[str, int, int]] = set()


def cache_dir() -> Path:
    """``$AEPOSE_HOME/weights``, else ``$XDG_CACHE_HOME/aepose/weights``, else
    ``~/.cache/aepose/weights`` (not created here)."""
    if os.environ.get("AEPOSE_HOME"):
        return Path(os.environ["AEPOSE_HOME"]).expanduser() / "weights"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "aepose" / "weights"


def weights_url(preset: str) -> str | None:
    """Where ``preset``'s released weights are downloaded from (mirror applied), or None."""
    url = WEIGHTS_URLS.get(preset)
    return _mirrored(url) if url else None


def cached_file(preset: str) -> Path | None:
    """The cache path of ``preset``'s released weights, whether present or not; None when the
    preset has none."""
    url = WEIGHTS_URLS.get(preset)
    return cache_dir() / _file_name(url) if url else None


def resolve_weights(spec: str | Path, *, verify: bool = True) -> Path:
    """A local weights file for ``spec``: a path, a URL, a preset name or a release file name.

    Downloads into the cache when needed. Files whose name carries a hash prefix are checked
    (``verify=False`` skips that for a local file, e.g. to describe a damaged one; downloads
    are always checked). Raises :class:`AeposeError` with one line on any failure.
    """
    text = str(spec)
    if _is_url(text):
        return _fetch(_mirrored(text))
    path = Path(spec)
    if path.exists():
        if verify and path.is_file():
            verify_file(path)
        return path
    if os.sep in text or "/" in text:
        return path  # a path the user meant literally: the reader says it is missing
    url = _url_for_name(text)
    if url is not None:
        return _fetch(_mirrored(url))
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


def _mirrored(url: str) -> str:
    mirror = os.environ.get("AEPOSE_WEIGHTS_MIRROR", "").rstrip("/")
    if mirror and url.startswith(WEIGHTS_BASE + "/"):
        return mirror + url[len(WEIGHTS_BASE):]
    return url


def _file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name:
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


def _fetch(url: str) -> Path:
    """The cached file of ``url``, downloaded and verified when absent."""
    target = cache_dir() / _file_name(url)
    if not target.is_file():
        if _offline():
            raise AeposeError(f"{target.name} is not in the cache and AEPOSE_OFFLINE=1: "
                              f"download {url} elsewhere and put it at {target}")
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
    """Fetch ``url`` to ``target``: resume the part file, verify, rename, under the lock."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        if target.is_file():
            return  # another process fetched it while this one waited for the lock
        part = target.with_name(f".{target.name}.part")
        _transfer(url, part, target)
        expected = expected_hash(target)
        actual = sha256_of(part)
        if expected is not None and not actual.startswith(expected):
            part.unlink()
            raise AeposeError(f"{url}: downloaded file's SHA-256 starts {actual[:8]}, not "
                              f"{expected} as its name says; deleted it")
        part.replace(target)
        _VERIFIED.add(_identity(target))  # just hashed: loading it need not hash it again
        logger.info("downloaded %s to %s", url, target)


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold the :class:`~aepose.io.FileLock` of ``target``'s ``.lock`` file, waiting for a
    process that holds it (it is deleted on release)."""
    lock = FileLock(target.with_name(f"{target.name}.lock"))
    lock.acquire(lambda _: logger.info("waiting for another process downloading %s",
                                       target.name))
    try:
        yield
    finally:
        lock.release()


def _transfer(url: str, part: Path, target: Path) -> None:
    """Append the missing bytes of ``url`` to ``part`` (all of them if the server ignores
    Range); any network failure becomes one line that names the offline alternative."""
    offset = part.stat().st_size if part.is_file() else 0
    try:
        with _open(url, offset, part) as response:
            if response.status != 206:
                offset = 0  # 200: the server ignored Range and sends the whole file
            elif _range_start(response) != offset:
                raise AeposeError(f"{url}: the server sent another range than requested "
                                  f"(bytes {offset}-); delete {part} and run again")
            length = response.length  # bytes still to come (Content-Length), or None
            received = _copy(response, part, offset, length, target.name)
    except _NETWORK_ERRORS as error:
        raise AeposeError(_network_message(url, target, _reason(error))) from None
    if length is not None and received < length:
        reason = f"connection closed after {offset + received} of {offset + length} bytes"
        raise AeposeError(_network_message(url, target, reason + ", run again to resume"))


def _open(url: str, offset: int, part: Path) -> http.client.HTTPResponse:
    """GET ``url`` from byte ``offset``; a 416 (the part is already whole or too long)
    starts again from zero."""
    request = urllib.request.Request(url, headers={"User-Agent": "aepose"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        error.close()
        part.unlink()
        return _open(url, 0, part)
    return response


def _range_start(response: http.client.HTTPResponse) -> int:
    """First byte of a 206 answer (``Content-Range: bytes START-END/TOTAL``); -1 if absent."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else -1


def _copy(response: http.client.HTTPResponse, part: Path, offset: int, length: int | None,
          label: str) -> int:
    """Stream the body into ``part`` from ``offset`` with a progress bar; bytes received."""
    total = offset + length if length is not None else None
    received = 0
    with part.open("r+b" if offset else "wb") as out, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=label, disable=None, leave=False,
    ) as bar:
        out.seek(offset)
        out.truncate()
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    if isinstance(error, http.client.IncompleteRead):
        return "connection closed before the end of the file; run again to resume"
    return str(error) or type(error).__name__


def _network_message(url: str, target: Path, reason: str) -> str:
    return (f"cannot download {url} ({reason}); without network, download it elsewhere and "
            f"put it at {target}")
