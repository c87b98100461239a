"""Pull studies from a hospital PACS over DICOMweb: QIDO-RS search, WADO-RS retrieve (an edge).

Synchronous on purpose: the server runs a retrieve inside a job process, where a blocking client is the
simplest correct thing. A retrieve streams the multipart response to disk part by part, enforcing the
byte and file limits as bytes arrive, so a hostile or mistaken PACS cannot fill memory or disk.
`auth` is HTTP Basic as (user, password), a BearerToken, or any httpx.Auth; `verify` takes an
ssl.SSLContext for a hospital's private CA.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from pydicom.datadict import keyword_for_tag

from server.imaging.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart, boundary_of

log = logging.getLogger(__name__)

Auth = httpx.Auth | tuple[str, str] | None
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MAX_JSON_BYTES = 32 * 1024 * 1024
STUDY_FIELDS = ("StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("SeriesDescription", "BodyPartExamined", "NumberOfSeriesRelatedInstances")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE_RANGE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")


class BearerToken(httpx.Auth):
    """`Authorization: Bearer <token>`, as cloud DICOMweb services (and OAuth-fronted PACS) expect."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class PacsError(Exception):
    """Base of every failure talking to a PACS; the message says what and where."""


class PacsUnreachable(PacsError):
    """No connection could be made (DNS, refused, connect timeout, TLS)."""


class PacsTransferError(PacsError):
    """The connection was made but broke or stalled (read timeout, reset) mid-answer."""


