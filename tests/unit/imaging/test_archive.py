"""Uploaded archives and folders: every unsafe entry is skipped with a stable code naming it, the good
entries still come through, and archives that are unsafe as a whole (bombs, too much) are refused."""

from __future__ import annotations

import os
import random
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from server.imaging.archive import (
    ArchiveLimits,
    ArchiveMember,
    ArchiveProblem,
    ArchiveRejected,
    ProblemCode,
    iter_folder,
    iter_zip_members,
    safe_name,
)

GOOD = {"series/IM0001.dcm": b"DICM-one" * 100, "IM0002.dcm": b"DICM-two" * 100}
SMALL = ArchiveLimits(
    max_members=50, max_total_bytes=10 * 1024**2, max_member_ratio=100, max_total_ratio=100, spill_bytes=1024**2
)


def write_zip(
    path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], *, compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", compression) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names written on purpose
        for name, data in [*entries, *GOOD.items()]:
            archive.writestr(name, data)
    return path


def collect(items: object) -> tuple[dict[str, bytes], dict[str, ProblemCode]]:
    members: dict[str, bytes] = {}
    problems: dict[str, ProblemCode] = {}
    for item in items:  # type: ignore[attr-defined]
        if isinstance(item, ArchiveMember):
            members[item.name] = item.read_bytes()
        else:
            assert isinstance(item, ArchiveProblem) and repr(item.name) in item.message  # names the entry
            problems[item.name] = item.code
    return members, problems


def patch_central_directory(path: Path, name: str, offset: int, fmt: str, value: int) -> None:
    """Rewrite one field of `name`'s central directory header (and of its local header, for the flags)."""
    data = bytearray(path.read_bytes())
    start = data.find(b"PK\x01\x02")
    while data[start + 46 : start + 46 + len(name)] != name.encode():
        start = data.find(b"PK\x01\x02", start + 4)
        assert start >= 0, name
    struct.pack_into(fmt, data, start + offset, value)
    if offset == 8:  # general purpose flags
        local = struct.unpack_from("<I", data, start + 42)[0]
        struct.pack_into(fmt, data, local + 6, value)
    path.write_bytes(bytes(data))


def test_unsafe_entry_names_are_skipped_and_good_members_still_come_through(tmp_path: Path) -> None:
    symlink = zipfile.ZipInfo("link.dcm")
    symlink.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = write_zip(
        tmp_path / "upload.zip",
        [
            ("../../etc/passwd", b"root:x:0:0"),
            ("/etc/shadow", b"secret"),
            ("C:\\Windows\\evil.dcm", b"x"),
            ("..\\..\\evil.dcm", b"x"),
            ("ok/../../../escape.dcm", b"x"),
            (symlink, b"/etc/passwd"),
            ("inner.zip", b"PK\x03\x04 pretend"),
            ("looks-like-data.bin", b"PK\x03\x04 a zip under another name"),
        ],
    )

    members, problems = collect(iter_zip_members(path, SMALL))

    assert members == GOOD
    assert problems == {
        "../../etc/passwd": ProblemCode.PATH_TRAVERSAL,
        "/etc/shadow": ProblemCode.ABSOLUTE_PATH,
        "C:\\Windows\\evil.dcm": ProblemCode.ABSOLUTE_PATH,
        "..\\..\\evil.dcm": ProblemCode.PATH_TRAVERSAL,
        "ok/../../../escape.dcm": ProblemCode.PATH_TRAVERSAL,
        "link.dcm": ProblemCode.SYMLINK,
        "inner.zip": ProblemCode.NESTED_ARCHIVE,
        "looks-like-data.bin": ProblemCode.NESTED_ARCHIVE,
    }


def test_a_duplicate_name_is_reported_and_the_first_entry_kept(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "dup.zip", [("dup.dcm", b"first"), ("dup.dcm", b"second")])

    members, problems = collect(iter_zip_members(path, SMALL))

    assert members["dup.dcm"] == b"first"
    assert problems == {"dup.dcm": ProblemCode.DUPLICATE_NAME}


def test_nul_in_a_name_is_reported_not_silently_cut(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "nul.zip", [("evil#.dcm", b"x")])
    data = path.read_bytes().replace(b"evil#.dcm", b"evil\x00.dcm")
    path.write_bytes(data)

    members, problems = collect(iter_zip_members(path, SMALL))

    assert members == GOOD and problems == {"evil\x00.dcm": ProblemCode.NUL_IN_NAME}


def test_encrypted_and_bzip2_members_are_rejected(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "enc.zip", [("secret.dcm", b"ciphertext" * 10)])
    patch_central_directory(path, "secret.dcm", 8, "<H", 0x0001)
    bz = write_zip(tmp_path / "bz.zip", [], compression=zipfile.ZIP_BZIP2)

    assert collect(iter_zip_members(path, SMALL)) == (GOOD, {"secret.dcm": ProblemCode.ENCRYPTED})
    members, problems = collect(iter_zip_members(bz, SMALL))
    assert members == {} and set(problems.values()) == {ProblemCode.UNSUPPORTED_COMPRESSION}


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One member of 200 MB of zeros: about 200 KB compressed."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IM0001.dcm", b"DICM")
        with archive.open("zeros.dcm", "w") as member:
            chunk = b"\0" * 1024**2
            for _ in range(200):
                member.write(chunk)
    return path


