"""The DICOMweb client against a misbehaving PACS (a scripted HTTP server on loopback): every failure is a
typed PacsError with a message naming the problem, and a failed retrieve leaves no file behind."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from server.imaging.pacs_client import (
    BearerToken,
    PacsHttpError,
    PacsResponseError,
    PacsTimeouts,
    PacsTransferError,
    RetrieveLimitExceeded,
    StudyQuery,
    from_dicom_json,
    retrieve_study,
    search_studies,
)

DICOM_PART = b"\x00" * 128 + b"DICM" + b"rest of a file"
MULTIPART = 'multipart/related; type="application/dicom"; boundary=BOUNDARY'


@dataclass
class Answer:
    status: int = 200
    content_type: str = MULTIPART
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    stall_s: float = 0.0  # stop sending after the headers for this long


class ScriptedPacs:
    def __init__(self) -> None:
        self.answer = Answer()
        self.requests: list[tuple[str, dict[str, str]]] = []
        pacs = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pacs.requests.append((self.path, dict(self.headers)))
                answer = pacs.answer
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if answer.stall_s:
                    threading.Event().wait(answer.stall_s)
                self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()


@pytest.fixture
def pacs() -> Iterator[ScriptedPacs]:
    server = ScriptedPacs()
    yield server
    server.server.shutdown()
    server.server.server_close()


def multipart(*parts: bytes, close: bool = True) -> bytes:
    body = b"".join(b"--BOUNDARY\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts)
    return body + (b"--BOUNDARY--\r\n" if close else b"")


def retrieve(pacs: ScriptedPacs, dest: Path, **kwargs: object) -> list[Path]:
    options: dict[str, object] = {"max_bytes": 1_000_000, "max_files": 10, **kwargs}
    return retrieve_study(pacs.url, "1.2.3", dest, **options)  # type: ignore[arg-type]


def test_retrieve_asks_for_dicom_parts_in_their_stored_transfer_syntax(pacs: ScriptedPacs, tmp_path: Path) -> None:
    pacs.answer = Answer(body=multipart(DICOM_PART, DICOM_PART))
    files = retrieve(pacs, tmp_path, auth=("user", "secret"))
    assert [f.read_bytes() for f in files] == [DICOM_PART, DICOM_PART]
    path, headers = pacs.requests[0]
    assert path == "/dicom-web/studies/1.2.3"
    assert headers["Accept"] == 'multipart/related; type="application/dicom"; transfer-syntax=*'
    assert headers["Authorization"].startswith("Basic ")


def test_a_server_error_carries_the_status_and_an_excerpt_of_the_body(pacs: ScriptedPacs, tmp_path: Path) -> None:
    pacs.answer = Answer(status=503, content_type="text/plain", body=b"archive offline " * 200)
    with pytest.raises(PacsHttpError, match=r"503 .*archive offline") as raised:
        retrieve(pacs, tmp_path)
    assert raised.value.status_code == 503
    assert len(str(raised.value)) < 1000


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (Answer(body=multipart(DICOM_PART, close=False)), "truncated"),
        (Answer(content_type="application/dicom", body=DICOM_PART), "expected a multipart"),
        (Answer(content_type="multipart/related", body=multipart(DICOM_PART)), "boundary"),
        (Answer(body=multipart(DICOM_PART, b"<html>not dicom</html>")), "not a DICOM Part 10 file"),
        (Answer(body=multipart(DICOM_PART).replace(b"application/dicom", b"text/html", 1)), "'text/html'"),
    ],
)
def test_a_bad_multipart_answer_is_refused_and_leaves_nothing(
    pacs: ScriptedPacs, tmp_path: Path, answer: Answer, problem: str
) -> None:
    pacs.answer = answer
    with pytest.raises(PacsResponseError, match=problem):
        retrieve(pacs, tmp_path / "pulled")
    assert list((tmp_path / "pulled").iterdir()) == []


def test_limits_count_decompressed_bytes(pacs: ScriptedPacs, tmp_path: Path) -> None:
    big = b"\x00" * 128 + b"DICM" + b"\x00" * 5_000_000  # gzips to a few kB
    pacs.answer = Answer(body=gzip.compress(multipart(big)), headers=(("Content-Encoding", "gzip"),))
    with pytest.raises(RetrieveLimitExceeded, match="max_bytes=1000000"):
        retrieve(pacs, tmp_path / "pulled")
    assert list((tmp_path / "pulled").iterdir()) == []


def test_a_stalled_pacs_is_a_transfer_error(pacs: ScriptedPacs, tmp_path: Path) -> None:
    pacs.answer = Answer(body=multipart(DICOM_PART), stall_s=2.0)
    with pytest.raises(PacsTransferError, match="failed"):
        retrieve(pacs, tmp_path, timeouts=PacsTimeouts(connect_s=2.0, read_s=0.2))


def test_qido_answers_that_are_not_dicom_json_are_refused(pacs: ScriptedPacs) -> None:
    pacs.answer = Answer(content_type="application/dicom+json", body=b"{not json")
    with pytest.raises(PacsResponseError, match="not DICOM JSON"):
        search_studies(pacs.url, StudyQuery(patient_id="P"))
    pacs.answer = Answer(status=204, content_type="application/dicom+json")
    assert search_studies(pacs.url, StudyQuery(patient_id="P")) == []


def test_query_parameters_are_sent_and_validated(pacs: ScriptedPacs) -> None:
    pacs.answer = Answer(content_type="application/dicom+json", body=b"[]")
    search_studies(pacs.url, StudyQuery(patient_id="P&1", study_date="20240101-", accession_number="A 1"))
    path, _ = pacs.requests[0]
    assert path.startswith("/dicom-web/studies?PatientID=P%261&StudyDate=20240101-&AccessionNumber=A+1&limit=100")
    for bad in ("2024-01-01", "yesterday", "-"):
        with pytest.raises(ValueError, match="study_date"):
            search_studies(pacs.url, StudyQuery(study_date=bad))
    with pytest.raises(ValueError, match="not a DICOM UID"):
        retrieve_study(pacs.url, "1.2/../../admin", Path("unused"), max_bytes=1, max_files=1)


def test_dicom_json_becomes_keyword_dicts() -> None:
    item = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00080061": {"vr": "CS", "Value": ["CT", "SEG"]},
        "00081030": {"vr": "LO"},
        "00091001": {"vr": "LO", "Value": ["private"]},
    }
    assert from_dicom_json(item) == {
        "StudyInstanceUID": "1.2.3",
        "PatientName": "Doe^Jane",
        "ModalitiesInStudy": ["CT", "SEG"],
        "StudyDescription": None,
        "00091001": "private",
    }


def test_retrieve_refuses_a_destination_that_already_holds_files(pacs: ScriptedPacs, tmp_path: Path) -> None:
    (tmp_path / "000000.dcm").write_bytes(b"someone else's")
    pacs.answer = Answer(body=multipart(DICOM_PART))
    with pytest.raises(ValueError, match="must be empty"):
        retrieve(pacs, tmp_path)
    assert (tmp_path / "000000.dcm").read_bytes() == b"someone else's"


def test_a_bearer_token_is_sent_as_authorization(pacs: ScriptedPacs) -> None:
    pacs.answer = Answer(content_type="application/dicom+json", body=b"[]")
    search_studies(pacs.url, StudyQuery(patient_id="P"), auth=BearerToken("t0ken"))
    assert pacs.requests[0][1]["Authorization"] == "Bearer t0ken"