class PacsHttpError(PacsError):
    """The PACS answered with an HTTP error status."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class PacsResponseError(PacsError):
    """The PACS answered 2xx with a body that is not what DICOMweb promises (bad JSON, bad multipart)."""


class RetrieveLimitExceeded(PacsError):
    """A retrieve would exceed max_files or max_bytes; nothing of it is left on disk."""


@dataclass(frozen=True)
class PacsTimeouts:
    connect_s: float = 10.0
    read_s: float = 60.0  # the longest silence between two chunks, not the whole transfer

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_s, connect=self.connect_s)


@dataclass(frozen=True)
class StudyQuery:
    """QIDO-RS study filters; None means no filter. `study_date` is YYYYMMDD or a range like 20240101-20240131."""

    patient_id: str | None = None
    study_date: str | None = None
    accession_number: str | None = None
    modalities_in_study: str | None = None
    limit: int = 100

    def params(self) -> dict[str, str]:
        if self.study_date is not None and (self.study_date in ("", "-") or not _DATE_RANGE.match(self.study_date)):
            raise ValueError(f"study_date must be YYYYMMDD or a YYYYMMDD-YYYYMMDD range, not {self.study_date!r}")
        if not 1 <= self.limit <= 10_000:
            raise ValueError(f"limit must be 1..10000, not {self.limit}")
        filters = {
            "PatientID": self.patient_id,
            "StudyDate": self.study_date,
            "AccessionNumber": self.accession_number,
            "ModalitiesInStudy": self.modalities_in_study,
        }
        params = {key: value for key, value in filters.items() if value is not None}
        params["limit"] = str(self.limit)
        return params


def search_studies(
    base_url: str,
    query: StudyQuery,
    *,
    auth: Auth = None,
    timeouts: PacsTimeouts = PacsTimeouts(),
    verify: ssl.SSLContext | bool = True,
) -> list[dict[str, Any]]:
    """QIDO-RS GET {base_url}/studies: one dict per study, keyed by DICOM keyword (PatientName as a str)."""
    params = (*query.params().items(), *(("includefield", field) for field in STUDY_FIELDS))
    return _qido(base_url, "studies", params, _client(auth, timeouts, verify))


def search_series(
    base_url: str,
    study_uid: str,
    *,
    modality: str | None = None,
    auth: Auth = None,
    timeouts: PacsTimeouts = PacsTimeouts(),
    verify: ssl.SSLContext | bool = True,
) -> list[dict[str, Any]]:
    """QIDO-RS GET {base_url}/studies/{study_uid}/series: one dict per series, keyed by DICOM keyword."""
    params = tuple(("includefield", field) for field in SERIES_FIELDS)
    if modality is not None:
        params += (("Modality", modality),)
    path = f"studies/{_checked_uid(study_uid)}/series"
    return _qido(base_url, path, params, _client(auth, timeouts, verify))


def retrieve_study(
    base_url: str,
    study_uid: str,
    dest_dir: Path,
    *,
    max_bytes: int,
    max_files: int,
    auth: Auth = None,
    timeouts: PacsTimeouts = PacsTimeouts(),
    verify: ssl.SSLContext | bool = True,
) -> list[Path]:
    """WADO-RS GET {base_url}/studies/{study_uid}: every instance as a DICOM file in dest_dir, in arrival order.

    Instances come in their stored transfer syntax (no transcoding by the PACS). dest_dir must be new
    or empty. On any failure the files written so far are removed and a PacsError subclass is raised
    (an OSError if the local disk fails).
    """
    url = f"{base_url.rstrip('/')}/studies/{_checked_uid(study_uid)}"
    dest_dir.mkdir(parents=True, exist_ok=True)
    if any(dest_dir.iterdir()):  # failures clean up by deleting what is there: only ever our own files
        raise ValueError(f"dest_dir must be empty: {dest_dir}")
    writer = _StudyWriter(dest_dir, max_bytes=max_bytes, max_files=max_files, where=_redact(url))
    try:
        with _client(auth, timeouts, verify) as client, _request(client, url, {"Accept": WADO_ACCEPT}) as response:
            if response.status_code == 204:
                return []
            try:
                parser = MultipartParser(boundary_of(response.headers.get("content-type", "")))
                for chunk in _chunks(response, url):
                    for event in parser.feed(chunk):
                        writer.handle(event)
                parser.close()
            except MultipartError as exc:
                raise PacsResponseError(f"bad WADO-RS answer from {_redact(url)}: {exc}") from exc
        log.info("retrieved %d instance(s), %d bytes, from %s", len(writer.files), writer.total_bytes, _redact(url))
        return writer.files
    except BaseException:
        writer.discard()
        raise


class _StudyWriter:
    """Turns multipart events into files, one per part, within the limits."""

    def __init__(self, dest_dir: Path, *, max_bytes: int, max_files: int, where: str) -> None:
        self.dest_dir, self.max_bytes, self.max_files, self.where = dest_dir, max_bytes, max_files, where
        self.files: list[Path] = []
        self.total_bytes = 0
        self._current: IO[bytes] | None = None
        self._current_path: Path | None = None
        self._head = b""  # the first 132 bytes of the part: preamble and "DICM"

    def handle(self, event: PartStart | PartData | PartEnd) -> None:
        if isinstance(event, PartStart):
            media_type = event.content_type.split(";")[0].strip().lower()
            if media_type not in ("application/dicom", ""):
                raise PacsResponseError(f"{self.where}: part {len(self.files) + 1} is {media_type!r}, not DICOM")
            if len(self.files) >= self.max_files:
                raise RetrieveLimitExceeded(f"{self.where}: the study has more than max_files={self.max_files} files")
            self._current_path = self.dest_dir / f"{len(self.files):06d}.dcm.part"
            self._current = self._current_path.open("xb")
            self._head = b""
        elif isinstance(event, PartData):
            assert self._current is not None
            self.total_bytes += len(event.data)
            if self.total_bytes > self.max_bytes:
                raise RetrieveLimitExceeded(f"{self.where}: the study is larger than max_bytes={self.max_bytes}")
            if len(self._head) < 132:
                self._head += event.data[: 132 - len(self._head)]
            self._current.write(event.data)
        else:
            assert self._current is not None and self._current_path is not None
            self._current.close()
            self._current = None
            if self._head[128:132] != b"DICM":
                raise PacsResponseError(f"{self.where}: part {len(self.files) + 1} is not a DICOM Part 10 file")
            final = self._current_path.with_suffix("")  # drop ".part": the file is complete
            os.replace(self._current_path, final)
            self._current_path = None
            self.files.append(final)

    def discard(self) -> None:
        if self._current is not None:
            self._current.close()
        for path in [*self.files, *([self._current_path] if self._current_path else [])]:
            path.unlink(missing_ok=True)
        self.files = []


def _qido(base_url: str, path: str, params: tuple[tuple[str, str], ...], client: httpx.Client) -> list[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}/{path}"
    with (
        client,
        _request(client, url, {"Accept": "application/dicom+json"}, params) as r,
    ):
        if r.status_code == 204:  # QIDO-RS: no match
            return []
        body = bytearray()
        for chunk in _chunks(r, url):
            body += chunk
            if len(body) > MAX_JSON_BYTES:
                raise PacsResponseError(f"QIDO-RS answer from {_redact(url)} is larger than {MAX_JSON_BYTES} bytes")
    try:
        results = json.loads(body) if body.strip() else []
        if not isinstance(results, list):
            raise ValueError("not a JSON array")
        return [from_dicom_json(item) for item in results]
    except (ValueError, TypeError, AttributeError) as exc:
        raise PacsResponseError(f"QIDO-RS answer from {_redact(url)} is not DICOM JSON: {exc}") from exc


def from_dicom_json(item: Mapping[str, Any]) -> dict[str, Any]:
    """One DICOM JSON object (PS3.18 F.2) → {keyword: value}; one value → scalar, several → list."""
    parsed: dict[str, Any] = {}
    for tag, element in item.items():
        keyword = keyword_for_tag(int(tag, 16)) or tag
        values = [
            v.get("Alphabetic", "") if isinstance(v, dict) and element.get("vr") == "PN" else v
            for v in element.get("Value", [])
        ]
        parsed[keyword] = values[0] if len(values) == 1 else (values or None)
    return parsed


def _client(auth: Auth, timeouts: PacsTimeouts, verify: ssl.SSLContext | bool) -> httpx.Client:
    # No redirects: credentials must not follow a redirect to another host.
    return httpx.Client(auth=auth, timeout=timeouts.httpx(), verify=verify, follow_redirects=False)


@contextmanager
def _request(
    client: httpx.Client, url: str, headers: dict[str, str], params: tuple[tuple[str, str], ...] = ()
) -> Iterator[httpx.Response]:
    """Open a streamed GET; transport failures and HTTP errors become PacsError subclasses."""
    try:
        with client.stream("GET", url, headers=headers, params=params) as response:
            if response.status_code >= 300:
                detail = _error_detail(response, url)
                raise PacsHttpError(
                    f"PACS answered {response.status_code} {response.reason_phrase} to GET {_redact(url)}{detail}",
                    response.status_code,
                )
            yield response
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        raise PacsUnreachable(f"PACS at {_redact(url)} is unreachable: {exc or type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise PacsTransferError(f"transfer from {_redact(url)} failed: {exc or type(exc).__name__}") from exc


def _chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    # iter_bytes decodes gzip/deflate as it goes, so the limits count what lands on disk.
    try:
        yield from response.iter_bytes()
    except httpx.DecodingError as exc:
        raise PacsResponseError(f"answer from {_redact(url)} could not be decoded: {exc}") from exc


def _error_detail(response: httpx.Response, url: str) -> str:
    """A short excerpt of an error body for the message (bounded: error pages can be large)."""
    try:
        excerpt = b""
        for chunk in response.iter_bytes():
            excerpt += chunk
            if len(excerpt) >= 500:
                break
        text = " ".join(excerpt[:500].decode("utf-8", "replace").split())
        return f": {text}" if text else ""
    except httpx.HTTPError:
        return ""


def _checked_uid(uid: str) -> str:
    # The UID goes into a URL path: accept only what a DICOM UID can be.
    if len(uid) > 64 or not _UID.match(uid):
        raise ValueError(f"not a DICOM UID: {uid[:80]!r}")
    return uid


def _redact(url: str) -> str:
    """The URL without credentials, for messages and logs."""
    return str(httpx.URL(url).copy_with(username=None, password=None))
