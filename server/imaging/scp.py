"""A DICOM C-STORE SCP: hospital modalities and PACS push studies to Trinity (an edge, pynetdicom).

Each accepted association gets its own spool folder. Every instance is checked (it decodes, its UIDs
match the C-STORE request, native pixel data is as long as its header says) and written as a DICOM
Part 10 file, fsynced before the success status goes back: an acknowledged instance survives a crash.
When the association ends, `on_received(files, calling_ae)` gets the folder's files in one call so
the server can ingest them as one job; from then on the files are the callback's to move or delete.
One bad dataset fails with a status and never takes the SCP down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import cast

import pydicom.uid as uids
from pydicom.pixels.utils import get_expected_length
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)

OnReceived = Callable[[list[Path], str], None]

# What a 3D-printing consultation is built from: volumes (CT, CBCT, MR, PET), derived objects (RT
# structures, segmentations, registrations, meshes) and the secondary captures that come with them.
STORAGE_SOP_CLASSES: tuple[str, ...] = (
    uids.CTImageStorage,
    uids.EnhancedCTImageStorage,
    uids.LegacyConvertedEnhancedCTImageStorage,
    uids.MRImageStorage,
    uids.EnhancedMRImageStorage,
    uids.LegacyConvertedEnhancedMRImageStorage,
    uids.PositronEmissionTomographyImageStorage,
    uids.EnhancedPETImageStorage,
    uids.XRay3DAngiographicImageStorage,
    uids.XRay3DCraniofacialImageStorage,
    uids.SecondaryCaptureImageStorage,
    uids.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uids.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    uids.MultiFrameTrueColorSecondaryCaptureImageStorage,
    uids.RTStructureSetStorage,
    uids.RTPlanStorage,
    uids.RTDoseStorage,
    uids.SegmentationStorage,
    uids.SurfaceSegmentationStorage,
    uids.SpatialRegistrationStorage,
    uids.DeformableSpatialRegistrationStorage,
    uids.EncapsulatedSTLStorage,
    uids.EncapsulatedOBJStorage,
    uids.EncapsulatedMTLStorage,
    uids.EncapsulatedPDFStorage,
)
NATIVE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uids.ExplicitVRLittleEndian,
    uids.ImplicitVRLittleEndian,
    uids.DeflatedExplicitVRLittleEndian,
    uids.ExplicitVRBigEndian,
)
TRANSFER_SYNTAXES: tuple[str, ...] = (
    *NATIVE_TRANSFER_SYNTAXES,
    uids.JPEGLosslessSV1,
    uids.JPEGLossless,
    uids.JPEGLSLossless,
    uids.JPEGLSNearLossless,
    uids.JPEG2000Lossless,
    uids.JPEG2000,
    uids.HTJ2KLossless,
    uids.HTJ2KLosslessRPCL,
    uids.HTJ2K,
    uids.RLELossless,
    uids.JPEGBaseline8Bit,
    uids.JPEGExtended12Bit,
)

VERIFICATION = "1.2.840.10008.1.1"  # C-ECHO
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash, 1..16


@dataclass(frozen=True)
class ScpConfig:
    """Where and whom the SCP listens for. Only `allowed_calling_aets` may associate (never empty)."""

    ae_title: str
    port: int  # 0: any free port (see StoreSCP.port)
    spool_dir: Path
    allowed_calling_aets: frozenset[str]
    host: str = "0.0.0.0"
    require_called_aet: bool = True  # reject peers that address another AE title
    max_pdu_bytes: int = 262_144
    max_associations: int = 8
    max_files_per_association: int = 20_000
    max_bytes_per_association: int = 8 * 1024**3
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    network_timeout_s: float = 60.0
    storage_sop_classes: tuple[str, ...] = STORAGE_SOP_CLASSES
    transfer_syntaxes: tuple[str, ...] = field(default=TRANSFER_SYNTAXES)

    def __post_init__(self) -> None:
        for title in (self.ae_title, *self.allowed_calling_aets):
            if not _AE_TITLE.match(title) or not title.strip():
                raise ValueError(f"not a valid AE title (1-16 printable ASCII, no backslash): {title!r}")
        if not self.allowed_calling_aets:
            raise ValueError("allowed_calling_aets is empty: name the AE titles that may send studies")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")


@dataclass
class _Session:
    """What one association has stored so far."""

    folder: Path
    calling_ae: str
    files: list[Path] = field(default_factory=list)
    bytes_stored: int = 0


class StoreSCP:
    def __init__(self, config: ScpConfig, on_received: OnReceived) -> None:
        self.config = config
        self._on_received = on_received
        self._sessions: dict[Association, _Session] = {}
        self._lock = threading.Lock()
        self._ae = self._make_ae()
        self._server: ThreadedAssociationServer | None = None

    def _make_ae(self) -> AE:
        c = self.config
        ae = AE(ae_title=c.ae_title)
        ae.require_calling_aet = sorted(c.allowed_calling_aets)
        ae.require_called_aet = c.require_called_aet
        ae.maximum_pdu_size = c.max_pdu_bytes
        ae.maximum_associations = c.max_associations
        ae.acse_timeout = c.acse_timeout_s
        ae.dimse_timeout = c.dimse_timeout_s
        ae.network_timeout = c.network_timeout_s
        ae.add_supported_context(VERIFICATION)
        for sop_class in c.storage_sop_classes:
            ae.add_supported_context(sop_class, list(c.transfer_syntaxes))
        return ae

    @property
    def port(self) -> int:
        """The bound port (useful with config.port == 0)."""
        if self._server is None:
            raise RuntimeError("the SCP is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve in background threads; raises OSError if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the SCP is already started")
        self.config.spool_dir.mkdir(parents=True, exist_ok=True)
        handlers: list[EventHandlerType] = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_RELEASED, self._handle_end),
            (evt.EVT_ABORTED, self._handle_end),  # also a dropped connection (A-P-ABORT) or a timeout
        ]
        address = (self.config.host, self.config.port)
        self._server = self._ae.start_server(address, block=False, evt_handlers=handlers)
        log.info("DICOM SCP %s listening on %s:%d", self.config.ae_title, self.config.host, self.port)

    def stop(self) -> None:
        """Abort open associations (their acknowledged files are still handed over) and close the port."""
        if self._server is None:
            return
        self._ae.shutdown()
        self._server = None
        with self._lock:  # an association whose end raised no event still hands over what it stored
            leftovers, self._sessions = list(self._sessions.values()), {}
        for session in leftovers:
            self._hand_over(session, "cut by stop()")
        log.info("DICOM SCP %s stopped", self.config.ae_title)

    # --- handlers, run in pynetdicom's association threads ---

    def _handle_store(self, event: Event) -> int:
        request = cast(C_STORE, event.request)
        calling_ae = event.assoc.requestor.ae_title
        try:
            raw = cast(BytesIO, request.DataSet).getvalue()
            session = self._session(event.assoc)
            c = self.config
            if len(session.files) >= c.max_files_per_association:
                log.warning("%s: more than %d files in one association", calling_ae, c.max_files_per_association)
                return OUT_OF_RESOURCES
            if session.bytes_stored + len(raw) > c.max_bytes_per_association:
                log.warning("%s: more than %d bytes in one association", calling_ae, c.max_bytes_per_association)
                return OUT_OF_RESOURCES
            status, problem = _check_dataset(event)
            if status != SUCCESS:
                log.warning("%s: rejected instance %s: %s", calling_ae, request.AffectedSOPInstanceUID, problem)
                return status
            path = session.folder / f"{len(session.files):06d}.dcm"
            _write_durably(path, encode_file_meta(event.file_meta), raw)
        except OSError:
            log.exception("%s: could not spool an instance", calling_ae)
            return OUT_OF_RESOURCES
        except Exception:  # hostile or broken input: fail this dataset, keep serving
            log.exception("%s: could not handle an instance", calling_ae)
            return CANNOT_UNDERSTAND
        session.files.append(path)
        session.bytes_stored += len(raw)
        return SUCCESS

    def _session(self, assoc: Association) -> _Session:
        with self._lock:
            session = self._sessions.get(assoc)
            if session is None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
                folder = self.config.spool_dir / f"{stamp}-{uuid.uuid4().hex[:12]}"
                folder.mkdir()
                session = self._sessions[assoc] = _Session(folder, assoc.requestor.ae_title)
            return session

    def _handle_end(self, event: Event) -> None:
        with self._lock:
            session = self._sessions.pop(event.assoc, None)
        if session is not None:  # None: nothing was stored
            self._hand_over(session, "released" if event.assoc.is_released else "aborted")

    def _hand_over(self, session: _Session, how: str) -> None:
        if not session.files:
            with contextlib.suppress(OSError):
                session.folder.rmdir()
            return
        log.info("%s: association %s with %d instance(s)", session.calling_ae, how, len(session.files))
        try:
            self._on_received(list(session.files), session.calling_ae)
        except Exception:  # the files stay in the spool for a later retry
            log.exception("on_received failed for %s (files kept in %s)", session.calling_ae, session.folder)


def _check_dataset(event: Event) -> tuple[int, str]:
    """(status, problem): decode the dataset fully and compare it with the C-STORE request."""
    request = cast(C_STORE, event.request)
    try:
        dataset = event.dataset
        dataset.walk(lambda _ds, _elem: None)  # force decoding of every element, nested ones included
        sop_class, sop_instance = dataset.get("SOPClassUID"), dataset.get("SOPInstanceUID")
    except Exception as exc:
        return CANNOT_UNDERSTAND, f"does not decode: {type(exc).__name__}: {exc}"
    if not sop_class or not sop_instance:
        return CANNOT_UNDERSTAND, "no SOP Class UID or SOP Instance UID in the dataset (truncated?)"
    if sop_class != request.AffectedSOPClassUID:
        return DOES_NOT_MATCH_SOP_CLASS, f"SOP Class {sop_class} but the request says {request.AffectedSOPClassUID}"
    if sop_instance != request.AffectedSOPInstanceUID:
        return CANNOT_UNDERSTAND, f"SOP Instance {sop_instance} but the request says {request.AffectedSOPInstanceUID}"
    transfer_syntax = event.context.transfer_syntax
    if "PixelData" in dataset and transfer_syntax in NATIVE_TRANSFER_SYNTAXES:
        try:
            expected = get_expected_length(dataset, unit="bytes")  # knows YBR_FULL_422 and 1-bit packing
            actual = len(dataset.PixelData)
        except Exception as exc:
            return CANNOT_UNDERSTAND, f"image pixel module unreadable: {type(exc).__name__}: {exc}"
        if expected == 0 or actual < expected:
            return CANNOT_UNDERSTAND, f"Pixel Data has {actual} bytes, the header declares {expected}"
    return SUCCESS, ""


def _write_durably(path: Path, file_meta: bytes, dataset: bytes) -> None:
    """Part 10 file = preamble, "DICM", file meta, dataset as received; on disk before we say so."""
    partial = path.with_suffix(".part")
    try:
        with partial.open("xb") as f:
            f.write(b"\x00" * 128 + b"DICM")
            f.write(file_meta)
            f.write(dataset)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a crash
    finally:
        os.close(directory)
