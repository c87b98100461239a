"""Safe iteration over an uploaded zip archive or a folder of files.

Both iterators yield, in order, either an `ArchiveMember` (a file to ingest) or an `ArchiveProblem`
(one entry skipped, with a stable code and a message naming it): one bad entry never stops the rest.
When the archive as a whole is unsafe (too many entries, too many bytes, a zip bomb's ratio) they
raise `ArchiveRejected` instead. Declared sizes are checked before the first member is yielded;
the real decompressed bytes are counted again while streaming, and streaming stops at the limit, so
a rejection can also come mid-way: the caller must then discard what it already received.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO

_CHUNK_BYTES = 1024 * 1024
_NESTED_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")
_NESTED_SUFFIXES = (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz")


@dataclass(frozen=True)
class ArchiveLimits:
    """The server builds this from settings (upload_max_files, zip_max_uncompressed_bytes, zip_max_ratio)."""

    max_members: int = 5000
    max_total_bytes: int = 4 * 1024**3  # uncompressed, the whole archive or folder
    max_member_bytes: int = 2 * 1024**3
    max_member_ratio: float = 200.0  # uncompressed / compressed
    max_total_ratio: float = 200.0
    ratio_min_bytes: int = 1024 * 1024  # below this a high ratio is harmless (a small file of zeros)
    spill_bytes: int = 64 * 1024**2  # larger members go to a temporary file instead of memory


class ProblemCode(StrEnum):
    # one entry skipped
    ABSOLUTE_PATH = "absolute_path"
    PATH_TRAVERSAL = "path_traversal"
    NUL_IN_NAME = "nul_in_name"
    CONTROL_CHARACTER = "control_character_in_name"
    SYMLINK = "symlink"
    SPECIAL_FILE = "special_file"
    DUPLICATE_NAME = "duplicate_name"
    ENCRYPTED = "encrypted"
    NESTED_ARCHIVE = "nested_archive"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    MEMBER_TOO_LARGE = "member_too_large"
    MEMBER_RATIO = "member_ratio"
    CORRUPT_MEMBER = "corrupt_member"
    UNREADABLE = "unreadable"
    # the whole archive refused
    NOT_AN_ARCHIVE = "not_an_archive"
    TOO_MANY_MEMBERS = "too_many_members"
    TOTAL_TOO_LARGE = "total_too_large"
    TOTAL_RATIO = "total_ratio"


@dataclass(frozen=True)
class ArchiveProblem:
    code: ProblemCode
    name: str  # the entry as written in the archive (or relative to the folder); "" for the archive
    message: str


class ArchiveRejected(Exception):
    def __init__(self, problem: ArchiveProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class ArchiveMember:
    """A file to ingest: `data` in memory, or `path` (a temporary file for a large zip member, valid
    until the next item is requested; the file itself for a folder)."""

    name: str  # normalised relative POSIX path
    size: int
    data: bytes | None = None
    path: Path | None = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


ArchiveItem = ArchiveMember | ArchiveProblem


def safe_name(raw: str) -> str | ArchiveProblem:
    """A relative POSIX path, or why the entry name is unsafe. Backslashes count as separators, so
    `..\\..\\x` is a traversal and `C:\\x` an absolute path, whatever tool wrote the archive."""
    if "\x00" in raw:
        return ArchiveProblem(ProblemCode.NUL_IN_NAME, raw, f"entry {raw!r}: NUL byte in its name")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        return ArchiveProblem(ProblemCode.CONTROL_CHARACTER, raw, f"entry {raw!r}: control character in its name")
    text = raw.replace("\\", "/")
    first = text.split("/", 1)[0]
    if text.startswith("/") or (len(first) >= 2 and first[1] == ":"):
        return ArchiveProblem(ProblemCode.ABSOLUTE_PATH, raw, f"entry {raw!r}: absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        return ArchiveProblem(ProblemCode.PATH_TRAVERSAL, raw, f"entry {raw!r}: '..' leads outside the archive")
    return str(PurePosixPath(*parts)) if parts else ""


def iter_zip_members(path: Path, limits: ArchiveLimits, *, temp_dir: Path | None = None) -> Iterator[ArchiveItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _rejected(ProblemCode.NOT_AN_ARCHIVE, f"not a readable zip: {exc}") from exc
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        _check_declared(infos, path.stat().st_size, limits)
        seen: set[str] = set()
        streamed = _Totals()
        for info in infos:
            problem_or_name = _check_entry(info, seen, limits)
            if isinstance(problem_or_name, ArchiveProblem):
                yield problem_or_name
                continue
            yield from _stream(archive, info, problem_or_name, limits, streamed, temp_dir)


@dataclass
class _Totals:
    out_bytes: int = 0
    in_bytes: int = 0


def _check_declared(infos: list[zipfile.ZipInfo], archive_bytes: int, limits: ArchiveLimits) -> None:
    if len(infos) > limits.max_members:
        raise _rejected(
            ProblemCode.TOO_MANY_MEMBERS, f"{len(infos)} entries, more than the limit of {limits.max_members}"
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise _rejected(
            ProblemCode.TOTAL_TOO_LARGE,
            f"entries declare {total} bytes uncompressed, more than the limit of {limits.max_total_bytes}",
        )
    # Overlapping entries (one compressed stream named many times) make the sum of compressed sizes
    # exceed the archive's own size: divide by the smaller.
    compressed = max(1, min(sum(info.compress_size for info in infos), archive_bytes))
    if total >= limits.ratio_min_bytes and total / compressed > limits.max_total_ratio:
        raise _rejected(
            ProblemCode.TOTAL_RATIO,
            f"archive expands {total / compressed:.0f} times (limit {limits.max_total_ratio:.0f}): a zip bomb",
        )


def _check_entry(info: zipfile.ZipInfo, seen: set[str], limits: ArchiveLimits) -> str | ArchiveProblem:
    raw = info.orig_filename  # zipfile cuts `filename` at a NUL; the original keeps the trick visible
    name = safe_name(raw)
    if isinstance(name, ArchiveProblem):
        return name
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return ArchiveProblem(ProblemCode.SYMLINK, raw, f"entry {raw!r}: a symbolic link, not a file")
    if name in seen:
        return ArchiveProblem(ProblemCode.DUPLICATE_NAME, raw, f"entry {raw!r}: a second entry with the same name")
    seen.add(name)
    if info.flag_bits & 0x1:
        return ArchiveProblem(ProblemCode.ENCRYPTED, raw, f"entry {raw!r}: encrypted; upload it without a password")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # bzip2 and lzma decompress a whole chunk at once with no output bound: too easy to bomb.
        return ArchiveProblem(
            ProblemCode.UNSUPPORTED_COMPRESSION,
            raw,
            f"entry {raw!r}: compression method {info.compress_type}; only stored and deflated are accepted",
        )
    if name.lower().endswith(_NESTED_SUFFIXES):
        return _nested(raw)
    if info.file_size > limits.max_member_bytes:
        return ArchiveProblem(
            ProblemCode.MEMBER_TOO_LARGE, raw, f"entry {raw!r}: {info.file_size} bytes, over {limits.max_member_bytes}"
        )
    ratio = info.file_size / max(1, info.compress_size)
    if info.file_size >= limits.ratio_min_bytes and ratio > limits.max_member_ratio:
        return _ratio_problem(raw, ratio, limits)
    return name


def _nested(raw: str) -> ArchiveProblem:
    return ArchiveProblem(
        ProblemCode.NESTED_ARCHIVE,
        raw,
        f"entry {raw!r}: an archive inside the archive is not expanded; upload it alone",
    )


def _ratio_problem(raw: str, ratio: float, limits: ArchiveLimits) -> ArchiveProblem:
    return ArchiveProblem(
        ProblemCode.MEMBER_RATIO, raw, f"entry {raw!r} expands {ratio:.0f} times (limit {limits.max_member_ratio:.0f})"
    )


def _stream(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    limits: ArchiveLimits,
    totals: _Totals,
    temp_dir: Path | None,
) -> Iterator[ArchiveItem]:
    """Decompress one member chunk by chunk, counting the real bytes against every limit."""
    raw = info.orig_filename
    chunks: list[bytes] = []
    spill: IO[bytes] | None = None
    size = 0
    problem: ArchiveProblem | None = None
    totals.in_bytes += info.compress_size  # counted before streaming: a skipped member was still read
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK_BYTES):
                if size == 0 and chunk.startswith(_NESTED_MAGIC):
                    problem = _nested(raw)
                    break
                size += len(chunk)
                totals.out_bytes += len(chunk)
                _check_totals(totals, limits, raw)
                if size > min(limits.max_member_bytes, info.file_size):
                    problem = ArchiveProblem(
                        ProblemCode.MEMBER_TOO_LARGE, raw, f"entry {raw!r}: more bytes than its header declares"
                    )
                    break
                if size >= limits.ratio_min_bytes and size / max(1, info.compress_size) > limits.max_member_ratio:
                    problem = _ratio_problem(raw, size / max(1, info.compress_size), limits)
                    break
                if spill is None and size > limits.spill_bytes:
                    spill = tempfile.NamedTemporaryFile(dir=temp_dir, prefix="member-", delete=False)  # noqa: SIM115
                    spill.writelines(chunks)
                    chunks = []
                if spill is not None:
                    spill.write(chunk)
                else:
                    chunks.append(chunk)
    except ArchiveRejected:
        _discard(spill)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        problem = ArchiveProblem(ProblemCode.CORRUPT_MEMBER, raw, f"entry {raw!r}: cannot decompress ({exc})")
    except NotImplementedError as exc:
        problem = ArchiveProblem(ProblemCode.UNSUPPORTED_COMPRESSION, raw, f"entry {raw!r}: {exc}")
    if problem is not None:
        _discard(spill)
        yield problem
        return
    if spill is None:
        yield ArchiveMember(name=name, size=size, data=b"".join(chunks))
        return
    spill.close()
    try:
        yield ArchiveMember(name=name, size=size, path=Path(spill.name))
    finally:
        Path(spill.name).unlink(missing_ok=True)


def _check_totals(totals: _Totals, limits: ArchiveLimits, raw: str) -> None:
    if totals.out_bytes > limits.max_total_bytes:
        raise _rejected(
            ProblemCode.TOTAL_TOO_LARGE, f"more than {limits.max_total_bytes} bytes decompressed (at {raw!r})", raw
        )
    ratio = totals.out_bytes / max(1, totals.in_bytes)
    if totals.out_bytes >= limits.ratio_min_bytes and ratio > limits.max_total_ratio:
        raise _rejected(
            ProblemCode.TOTAL_RATIO, f"archive expands more than {limits.max_total_ratio:.0f} times (at {raw!r})", raw
        )


def _discard(spill: IO[bytes] | None) -> None:
    if spill is not None:
        spill.close()
        Path(spill.name).unlink(missing_ok=True)


def iter_folder(path: Path, limits: ArchiveLimits) -> Iterator[ArchiveItem]:
    """Every regular file under `path`. A symbolic link is followed only to a file inside the folder.
    The whole tree is listed (stat only) before the first item, so limits reject before any work."""
    root = path.resolve(strict=True)
    found: list[tuple[str, Path, int]] = []
    problems: list[ArchiveProblem] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for entry in sorted(dirnames + filenames):
            full = Path(dirpath) / entry
            name = full.relative_to(root).as_posix()
            file_or_problem = _folder_entry(root, full, name)
            if isinstance(file_or_problem, ArchiveProblem):
                problems.append(file_or_problem)
            elif file_or_problem is not None:
                target, size = file_or_problem
                found.append((name, target, size))
                total += size
                # Checked while walking: a huge tree is refused without listing all of it.
                if len(found) > limits.max_members:
                    raise _rejected(ProblemCode.TOO_MANY_MEMBERS, f"more than {limits.max_members} files")
                if total > limits.max_total_bytes:
                    raise _rejected(ProblemCode.TOTAL_TOO_LARGE, f"more than {limits.max_total_bytes} bytes")
    yield from problems
    for name, target, size in found:
        if size > limits.max_member_bytes:
            yield ArchiveProblem(
                ProblemCode.MEMBER_TOO_LARGE, name, f"{name!r}: {size} bytes, over {limits.max_member_bytes}"
            )
        elif name.lower().endswith(_NESTED_SUFFIXES):
            yield _nested(name)
        else:
            yield ArchiveMember(name=name, size=size, path=target)


def _folder_entry(root: Path, full: Path, name: str) -> tuple[Path, int] | ArchiveProblem | None:
    """(file, size) to yield, a problem, or None for a plain folder (os.walk enters it)."""
    try:
        info = full.lstat()
        if stat.S_ISDIR(info.st_mode):
            return None
        if stat.S_ISLNK(info.st_mode):
            target = full.resolve()
            if not target.is_relative_to(root) or not target.is_file():
                return ArchiveProblem(ProblemCode.SYMLINK, name, f"{name!r}: a link out of the folder or to a folder")
            full, info = target, target.stat()
        if not stat.S_ISREG(info.st_mode):
            return ArchiveProblem(
                ProblemCode.SPECIAL_FILE, name, f"{name!r}: not a regular file (device, pipe, socket)"
            )
    except OSError as exc:
        return ArchiveProblem(ProblemCode.UNREADABLE, name, f"{name!r}: {exc.strerror or exc}")
    return full, info.st_size


def _rejected(code: ProblemCode, message: str, name: str = "") -> ArchiveRejected:
    return ArchiveRejected(ArchiveProblem(code, name, message))
