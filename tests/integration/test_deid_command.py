"""`trinity deid IN OUT`: an engineer de-identifies a folder or zip of a phantom CT series."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest

from server.imaging.deid_command import SECRET_ENV, add_parser
from tests.support.phantoms import FAKE_PATIENT, Grid, write_series

REPO = Path(__file__).resolve().parents[2]
KEY = "site-key-0123456789abcdef0123456789"
PHI = [v for k, v in FAKE_PATIENT.items() if k != "PatientSex"]


def trinity(*argv: str) -> int:
    """Parse and run like `trinity deid ...`, through the parser this module exposes."""
    parser = argparse.ArgumentParser(prog="trinity")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["deid", *argv])
    return int(args.fn(args, None))


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, list[str]]:
    """Four CT slices, a scout, a screenshot, a README and a truncated copy of the first slice."""
    written = write_series(
        tmp_path / "export",
        grid=Grid(rows=16, columns=16, slice_count=4),
        add_localizer=True,
        add_secondary_capture=True,
        add_non_dicom=True,
        add_truncated=True,
    )
    return tmp_path / "export", written.sop_uids


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.key"
    path.write_text(KEY + "\n")
    return path


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_folder_becomes_deidentified_copies_named_by_their_new_uid(
    study: tuple[Path, list[str]], key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, sop_uids = study
    code = trinity(str(folder), str(tmp_path / "out"), "--site-secret-file", str(key_file), "--label", "CASE-12")

    files = outputs(tmp_path / "out")
    assert code == 1  # some files were refused
    assert len(files) == len(sop_uids) + 1  # the slices and the scout
    for name, data in files.items():
        assert [s for s in PHI if s.encode() in data] == []
        assert not [uid for uid in sop_uids if uid.encode() in data]
        ds = pydicom.dcmread(tmp_path / "out" / name)
        assert name == f"{ds.SOPInstanceUID}.dcm" == f"{ds.file_meta.MediaStorageSOPInstanceUID}.dcm"
        assert (str(ds.PatientName), ds.PatientID, ds.PatientIdentityRemoved) == ("CASE-12", "CASE-12", "YES")
    report = capsys.readouterr().out
    assert f"read 8 files: {len(files)} de-identified, 3 refused" in report
    for reason in ("secondary_capture", "not_dicom", "duplicate_instance", "SCREENSHOT.dcm", "README.txt"):
        assert reason in report


def test_the_same_study_as_a_zip_gives_the_same_files_and_another_key_does_not(
    study: tuple[Path, list[str]], key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = study
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"export/{path.name}")

    trinity(str(folder), str(tmp_path / "a"), "--site-secret-file", str(key_file), "--label", "X")
    trinity(str(archive), str(tmp_path / "b"), "--site-secret-file", str(key_file), "--label", "X")
    monkeypatch.setenv(SECRET_ENV, "another-key-0123456789abcdef")
    trinity(str(folder), str(tmp_path / "c"), "--label", "X")

    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    assert not set(outputs(tmp_path / "a")) & set(outputs(tmp_path / "c"))


def test_unsafe_zip_entries_are_skipped_and_the_rest_written(
    study: tuple[Path, list[str]], key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, sop_uids = study
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../etc/passwd", b"root:x:0:0")
        for path in sorted(folder.glob("IM*.dcm")):
            zf.write(path, path.name)

    code = trinity(str(archive), str(tmp_path / "out"), "--site-secret-file", str(key_file))

    assert code == 1 and len(outputs(tmp_path / "out")) == len(sop_uids)
    assert "path_traversal: entry '../../etc/passwd'" in capsys.readouterr().out


def test_a_zip_bomb_is_refused_and_leaves_nothing_behind(key_file: Path, tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.dcm", "w") as member:
        for _ in range(64):
            member.write(b"\0" * 1024**2)

    assert trinity(str(archive), str(tmp_path / "out"), "--site-secret-file", str(key_file)) == 2
    assert outputs(tmp_path / "out") == {}


def test_without_a_key_nothing_is_written_and_the_message_says_how_to_make_one(
    study: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = study
    assert trinity(str(folder), str(tmp_path / "out")) == 2
    assert SECRET_ENV in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_burned_in_risk_override_and_the_default_pseudonym(
    study: tuple[Path, list[str]], key_file: Path, tmp_path: Path
) -> None:
    folder, sop_uids = study
    code = trinity(str(folder), str(tmp_path / "out"), "--site-secret-file", str(key_file), "--allow-burned-in")

    names = {str(pydicom.dcmread(tmp_path / "out" / n).PatientName) for n in outputs(tmp_path / "out")}
    assert code == 1  # the README and the duplicate are still refused
    assert len(outputs(tmp_path / "out")) == len(sop_uids) + 2  # now with the screenshot
    assert len(names) == 1 and names.pop().startswith("ANON-")  # one patient, one keyed pseudonym


def test_the_subcommand_runs_in_a_fresh_interpreter(study: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, sop_uids = study
    script = (
        "import argparse, sys\n"
        "from server.imaging.deid_command import add_parser\n"
        "parser = argparse.ArgumentParser(prog='trinity')\n"
        "add_parser(parser.add_subparsers(dest='command', required=True))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.fn(args, None))\n"
    )
    env = {**os.environ, SECRET_ENV: KEY}
    done = subprocess.run(
        [sys.executable, "-c", script, "deid", str(folder / "IM0001.dcm"), str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "read 1 files: 1 de-identified, 0 refused" in done.stdout
    (only,) = outputs(tmp_path / "out").values()
    assert [s for s in PHI if s.encode() in only] == []
    assert not [uid for uid in sop_uids if uid.encode() in only]
