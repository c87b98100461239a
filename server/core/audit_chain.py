"""The audit trail's hash chain. PURE: how a row is hashed and how a sequence of rows is checked.

Every audit row stores `seq` (1, 2, 3, … with no gap), the hash of the row before it (`prev_hash`) and
its own hash over its content and `prev_hash` (`row_hash`). Changing a row changes its hash; deleting one
leaves a gap in `seq` and a `prev_hash` that points at nothing; deleting the newest rows leaves the chain
head (seq and hash of the last row, kept in its own table) pointing past the end. Anyone can recompute
the chain from an export: the hash is plain SHA-256 over canonical JSON, no secret involved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

GENESIS = "0" * 64  # prev_hash of the first row
HASHED_FIELDS = (
    "seq",
    "ts_ms",
    "actor_id",
    "actor_site_id",
    "action",
    "target_type",
    "target_id",
    "room_id",
    "case_id",
    "subject_site_id",
    "ip",
    "details",
)
MAX_PROBLEMS = 100


def row_digest(content: dict[str, Any], prev_hash: str) -> str:
    """sha256 over the previous hash and the row's fields as canonical JSON (sorted keys, no spaces)."""
    body = orjson.dumps({k: content.get(k) for k in HASHED_FIELDS}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


@dataclass(frozen=True)
class ChainRow:
    id: int
    seq: int | None
    prev_hash: str
    row_hash: str
    content: dict[str, Any]


@dataclass
class ChainReport:
    ok: bool = True
    rows_checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, kind: str, message: str, **where: Any) -> None:
        self.ok = False
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"problem": kind, "message": message, **where})


def verify(rows: Iterable[ChainRow], head_seq: int, head_hash: str) -> ChainReport:
    """Walk the rows in `seq` order and report every modified, missing or out-of-chain row."""
    report = ChainReport(head_seq=head_seq, head_hash=head_hash)
    expected_seq, prev = 1, GENESIS
    for row in rows:
        report.rows_checked += 1
        if row.seq is None:
            report.problem("unchained", "row has no place in the chain (written around the audit API)", id=row.id)
            continue
        if row.seq != expected_seq:
            report.problem(
                "missing",
                f"rows {expected_seq}..{row.seq - 1} are missing (deleted)",
                seq=row.seq,
                id=row.id,
            )
        elif row.prev_hash != prev:
            report.problem("broken_link", "prev_hash does not match the row before", seq=row.seq, id=row.id)
        if row_digest(row.content, row.prev_hash) != row.row_hash:
            report.problem("modified", "row content does not match its hash (modified)", seq=row.seq, id=row.id)
        expected_seq, prev = row.seq + 1, row.row_hash
    if expected_seq - 1 != head_seq or prev != head_hash:
        report.problem(
            "truncated",
            f"the chain head is at seq {head_seq} but the last row is {expected_seq - 1} (rows deleted at the end)",
            seq=head_seq,
        )
    return report
