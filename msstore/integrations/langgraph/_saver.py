"""``MsstoreSaver``: LangGraph's ``BaseCheckpointSaver`` on :class:`msstore.graphs`.

It only translates: LangGraph's configs, checkpoints and writes to msstore's records and back,
serialized with the saver's ``serde`` (LangGraph's own serializer by default). The rules (values
stored once per version, writes once each and in LangGraph's order, deleted threads kept
deleted) are :class:`~msstore.graphs.GraphCheckpoints`'. The async methods run the sync ones on
a worker thread, so they never block the event loop; the sync ones work from any thread,
including one that runs an event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, Unpack, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.base import SerializerProtocol

from msstore.graphs import (
    Blob,
    CheckpointOptions,
    CheckpointStore,
    GraphCheckpoints,
    StoredCheckpoint,
    StoredTuple,
    StoredWrite,
)

__all__ = ["MsstoreSaver"]


INLINE_STR = 256
"""Strings up to this long are kept in the checkpoint's row, like numbers, booleans and None;
other values are stored once per version, beside it."""


def _inline(value: object) -> bool:
    return (
        value is None
        or isinstance(value, (bool, int, float))
        or (isinstance(value, str) and len(value) <= INLINE_STR)
    )


T = TypeVar("T")
_HOP = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="msstore-saver")


def _off_loop(fn: Callable[[], T]) -> T:
    """``fn()``, on a worker thread when this thread runs an event loop: a sync call made
    inside ``async`` code (as LangGraph makes some) blocks its caller, as a sync call does, but
    works, whatever the store's client needs of the calling thread."""
    if asyncio.events._get_running_loop() is None:
        return fn()
    return _HOP.submit(fn).result()


def _ids(config: RunnableConfig) -> tuple[str, str]:
    configurable = config.get("configurable") or {}
    return configurable["thread_id"], configurable.get("checkpoint_ns", "")


class MsstoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on an msstore :class:`~msstore.graphs.CheckpointStore`.

    ``serde``: LangGraph's serializer for checkpoints and values (its default
    ``JsonPlusSerializer`` when None). The other options, and their defaults, are
    :class:`~msstore.graphs.GraphCheckpoints`': ``retention`` (:class:`~msstore.graphs.Retention`:
    the newest N checkpoints per thread, applied as the graph writes; a time-to-live, applied
    by :meth:`sweep`), ``remember`` (how many channels' newest values are kept in memory, to
    store the next version of each as a delta on it), ``log`` (a KV bucket, ``NatsKV``, each
    put and each task's writes go to first, applied to ``store`` within ``max_lag`` seconds;
    :meth:`close` applies what is left), ``clock``.
    """

    def __init__(
        self,
        store: CheckpointStore,
        *,
        serde: SerializerProtocol | None = None,
        **options: Unpack[CheckpointOptions],
    ) -> None:
        super().__init__(serde=serde)
        self.checkpoints = GraphCheckpoints(store, **options)

    # Reading -----------------------------------------------------------------------------

    def _tuple(self, found: StoredTuple) -> CheckpointTuple:
        cp = found.checkpoint
        body: Checkpoint = self.serde.loads_typed((cp.body_type, cp.body))
        values = dict(body.get("channel_values") or {})  # (the primitives, kept inline)
        values.update(
            (b.channel, self.serde.loads_typed((b.type, b.data)))
            for b in found.blobs
            if b.type != "empty"
        )
        configurable = {
            "thread_id": cp.thread_id,
            "checkpoint_ns": cp.ns,
            "checkpoint_id": cp.checkpoint_id,
        }
        parent = (
            None
            if cp.parent_id is None
            else {"configurable": {**configurable, "checkpoint_id": cp.parent_id}}
        )
        return CheckpointTuple(
            config={"configurable": configurable},
            checkpoint={
                **body,
                "channel_values": values,
                "channel_versions": dict(cp.versions),
            },
            metadata=cast(CheckpointMetadata, dict(cp.metadata)),
            parent_config=parent,  # type: ignore[arg-type]
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed((w.type, w.data)))
                for w in found.writes
            ],
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (the thread's newest when it names none), with its
        channel values and pending writes."""
        thread_id, ns = _ids(config)
        found = _off_loop(lambda: self.checkpoints.get(thread_id, ns, get_checkpoint_id(config)))
        return None if found is None else self._tuple(found)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first: of ``config``'s thread (all threads when None) and
        namespace, matching the metadata ``filter``, older than ``before``, at most
        ``limit``."""
        configurable = (config or {}).get("configurable") or {}
        found: Iterable[StoredTuple] = self.checkpoints.list(
            configurable.get("thread_id"),
            configurable.get("checkpoint_ns"),
            checkpoint_id=configurable.get("checkpoint_id"),
            before=None if before is None else get_checkpoint_id(before),
            metadata=filter,
            limit=limit,
        )
        if asyncio.events._get_running_loop() is not None:
            pages = found
            found = _off_loop(lambda: list(pages))  # (inside a loop: read off it, at once)
        for item in found:
            yield self._tuple(item)

    # Writing -----------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the values of the channels ``new_versions`` names (the
        others are stored already; numbers, booleans, None and short strings go in the
        checkpoint's own row); a checkpoint of a thread deleted since is dropped."""
        thread_id, ns = _ids(config)
        body: dict[str, Any] = dict(checkpoint)
        versions = body.pop("channel_versions")  # (stored beside it, as the blobs' index)
        values: dict[str, Any] = body.pop("channel_values", None) or {}
        inline = {k: v for k, v in values.items() if _inline(v)}
        body["channel_values"] = inline
        blobs = [
            Blob(thread_id, ns, channel, str(version), *self.serde.dumps_typed(values[channel]))
            for channel, version in new_versions.items()
            if channel in values and channel not in inline
        ]
        body_type, body_bytes = self.serde.dumps_typed(body)
        stored = StoredCheckpoint(
            thread_id=thread_id,
            ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_id=get_checkpoint_id(config),
            body_type=body_type,
            body=body_bytes,
            metadata=dict(get_serializable_checkpoint_metadata(config, metadata)),
            versions=dict(versions),
        )
        _off_loop(lambda: self.checkpoints.put(stored, blobs))
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes after the checkpoint ``config`` names, once each."""
        thread_id, ns = _ids(config)
        stored = [
            StoredWrite(
                task_id,
                WRITES_IDX_MAP.get(channel, idx),
                channel,
                *self.serde.dumps_typed(value),
                task_path,
            )
            for idx, (channel, value) in enumerate(writes)
        ]
        checkpoint_id = config["configurable"]["checkpoint_id"]
        _off_loop(lambda: self.checkpoints.put_writes(thread_id, ns, checkpoint_id, stored))

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints and writes; a checkpoint or write a run sends for it
        later is dropped, unless the run started after this delete."""
        fence = str(uuid6())
        _off_loop(lambda: self.checkpoints.delete_thread(thread_id, fence))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) the given runs wrote."""
        _off_loop(lambda: self.checkpoints.delete_runs(list(run_ids)))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread's whole history (every checkpoint, value and write) to another."""
        _off_loop(lambda: self.checkpoints.copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's newest checkpoint (with its values and
        writes, and the ancestors a ``DeltaChannel`` rebuilds it from); ``"delete"``: remove
        all."""
        _off_loop(lambda: self.checkpoints.prune(list(thread_ids), strategy=strategy))

    def flush(self) -> None:
        """Apply what this saver logged to the store now."""
        _off_loop(self.checkpoints.flush)

    def close(self) -> None:
        """Apply what this saver logged and stop its log's flusher (the store and the
        bucket stay open: they are the caller's)."""
        _off_loop(self.checkpoints.close)

    def __enter__(self) -> MsstoreSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sweep(self) -> Sequence[str]:
        """Delete the threads untouched for the retention's ``ttl``; the threads deleted."""
        return _off_loop(self.checkpoints.sweep)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A channel's next version: a counter (10 digits, zero-padded, so versions sort as
        text) and a random tail that keeps two forks of a thread from sharing a version."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(current.split(".")[0])
        return f"{number + 1:010}.{random.getrandbits(24):06x}"  # (a tie-breaker, not a secret)

    # Async twins: the sync method on a worker thread -----------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """:meth:`get_tuple` off the event loop."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """:meth:`list` off the event loop."""
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """:meth:`put` off the event loop."""
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """:meth:`put_writes` off the event loop."""
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """:meth:`delete_thread` off the event loop."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """:meth:`delete_for_runs` off the event loop."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """:meth:`copy_thread` off the event loop."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def asweep(self) -> Sequence[str]:
        """:meth:`sweep` off the event loop."""
        return await asyncio.to_thread(self.sweep)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """:meth:`prune` off the event loop."""
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
