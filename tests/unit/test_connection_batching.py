"""A client that asked for `batch` gets the frames queued for it in one message, newline-separated, in
order and within the size limit; every other client gets one frame per message."""

from __future__ import annotations

import asyncio

import orjson

from server.rooms.connection import Connection


def frame(seq: int, pad: int = 0) -> str:
    return orjson.dumps({"type": "event", "seq": seq, "pad": "x" * pad}).decode()


async def sent_messages(batch_max_bytes: int, ordered: list[str], latest: dict[str, str] | None = None) -> list[str]:
    """Queue everything before the sender runs (a client that fell behind), then let it drain."""
    messages: list[str] = []

    async def send_text(text: str) -> None:
        messages.append(text)

    async def close(code: int, reason: str) -> None:
        return None

    conn = Connection(
        send_text,
        close,
        user_id="u",
        display_name="U",
        site_id="s",
        role="participant",
        queue_max=1000,
        batch_max_bytes=batch_max_bytes,
    )
    for text in ordered:
        conn.push(text)
    for key, text in (latest or {}).items():
        conn.push_latest(key, text)
    sender = asyncio.create_task(conn.run_sender())
    for _ in range(100):
        await asyncio.sleep(0)
    conn.drop(1000, "done")
    await asyncio.wait_for(sender, 1)
    return messages


def frames_of(messages: list[str]) -> list[dict]:
    return [orjson.loads(line) for message in messages for line in message.split("\n")]


async def test_queued_frames_go_out_in_one_message_in_order() -> None:
    ordered = [frame(seq) for seq in range(1, 21)]
    messages = await sent_messages(64 * 1024, ordered)
    assert len(messages) == 1 and messages[0] == "\n".join(ordered)
    assert [f["seq"] for f in frames_of(messages)] == list(range(1, 21))


async def test_a_batch_stays_within_the_limit_and_a_larger_frame_goes_alone() -> None:
    ordered = [frame(seq, pad=300) for seq in range(1, 11)]
    ordered.insert(5, frame(99, pad=5000))  # larger than the limit by itself
    messages = await sent_messages(1000, ordered)
    assert [f["seq"] for f in frames_of(messages)] == [1, 2, 3, 4, 5, 99, 6, 7, 8, 9, 10]
    assert all(len(m) <= 1000 for m in messages if "\n" in m)
    assert any(len(m) > 1000 and "\n" not in m for m in messages)
    assert len(messages) < 11 and max(m.count("\n") for m in messages) >= 1


async def test_latest_slots_follow_the_ordered_frames_batched_too() -> None:
    latest = {"pointer:a": orjson.dumps({"type": "pointer", "user": "a"}).decode()}
    latest["pointer:b"] = orjson.dumps({"type": "pointer", "user": "b"}).decode()
    messages = await sent_messages(64 * 1024, [frame(1), frame(2)], latest)
    assert [(f["type"], f.get("seq") or f.get("user")) for f in frames_of(messages)] == [
        ("event", 1),
        ("event", 2),
        ("pointer", "a"),
        ("pointer", "b"),
    ]
    assert len(messages) == 2


async def test_without_batch_every_message_is_one_frame() -> None:
    ordered = [frame(seq) for seq in range(1, 6)]
    latest = {"camera": orjson.dumps({"type": "camera"}).decode(), "p": orjson.dumps({"type": "pointer"}).decode()}
    messages = await sent_messages(0, ordered, latest)
    assert messages[:5] == ordered and len(messages) == 7 and all("\n" not in m for m in messages)
