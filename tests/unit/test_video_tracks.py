"""The track adapters between a publisher and its viewers' senders, without a network."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.rooms.video.tracks import PublishedTrack, SlotTrack


class Frames(MediaStreamTrack):
    """A source the test feeds by hand; ends when fed None."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    async def recv(self):  # type: ignore[no-untyped-def]
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        return frame


def video_frame(pts: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
    frame.pts, frame.time_base = pts, fractions.Fraction(1, 90_000)
    return frame


def audio_frame(pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 960 * 2), dtype=np.int16), format="s16", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = 48_000, pts, fractions.Fraction(1, 48_000)
    return frame


async def test_a_muted_publisher_forwards_nothing_and_video_is_restamped_on_one_clock() -> None:
    source = Frames("video")
    published = PublishedTrack(source)
    source.queue.put_nowait(video_frame(5_000_000))
    first = await asyncio.wait_for(published.recv(), 2)
    published.set_enabled(False)
    source.queue.put_nowait(video_frame(5_003_000))
    await asyncio.sleep(0.05)
    assert published.frames_in == 2 and published.frames_out == 1  # drained, not forwarded
    published.set_enabled(True)
    source.queue.put_nowait(video_frame(0))  # another publisher's clock, far behind
    second = await asyncio.wait_for(published.recv(), 2)
    assert second.pts > first.pts  # restamped: the encoder after a swap never sees time go back
    source.queue.put_nowait(None)
    await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(published.recv(), 2)
        raise AssertionError("an ended source ends the published track")
    except MediaStreamError:
        pass


async def test_a_slot_swaps_sources_without_ending_and_keeps_audio_contiguous() -> None:
    slot = SlotTrack("audio")
    first, second = Frames("audio"), Frames("audio")
    slot.set_source(first)
    first.queue.put_nowait(audio_frame(48_000 * 7))
    a = await asyncio.wait_for(slot.recv(), 2)
    reading = asyncio.create_task(slot.recv())  # the sender waits on the old source...
    await asyncio.sleep(0.01)
    slot.set_source(second)  # ...which is swapped away under it
    second.queue.put_nowait(audio_frame(123))
    b = await asyncio.wait_for(reading, 2)
    assert (a.pts, b.pts) == (0, 960)  # one contiguous stream for the encoder
    second.queue.put_nowait(None)  # the publisher left: the slot idles instead of ending
    idle = asyncio.create_task(slot.recv())
    await asyncio.sleep(0.05)
    assert not idle.done() and slot.source is None
    third = Frames("audio")
    slot.set_source(third)
    third.queue.put_nowait(audio_frame(0))
    assert (await asyncio.wait_for(idle, 2)).pts == 1920
    slot.stop()
    assert first.readyState == second.readyState == third.readyState == "ended"
