"""Copy the messages of many boards' segments into one MCAP file under board-prefixed topics.

Owns the MCAP side of ``camctl export --foxglove`` (the ground's
:mod:`camctl.ground.export.foxglove` writes the layout): every message keeps its schema,
``log_time`` (wall clock, so boards line up) and ``publish_time`` (the board's sensor time); a torn
or damaged segment is named in ``unreadable`` and the rest still goes in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MergeResult", "merge_segments"]


@dataclass
class MergeResult:
    """Topics written (in first-seen order), messages copied, and segments that could not be
    read."""

    topics: list[str] = field(default_factory=list)
    messages: int = 0
    unreadable: list[str] = field(default_factory=list)


# (prefix, segment, topic, message) -> (log_time, publish_time, data) the message is written with
Retime = Callable[[str, Path, str, Any], tuple[int, int, bytes]]


def merge_segments(sources: Iterable[tuple[str, list[Path]]], out: Path, *,
                   library: str = "camctl", retime: Retime | None = None) -> MergeResult:
    """Write every message of every ``(prefix, segments)`` source into ``out`` as
    ``/<prefix><topic>``; ``retime`` (the export's: a flight recorded across a reboot) may give a
    message other times and data, every other message is copied as it is."""
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    res = MergeResult()
    schemas: dict[tuple[str, str, bytes], int] = {}
    channels: dict[str, int] = {}
    with out.open("wb") as f:
        # JPEGs do not compress; readers need no codec
        writer = Writer(f, compression=CompressionType.NONE)
        writer.start(profile="", library=library)
        for prefix, segments in sources:
            for seg in segments:
                try:
                    with seg.open("rb") as src:
                        messages = make_reader(src).iter_messages(log_time_order=False)
                        for schema, channel, msg in messages:
                            topic = f"/{prefix}{channel.topic}"
                            if topic not in channels:
                                key = ((schema.name, schema.encoding, schema.data) if schema
                                       else ("", "", b""))
                                if key not in schemas:
                                    schemas[key] = writer.register_schema(*key) if schema else 0
                                channels[topic] = writer.register_channel(
                                    topic, channel.message_encoding, schemas[key])
                                res.topics.append(topic)
                            log_time, publish_time, data = (
                                (msg.log_time, msg.publish_time, msg.data) if retime is None
                                else retime(prefix, seg, channel.topic, msg))
                            writer.add_message(channels[topic], log_time, data, publish_time,
                                               msg.sequence)
                            res.messages += 1
                except Exception as exc:  # a torn or damaged segment: the rest still goes in
                    res.unreadable.append(f"{seg}: {type(exc).__name__}: {exc}")
        writer.finish()
    return res
