"""Expanding prediction inputs: files, folders, globs, links (aepose.video.sources)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aepose.errors import AeposeError
from aepose.video.sources import SourceItem, Sources, expand_sources, sequence_files


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # expand_sources looks at names only; decoding comes later
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in (
        "b.jpg",
        "clip.MP4",
        "readme.txt",
        "photos/2.png",
        "photos/1.JPEG",
        "photos/10.webp",
        "photos/.hidden.jpg",
        "photos/notes.txt",
        "photos/clip.mp4",
        "photos/sub/3.png",
        "photos/sub/deeper/4.tif",
        "photos/.cache/5.png",
        "empty/readme.md",
    ):
        touch(tmp_path / name)
    return tmp_path


def images(*paths: Path) -> list[SourceItem]:
    return [SourceItem(p, "image") for p in paths]


def test_files_folders_globs_and_problems_expand_in_argument_order(tree: Path) -> None:
    photos = tree / "photos"
    result = expand_sources(
        [
            str(tree / "b.jpg"),
            str(photos),
            str(tree / "readme.txt"),
            str(tree / "missing.jpg"),
            str(tree / "clip.MP4"),
            str(photos / "*.png"),  # 2.png again: a duplicate
            f"{tree}/photos/../b.jpg",  # b.jpg spelled differently: a duplicate
            str(tree / "empty"),
            str(tree / "*.gif"),
        ]
    )
    assert isinstance(result, Sources)
    assert list(result.items) == [  # a folder's videos are taken too (sorted by path)
        *images(tree / "b.jpg", photos / "1.JPEG", photos / "10.webp", photos / "2.png"),
        SourceItem(photos / "clip.mp4", "video"),
        SourceItem(tree / "clip.MP4", "video"),
    ]
    assert result.problems == (
        f"{tree / 'readme.txt'}: unsupported file type '.txt'",
        f"{tree / 'missing.jpg'}: no such file or folder",
        f"{tree / 'empty'}: no images or videos in this folder",
        f"{tree / '*.gif'}: pattern matches no image or video files",
    )


def test_recursive_folder_takes_subfolders_sorted_by_path(tree: Path) -> None:
    photos = tree / "photos"
    result = expand_sources([str(photos)], recursive=True)
    assert list(result.items) == [
        *images(photos / "1.JPEG", photos / "10.webp", photos / "2.png"),
        SourceItem(photos / "clip.mp4", "video"),
        *images(photos / "sub" / "3.png", photos / "sub" / "deeper" / "4.tif"),
    ]
    assert result.problems == ()


def test_recursive_glob_matches_any_depth_and_keeps_videos(tree: Path) -> None:
    pngs = expand_sources([str(tree / "**" / "*.png")])
    assert [item.path for item in pngs.items] == [
        tree / "photos" / "2.png",
        tree / "photos" / "sub" / "3.png",
    ]
    everything = expand_sources([str(tree / "photos" / "*")])
    assert {item.path.name: item.kind for item in everything.items} == {
        "1.JPEG": "image",
        "10.webp": "image",
        "2.png": "image",
        "clip.mp4": "video",
    }  # notes.txt and the sub folder matched but are not media; .hidden.jpg is not matched
    assert everything.problems == ()


def test_relative_paths_keep_their_spelling(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    result = expand_sources(["b.jpg", "photos/../b.jpg", "photos/2.png"])
    assert [item.path for item in result.items] == [Path("b.jpg"), Path("photos/2.png")]


def test_empty_folder_message_mentions_subfolders_when_recursive(tree: Path) -> None:
    result = expand_sources([str(tree / "empty")], recursive=True)
    assert result.items == ()
    assert result.problems == (
        f"{tree / 'empty'}: no images or videos in this folder or its subfolders",)


def test_looping_and_broken_links_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "a"
    touch(folder / "x.png")
    (folder / "up").symlink_to("..")
    (folder / "self.png").symlink_to("self.png")
    (tmp_path / "loop").symlink_to("loop")
    found = expand_sources([str(folder), str(tmp_path / "loop")], recursive=True)
    assert [item.path.name for item in found.items] == ["x.png"]
    assert found.problems == (
        f"{folder / 'self.png'}: broken or looping symbolic link, skipped",
        f"{folder / 'up' / 'a'}: symbolic link loop (a folder already scanned), skipped",
        f"{tmp_path / 'loop'}: broken or looping symbolic link",
    )


@pytest.mark.parametrize("width", ["0999999999", "0" + "9" * 5000, "256", "000000000000000256"])
def test_an_absurd_frame_number_width_is_one_short_line(tmp_path: Path, width: str) -> None:
    """``seq/%0999999999d.png`` once made every file name tried a 1 GB string: 6 GB taken
    and a 1 GB error line. Widths past a file name's 255 bytes are refused as they enter."""
    touch(tmp_path / "seq" / "0.png")
    pattern = str(tmp_path / "seq" / f"%{width}d.png")
    found = expand_sources([pattern])
    assert found.items == ()
    (problem,) = found.problems
    assert "frame-number width" in problem and "is too large (at most 255: a file name has " \
        "at most 255 bytes)" in problem and len(problem) < 400, problem[:400]
    with pytest.raises(AeposeError, match="is too large"):
        sequence_files(pattern)


def test_the_widest_frame_number_names_nothing_and_says_so(tmp_path: Path) -> None:
    """A 255-digit number with its extension is longer than a file name may be: no file,
    one line (the system's "File name too long" stays inside)."""
    touch(tmp_path / "seq" / "0.png")
    pattern = str(tmp_path / "seq" / "%0255d.png")
    (item,) = expand_sources([pattern]).items  # the folder holds numbered files
    assert item.url == pattern
    with pytest.raises(AeposeError, match=r"^image sequence .*: no file .*0\.png to "):
        sequence_files(pattern)
