"""`trinity deid IN OUT`: de-identify DICOM files for engineers, outside the server.

IN is a DICOM file, a folder or a zip; OUT receives one `<new SOP Instance UID>.dcm` per instance
de-identified. The UID key is never a built-in constant: it comes from `--site-secret-file` or the
TRINITY_DEID_SECRET environment variable, and the command refuses to run without one, because a
key nobody chose would give every installation the same, guessable UID mapping.

Exit status: 0 every file de-identified; 1 some files refused or skipped (the others are written);
2 nothing done (no key, no input, or an archive refused as a whole; files already written are removed).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import os
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from server.imaging.archive import (
    ArchiveItem,
    ArchiveLimits,
    ArchiveMember,
    ArchiveProblem,
    ArchiveRejected,
    iter_folder,
    iter_zip_members,
)
from server.imaging.deid import MIN_SECRET_BYTES, DeidOptions, deidentify_bytes, derive_site_secret

SECRET_ENV = "TRINITY_DEID_SECRET"
NEW_SECRET_HINT = 'python -c "import secrets; print(secrets.token_hex(32))" > site.key'


@dataclass
class Summary:
    read: int = 0
    written: dict[Path, str] = field(default_factory=dict)  # output file → the input it came from
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (file, code, message)
    problems: list[ArchiveProblem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.refused and not self.problems


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "deid",
        help="de-identify DICOM files (PS3.15 basic profile) into a folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="a DICOM file, a folder of them, or a zip")
    p.add_argument("output", type=Path, help="folder for the copies, named <new SOP Instance UID>.dcm")
    p.add_argument(
        "--site-secret-file", type=Path, help=f"the site's UID key (else ${SECRET_ENV}); make one: {NEW_SECRET_HINT}"
    )
    p.add_argument("--site", help="derive this site's key from an install key, as the server does")
    p.add_argument(
        "--label", help="Patient Name and ID of the copies (default: ANON- + a keyed hash of the Patient ID)"
    )
    p.add_argument(
        "--allow-burned-in",
        action="store_true",
        help="also copy secondary captures, screen saves and flagged images (internal use by the owning site)",
    )
    p.add_argument("--retain-patient-characteristics", action="store_true", help="keep age, sex, size, weight")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace, settings: Any = None) -> int:
    secret = _secret(args, settings)
    if isinstance(secret, str):
        print(f"trinity deid: {secret}", file=sys.stderr)
        return 2
    if not args.input.exists():
        print(f"trinity deid: {args.input} does not exist", file=sys.stderr)
        return 2
    options = DeidOptions(
        allow_burned_in_risk=args.allow_burned_in, retain_patient_characteristics=args.retain_patient_characteristics
    )
    args.output.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    try:
        for item in _items(args.input):
            if isinstance(item, ArchiveProblem):
                summary.problems.append(item)
            else:
                _one(item, args, secret, options, summary)
    except ArchiveRejected as exc:
        for path in summary.written:
            path.unlink(missing_ok=True)
        print(f"trinity deid: {args.input} refused as a whole ({exc.problem.code}): {exc.problem.message}")
        print(f"removed the {len(summary.written)} files already written")
        return 2
    _print(summary, args.output)
    return 0 if summary.clean else 1


def _secret(args: argparse.Namespace, settings: Any) -> bytes | str:
    """The key, or why there is none. Never a default: see the module docstring."""
    if args.site_secret_file is not None:
        try:
            secret = args.site_secret_file.read_bytes().strip()
        except OSError as exc:
            return f"cannot read {args.site_secret_file}: {exc.strerror or exc}"
    else:
        secret = (os.environ.get(SECRET_ENV) or getattr(settings, "deid_secret", "") or "").strip().encode()
    if not secret:
        return f"no UID key: pass --site-secret-file or set {SECRET_ENV} (make one: {NEW_SECRET_HINT})"
    if len(secret) < MIN_SECRET_BYTES:
        return f"the UID key is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed"
    return derive_site_secret(secret, args.site) if args.site else secret


def _items(path: Path) -> Iterator[ArchiveItem]:
    limits = ArchiveLimits()
    if path.is_dir():
        yield from iter_folder(path, limits)
    elif _is_zip(path):
        yield from iter_zip_members(path, limits)
    else:
        yield ArchiveMember(name=path.name, size=path.stat().st_size, path=path)


def _is_zip(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(132)
    return head[128:132] != b"DICM" and zipfile.is_zipfile(path)


def _one(member: ArchiveMember, args: argparse.Namespace, secret: bytes, options: DeidOptions, out: Summary) -> None:
    out.read += 1
    data = member.read_bytes()
    label = args.label or _pseudonym(data, secret)
    result = deidentify_bytes(data, site_secret=secret, label=label, options=options)
    if result.refusal is not None or result.data is None or result.instance is None:
        code, message = (result.refusal.code, result.refusal.message) if result.refusal else ("no_uid", "no SOP UID")
        out.refused.append((member.name, str(code), message))
        return
    target = args.output / f"{result.instance.new}.dcm"
    if target in out.written:
        out.refused.append((member.name, "duplicate_instance", "the same instance as an earlier file, which is kept"))
        return
    partial = target.with_suffix(".part")
    partial.write_bytes(result.data)
    partial.replace(target)  # a reader of OUT never sees half a file
    out.written[target] = member.name


def _pseudonym(data: bytes, secret: bytes) -> str:
    """One label per original patient, so a folder of several patients stays apart in a viewer."""
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["PatientID"], force=True)
        patient_id = str(header.get("PatientID", ""))
    except Exception:  # unreadable files are refused by deidentify_bytes with the reason
        patient_id = ""
    digest = hmac.new(secret, b"patient:" + patient_id.encode(), hashlib.sha256).hexdigest()
    return f"ANON-{digest[:10].upper()}"


def _print(summary: Summary, output: Path) -> None:
    written = len(summary.written)
    print(f"read {summary.read} files: {written} de-identified, {len(summary.refused)} refused")
    for code, count in sorted(Counter(code for _, code, _ in summary.refused).items()):
        print(f"  refused {code}: {count}")
    for name, code, message in summary.refused:
        print(f"    {name}: {code}: {message}")
    if summary.problems:
        print(f"skipped {len(summary.problems)} entries:")
        for problem in summary.problems:
            print(f"  {problem.code}: {problem.message}")
    print(f"wrote {written} files to {output}")