def test_a_zip_bomb_is_refused_before_anything_is_decompressed(bomb: Path) -> None:
    assert bomb.stat().st_size < 2 * 1024**2
    items = iter_zip_members(bomb, SMALL)
    with pytest.raises(ArchiveRejected) as too_large:
        next(items)
    assert too_large.value.problem.code == ProblemCode.TOTAL_TOO_LARGE

    roomy = ArchiveLimits(max_total_bytes=1024**3, max_member_ratio=100, max_total_ratio=100)
    with pytest.raises(ArchiveRejected) as ratio:
        next(iter_zip_members(bomb, roomy))
    assert ratio.value.problem.code == ProblemCode.TOTAL_RATIO and "zip bomb" in str(ratio.value)


def test_one_overcompressed_member_is_skipped_when_the_archive_as_a_whole_is_sane(tmp_path: Path) -> None:
    noise = random.Random(1).randbytes(3 * 1024**2)
    path = write_zip(tmp_path / "mixed.zip", [("noise.dcm", noise), ("zeros.dcm", b"\0" * 2 * 1024**2)])

    members, problems = collect(iter_zip_members(path, SMALL))

    assert problems == {"zeros.dcm": ProblemCode.MEMBER_RATIO}
    assert members == {"noise.dcm": noise, **GOOD}


def test_a_member_lying_about_its_size_is_cut_at_the_declared_size(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "liar.zip", [("liar.dcm", b"\0" * 5 * 1024**2)])
    patch_central_directory(path, "liar.dcm", 24, "<I", 1000)  # uncompressed size: 1000 bytes, really 5 MB

    members, problems = collect(iter_zip_members(path, SMALL))

    assert problems == {"liar.dcm": ProblemCode.CORRUPT_MEMBER} and members == GOOD


def test_too_many_members_refuses_the_archive(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "many.zip", [(f"IM{n:04d}.dcm", b"x") for n in range(3, 60)])

    with pytest.raises(ArchiveRejected) as rejected:
        next(iter_zip_members(path, SMALL))
    assert rejected.value.problem.code == ProblemCode.TOO_MANY_MEMBERS


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.zip"
    path.write_bytes(b"not a zip at all")

    with pytest.raises(ArchiveRejected) as rejected:
        list(iter_zip_members(path, SMALL))
    assert rejected.value.problem.code == ProblemCode.NOT_AN_ARCHIVE


def test_a_large_member_is_spilled_to_a_temporary_file_removed_after_use(tmp_path: Path) -> None:
    big = random.Random(2).randbytes(3000)
    path = write_zip(tmp_path / "big.zip", [("big.dcm", big)])
    limits = ArchiveLimits(spill_bytes=1000)

    items = iter_zip_members(path, limits, temp_dir=tmp_path)
    first = next(items)
    assert isinstance(first, ArchiveMember) and first.data is None and first.path is not None
    assert first.path.parent == tmp_path and first.read_bytes() == big
    next(items)
    assert not first.path.exists()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b.dcm", "a/b.dcm"),
        ("./a//b.dcm", "a/b.dcm"),
        ("a\\b.dcm", "a/b.dcm"),
        ("../x", ProblemCode.PATH_TRAVERSAL),
        ("a/../../x", ProblemCode.PATH_TRAVERSAL),
        ("/etc/passwd", ProblemCode.ABSOLUTE_PATH),
        ("\\\\server\\share\\x", ProblemCode.ABSOLUTE_PATH),
        ("C:x.dcm", ProblemCode.ABSOLUTE_PATH),
        ("bell\x07.dcm", ProblemCode.CONTROL_CHARACTER),
    ],
)
def test_safe_name(raw: str, expected: str | ProblemCode) -> None:
    result = safe_name(raw)
    assert (result.code if isinstance(result, ArchiveProblem) else result) == expected


def test_a_folder_yields_its_files_and_never_follows_links_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"private")
    root = tmp_path / "upload"
    (root / "series").mkdir(parents=True)
    for name, data in GOOD.items():
        (root / name).write_bytes(data)
    (root / "escape.dcm").symlink_to(outside)
    (root / "inside.dcm").symlink_to(root / "IM0002.dcm")
    (root / "loop").symlink_to(root)
    (root / "nested.zip").write_bytes(b"PK\x03\x04")
    os.mkfifo(root / "pipe.dcm")  # opening it would block forever

    members, problems = collect(iter_folder(root, SMALL))

    assert members == {**GOOD, "inside.dcm": GOOD["IM0002.dcm"]}
    assert problems == {
        "escape.dcm": ProblemCode.SYMLINK,
        "loop": ProblemCode.SYMLINK,
        "nested.zip": ProblemCode.NESTED_ARCHIVE,
        "pipe.dcm": ProblemCode.SPECIAL_FILE,
    }


def test_a_folder_over_the_limits_is_refused_before_any_file(tmp_path: Path) -> None:
    for n in range(12):
        (tmp_path / f"IM{n:04d}.dcm").write_bytes(b"x" * 100)

    with pytest.raises(ArchiveRejected) as count:
        next(iter_folder(tmp_path, ArchiveLimits(max_members=10)))
    with pytest.raises(ArchiveRejected) as size:
        next(iter_folder(tmp_path, ArchiveLimits(max_total_bytes=1000)))
    assert (count.value.problem.code, size.value.problem.code) == (
        ProblemCode.TOO_MANY_MEMBERS,
        ProblemCode.TOTAL_TOO_LARGE,
    )
