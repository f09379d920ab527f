"""Reading what a JetStream stream holds, with raw nats-py (the tests' own eyes, not msstore's)."""

from __future__ import annotations

import asyncio

import attrs
import nats
from nats.js import api


@attrs.frozen
class Seen:
    seq: int
    subject: str
    msg_id: str
    outbox_id: int
    data: bytes


def stream_events(url: str, stream: str) -> list[Seen]:
    """Every message ``stream`` holds, in stream order."""

    async def read() -> list[Seen]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=10)
            info = await js.stream_info(stream)
            total = info.state.messages
            if total == 0:
                return []
            sub = await js.pull_subscribe(
                "",
                stream=stream,
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.NONE,
                    deliver_policy=api.DeliverPolicy.ALL,
                    inactive_threshold=30,
                ),
            )
            seen: list[Seen] = []
            while len(seen) < total:
                for msg in await sub.fetch(min(1000, total - len(seen)), timeout=10):
                    headers = msg.headers or {}
                    seen.append(
                        Seen(
                            seq=msg.metadata.sequence.stream,
                            subject=msg.subject,
                            msg_id=headers.get("Nats-Msg-Id", ""),
                            outbox_id=int(headers.get("Msstore-Outbox-Id", "0")),
                            data=msg.data,
                        )
                    )
            await sub.unsubscribe()
            return seen
        finally:
            await nc.close()

    return asyncio.run(read())


def purge(url: str, *streams: str) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=10)
            for stream in streams:
                await js.purge_stream(stream)
        finally:
            await nc.close()

    asyncio.run(run())


def keep_everything(url: str, stream: str, durable: str = "audit") -> None:
    """A durable consumer with interest in every subject of ``stream``, so an interest-retention
    stream (TASK_EXECUTION) keeps each message until it is read, as a stream with its consumers
    in place does."""

    async def run() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream(timeout=10).add_consumer(
                stream,
                api.ConsumerConfig(durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT),
            )
        finally:
            await nc.close()

    asyncio.run(run())
