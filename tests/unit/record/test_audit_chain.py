"""The audit hash chain (pure): an intact chain verifies; a modified row, a deleted row, a deleted tail
and a row written around the chain are each named."""

from __future__ import annotations

from server.core.audit_chain import GENESIS, ChainRow, row_digest, verify


def chain(n: int) -> list[ChainRow]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        content = {
            "seq": seq,
            "ts_ms": 1000 + seq,
            "actor_id": f"u{seq % 3}",
            "action": "case.open",
            "target_type": "case",
            "target_id": "c1",
            "details": {"b": [1.5, 2], "a": "x"},
        }
        digest = row_digest(content, prev)
        rows.append(ChainRow(seq, seq, prev, digest, content))
        prev = digest
    return rows


def test_an_intact_chain_verifies_and_key_order_does_not_matter() -> None:
    rows = chain(5)
    assert verify(rows, 5, rows[-1].row_hash).ok
    reordered = {k: rows[0].content[k] for k in reversed(list(rows[0].content))}
    assert row_digest(reordered, GENESIS) == rows[0].row_hash


def test_a_modified_row_is_named() -> None:
    rows = chain(5)
    tampered = rows[2].content | {"details": {"b": [1.5, 2], "a": "y"}}
    rows[2] = ChainRow(3, 3, rows[2].prev_hash, rows[2].row_hash, tampered)
    report = verify(rows, 5, rows[-1].row_hash)
    assert [(p["problem"], p["seq"]) for p in report.problems] == [("modified", 3)]


def test_a_modified_row_with_a_recomputed_hash_breaks_the_next_link() -> None:
    rows = chain(4)
    tampered = rows[1].content | {"actor_id": "mallory"}
    rows[1] = ChainRow(2, 2, rows[1].prev_hash, row_digest(tampered, rows[1].prev_hash), tampered)
    report = verify(rows, 4, rows[-1].row_hash)
    assert [(p["problem"], p["seq"]) for p in report.problems] == [("broken_link", 3)]


def test_deleted_rows_and_a_deleted_tail_are_detected() -> None:
    rows = chain(6)
    head = rows[-1].row_hash
    gap = verify(rows[:2] + rows[3:], 6, head)
    assert [(p["problem"], p["seq"]) for p in gap.problems] == [("missing", 4)]
    tail = verify(rows[:-1], 6, head)
    assert [p["problem"] for p in tail.problems] == ["truncated"]


def test_a_row_written_around_the_chain_is_named() -> None:
    rows = chain(2)
    foreign = ChainRow(99, None, "", "", {"action": "case.open"})
    report = verify([foreign, *rows], 2, rows[-1].row_hash)
    assert [(p["problem"], p["id"]) for p in report.problems] == [("unchained", 99)]
