"""Trinity's C-STORE SCP against pynetdicom SCUs over loopback: who may associate, what it accepts
(compressed transfer syntaxes included), and hostile datasets that must fail alone without harm."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, _config
from pynetdicom.association import Association

from server.imaging.scp import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS, VERIFICATION, ScpConfig, StoreSCP
from tests.support.phantoms import Grid, deeply_nested_bytes, huge_declared_bytes, write_series

SENDER = "MODALITY1"
GRID = Grid(rows=32, columns=32, pixel_spacing_mm=(1.0, 1.0), slice_count=3, slice_step_mm=2.0)
Received = queue.Queue[tuple[list[Path], str]]


@pytest.fixture
def received() -> Received:
    return queue.Queue()


def start_scp(tmp_path: Path, received: Received, **overrides: object) -> StoreSCP:
    config = ScpConfig(
        ae_title="TRINITY",
        host="127.0.0.1",
        port=0,
        spool_dir=tmp_path / "spool",
        allowed_calling_aets=frozenset({SENDER}),
        **overrides,  # type: ignore[arg-type]
    )
    scp = StoreSCP(config, lambda files, calling_ae: received.put((files, calling_ae)))
    scp.start()
    return scp


@pytest.fixture
def scp(tmp_path: Path, received: Received) -> Iterator[StoreSCP]:
    server = start_scp(tmp_path, received)
    yield server
    server.stop()


def associate(scp: StoreSCP, calling_ae: str = SENDER, transfer_syntaxes: tuple[str, ...] = ()) -> Association:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CTImageStorage, list(transfer_syntaxes or (ExplicitVRLittleEndian,)))
    return ae.associate("127.0.0.1", scp.port, ae_title="TRINITY")


def store_status(assoc: Association, dataset: pydicom.Dataset | Path) -> int:
    return int(assoc.send_c_store(dataset).Status)


def test_c_echo_from_an_allowed_ae_title_succeeds(scp: StoreSCP, received: Received) -> None:
    assoc = associate(scp)
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == SUCCESS
    assoc.release()
    scp.stop()  # an association that stored nothing hands nothing over
    assert received.empty()
    assert list(scp.config.spool_dir.iterdir()) == []


def test_an_unknown_calling_ae_title_is_rejected_at_association(scp: StoreSCP) -> None:
    assoc = associate(scp, calling_ae="STRANGER")
    assert assoc.is_rejected
    reply = assoc.acceptor.primitive
    assert reply is not None
    # A-ASSOCIATE-RJ: rejected-permanent, by the service user, calling AE title not recognized.
    assert (reply.result, reply.result_source, reply.diagnostic) == (0x01, 0x01, 0x03)


def test_a_wrong_called_ae_title_is_rejected(scp: StoreSCP) -> None:
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="NOT-TRINITY")
    assert assoc.is_rejected
    reply = assoc.acceptor.primitive
    assert reply is not None
    assert reply.diagnostic == 0x07  # called AE title not recognized


@pytest.mark.parametrize("transfer_syntax", [RLELossless, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless])
def test_compressed_instances_are_stored_as_sent(
    scp: StoreSCP, received: Received, tmp_path: Path, transfer_syntax: str
) -> None:
    plain = write_series(tmp_path / "plain", grid=GRID, supersample=1)
    packed = write_series(tmp_path / "packed", grid=GRID, supersample=1, transfer_syntax=transfer_syntax)
    assoc = associate(scp, transfer_syntaxes=(transfer_syntax,))
    assert [store_status(assoc, path) for path in packed.paths] == [SUCCESS] * len(packed.paths)
    assoc.release()
    files, calling_ae = received.get(timeout=30)
    assert calling_ae == SENDER
    stored = [pydicom.dcmread(f) for f in files]
    assert [str(ds.file_meta.TransferSyntaxUID) for ds in stored] == [transfer_syntax] * len(files)
    expected = [pydicom.dcmread(p).pixel_array for p in plain.paths]
    for ds, pixels in zip(stored, expected, strict=True):
        np.testing.assert_array_equal(ds.pixel_array, pixels)


def test_a_hostile_dataset_fails_alone_and_the_scp_keeps_serving(
    scp: StoreSCP, received: Received, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = tmp_path / "huge.dcm"
    huge.write_bytes(huge_declared_bytes(65535, 65535))  # 8 GiB declared, 64 bytes of pixel data
    nested = tmp_path / "nested.dcm"
    nested.write_bytes(deeply_nested_bytes(5000))  # sequences 5000 deep: recursion in any decoder
    good = write_series(tmp_path / "good", grid=GRID, supersample=1).paths[0]
    # A valid file meta, then an element declaring 65520 bytes of which 7 come.
    garbage = tmp_path / "garbage.dcm"
    raw = good.read_bytes()
    meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")  # after (0002,0000) and its group
    garbage.write_bytes(raw[:meta_end] + b"\x08\x00\x05\x00CS\xf0\xff" + b"\x00" * 7)
    # Send the files' bytes as they are, without pynetdicom decoding and re-encoding them.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)

    assoc = associate(scp)
    assert store_status(assoc, huge) == CANNOT_UNDERSTAND
    assert store_status(assoc, garbage) == CANNOT_UNDERSTAND
    assert store_status(assoc, nested) == CANNOT_UNDERSTAND
    assert store_status(assoc, good) == SUCCESS
    assoc.release()
    files, _ = received.get(timeout=30)
    assert len(files) == 1
    assert pydicom.dcmread(files[0]).SOPInstanceUID == pydicom.dcmread(good).SOPInstanceUID
    assert sorted(p.name for p in files[0].parent.iterdir()) == [files[0].name]  # no rejected leftovers

    again = associate(scp)  # and a new association is served as usual
    assert int(again.send_c_echo().Status) == SUCCESS
    again.release()


def test_an_association_over_its_file_limit_is_told_out_of_resources(tmp_path: Path, received: Received) -> None:
    scp = start_scp(tmp_path, received, max_files_per_association=2)
    try:
        paths = write_series(tmp_path / "study", grid=GRID, supersample=1).paths
        assoc = associate(scp)
        assert [store_status(assoc, p) for p in paths] == [SUCCESS, SUCCESS, OUT_OF_RESOURCES]
        assoc.release()
        files, _ = received.get(timeout=30)
        assert len(files) == 2
    finally:
        scp.stop()


def test_instances_acknowledged_before_an_abort_are_still_handed_over(
    scp: StoreSCP, received: Received, tmp_path: Path
) -> None:
    paths = write_series(tmp_path / "study", grid=GRID, supersample=1).paths
    assoc = associate(scp)
    assert store_status(assoc, paths[0]) == SUCCESS
    assoc.abort()
    files, calling_ae = received.get(timeout=30)
    assert (len(files), calling_ae) == (1, SENDER)


def test_a_failing_callback_keeps_the_files_and_the_scp(tmp_path: Path) -> None:
    calls: queue.Queue[list[Path]] = queue.Queue()

    def on_received(files: list[Path], calling_ae: str) -> None:
        calls.put(files)
        raise RuntimeError("ingest is down")

    config = ScpConfig("TRINITY", 0, tmp_path / "spool", frozenset({SENDER}), host="127.0.0.1")
    scp = StoreSCP(config, on_received)
    scp.start()
    try:
        paths = write_series(tmp_path / "study", grid=GRID, supersample=1).paths
        for _ in range(2):
            assoc = associate(scp)
            assert store_status(assoc, paths[0]) == SUCCESS
            assoc.release()
            [kept] = calls.get(timeout=30)
            assert kept.exists()
    finally:
        scp.stop()


@pytest.mark.parametrize(
    ("field", "value"),
    [("allowed_calling_aets", frozenset()), ("ae_title", "WAY-TOO-LONG-AE-TITLE"), ("ae_title", "BACK\\SLASH")],
)
def test_config_refuses_an_open_or_invalid_setup(tmp_path: Path, field: str, value: object) -> None:
    arguments: dict[str, object] = {
        "ae_title": "TRINITY",
        "port": 0,
        "spool_dir": tmp_path,
        "allowed_calling_aets": frozenset({SENDER}),
        field: value,
    }
    with pytest.raises(ValueError):
        ScpConfig(**arguments)  # type: ignore[arg-type]
