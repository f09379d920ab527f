"""``MsstoreStore``: LangGraph's ``BaseStore`` (long-term memory) on msstore's knowledge base.

It only translates LangGraph's operations to :class:`msstore.knowledge.Items`, whose rules
(item keys, ttl and its refresh, filters, ranking, namespace listing) are written there. What
it adds is LangGraph's own: the texts an ``IndexConfig`` picks out of a value (its ``fields``
paths, joined into the one text the item is embedded and searched by), ttl in minutes, and the
``Item`` / ``SearchItem`` results with their datetimes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    NOT_PROVIDED,
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)
from langgraph.store.base.embed import ensure_embeddings, get_text_at_path, tokenize_path

from msstore.errors import InvalidArgument
from msstore.knowledge import FactStore, HashingEmbedder, ItemPut, Items, KnowledgeBase
from msstore.knowledge import Item as StoredItem
from msstore.protocols import Embedder

__all__ = ["LangChainEmbedder", "MsstoreStore"]

log = logging.getLogger("msstore.integrations.langgraph")


class LangChainEmbedder(Embedder):
    """An msstore :class:`~msstore.protocols.Embedder` over LangChain ``Embeddings`` (or
    anything LangGraph's ``IndexConfig["embed"]`` accepts: a function, an async function)."""

    def __init__(self, embed: Any, *, dims: int, model: str | None = None) -> None:
        if type(dims) is not int or dims < 1:
            raise InvalidArgument(f"dims must be an int >= 1, got {dims!r}")
        self._embeddings: Embeddings = ensure_embeddings(embed)
        self._dims = dims
        self._model = model or f"langchain:{type(self._embeddings).__name__}"

    def __repr__(self) -> str:
        return f"LangChainEmbedder({self._model!r}, dims={self._dims})"

    @property
    def dim(self) -> int:
        """The vectors' dimension (``IndexConfig["dims"]``)."""
        return self._dims

    @property
    def model(self) -> str:
        """The model's name, stored with each vector."""
        return self._model

    @property
    def version(self) -> str:
        """``"1"``: LangChain embeddings carry no version."""
        return "1"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """``embed_documents`` of the texts."""
        return [list(map(float, v)) for v in self._embeddings.embed_documents(list(texts))]


def _when(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


class MsstoreStore(BaseStore):
    """A LangGraph ``BaseStore`` on a :class:`~msstore.knowledge.FactStore`
    (``MemoryFactStore`` for a graph's tests, ``PostgresFactStore`` for work).

    ``index``: LangGraph's ``IndexConfig`` (``dims``, ``embed``, ``fields``): items are
    embedded by the texts at ``fields`` (the whole value by default) and searched by meaning.
    ``embedder``: an msstore embedder instead of ``index["embed"]`` (``fields`` still apply).
    Without either, items are stored unindexed and a search's query is ignored, as in
    LangGraph's own stores. ``ttl``: LangGraph's ``TTLConfig`` (``default_ttl`` minutes,
    ``refresh_on_read``, ``sweep_interval_minutes`` for :meth:`start_ttl_sweeper`); expired
    items are never returned, swept or not. ``search_mode``: ``"vector"`` (``score`` is the
    cosine similarity), ``"hybrid"`` (vector and full-text ranks fused) or ``"text"``.
    """

    supports_ttl = True

    def __init__(
        self,
        facts: FactStore,
        *,
        index: IndexConfig | None = None,
        embedder: Embedder | None = None,
        ttl: TTLConfig | None = None,
        search_mode: str = "vector",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if index is not None and embedder is not None and index.get("embed") is not None:
            raise InvalidArgument("pass index['embed'] or embedder, not both")
        chosen = embedder
        if chosen is None and index is not None and index.get("embed") is not None:
            chosen = LangChainEmbedder(index["embed"], dims=index["dims"])
        self.index_config = index
        self.ttl_config = ttl
        self._indexed = chosen is not None
        self._fields = [
            (p, tokenize_path(p) if p != "$" else p) for p in (index or {}).get("fields") or ["$"]
        ]
        kb = KnowledgeBase(facts, chosen or HashingEmbedder(dim=facts.dim), clock=clock)
        self.items = Items(
            kb,
            refresh_on_read=bool((ttl or {}).get("refresh_on_read", True)),
            search_mode=search_mode,
            clock=clock,
        )
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"MsstoreStore({self.items!r})"

    # batch ---------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run LangGraph's operations in order (consecutive puts in one transaction)."""
        results: list[Result] = []
        puts: list[ItemPut] = []
        for op in ops:
            validate_op_namespace(op)
            if isinstance(op, PutOp):
                puts.append(self._put(op))
                results.append(None)
                continue
            if puts:
                self.items.put_many(puts)
                puts = []
            results.append(self._read(op))
        if puts:
            self.items.put_many(puts)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch` off the event loop."""
        return await asyncio.to_thread(self.batch, list(ops))

    def _put(self, op: PutOp) -> ItemPut:
        if op.value is None:
            return ItemPut(op.namespace, op.key, None)
        minutes: object = op.ttl  # (a PutOp made by hand may still carry NOT_PROVIDED)
        if minutes is None or minutes is NOT_PROVIDED:
            return ItemPut(op.namespace, op.key, op.value, self._text(op))
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
            raise InvalidArgument(f"ttl must be a number of minutes > 0 or None, got {minutes!r}")
        return ItemPut(op.namespace, op.key, op.value, self._text(op), float(minutes) * 60)

    def _text(self, op: PutOp) -> str | None:
        """The text an item is embedded by: the strings at the index's fields (or the put's
        own), joined by newlines; None when it is not indexed."""
        if not self._indexed or op.index is False:
            return None
        fields = self._fields if op.index is None else [(p, tokenize_path(p)) for p in op.index]
        texts: list[str] = []
        for path, tokens in fields:
            if path == "$":
                texts.append(orjson.dumps(op.value, option=orjson.OPT_SORT_KEYS).decode())
            else:
                texts.extend(get_text_at_path(op.value, tokens))
        text = "\n".join(t for t in texts if t.strip())
        return text or None

    def _read(self, op: Op) -> Result:
        if isinstance(op, GetOp):
            found = self.items.get(op.namespace, op.key, refresh=op.refresh_ttl)
            return None if found is None else _item(found)
        if isinstance(op, SearchOp):
            found_items = self.items.search(
                op.namespace_prefix,
                query=op.query if self._indexed and op.query else None,
                filter=op.filter,
                limit=op.limit,
                offset=op.offset,
                refresh=op.refresh_ttl,
            )
            return [_search_item(i) for i in found_items]
        if isinstance(op, ListNamespacesOp):
            prefix: tuple[str, ...] = ()
            suffix: tuple[str, ...] = ()
            for condition in op.match_conditions or ():
                if condition.match_type == "prefix" and not prefix:
                    prefix = tuple(condition.path)
                elif condition.match_type == "suffix" and not suffix:
                    suffix = tuple(condition.path)
                else:
                    raise InvalidArgument(
                        "list_namespaces takes at most one prefix and one suffix condition"
                    )
            return self.items.list_namespaces(
                prefix=prefix,
                suffix=suffix,
                max_depth=op.max_depth,
                limit=op.limit,
                offset=op.offset,
            )
        raise InvalidArgument(f"unknown store operation {type(op).__name__}")

    # expiry --------------------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Delete the expired items now; how many went."""
        return self.items.sweep()

    def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> concurrent.futures.Future[None]:
        """Sweep every ``sweep_interval_minutes`` (``TTLConfig``'s, else 5) on a daemon thread
        until :meth:`stop_ttl_sweeper`; the future is done when it stops."""
        interval = float(
            sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes") or 5
        )
        if interval <= 0:
            raise InvalidArgument(f"sweep_interval_minutes must be > 0, got {interval!r}")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._sweeper is not None and self._sweeper.is_alive():
            done.set_result(None)
            return done
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval * 60):
                try:
                    gone = self.sweep_ttl()
                except Exception:
                    log.exception("store ttl sweep failed")
                else:
                    if gone:
                        log.info("store ttl sweep deleted %d items", gone)
            done.set_result(None)

        self._sweeper = threading.Thread(target=loop, name="msstore-store-sweeper", daemon=True)
        self._sweeper.start()
        return done

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; ``True`` when it stopped within ``timeout`` seconds."""
        self._stop.set()
        if self._sweeper is None:
            return True
        self._sweeper.join(timeout)
        return not self._sweeper.is_alive()

    def close(self) -> None:
        """Stop the sweeper and close the fact store."""
        self.stop_ttl_sweeper()
        self.items.kb.close()

    def __enter__(self) -> MsstoreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _item(found: StoredItem) -> Item:
    return Item(
        value=dict(found.value),
        key=found.key,
        namespace=found.namespace,
        created_at=_when(found.created_at),
        updated_at=_when(found.updated_at),
    )


def _search_item(found: StoredItem) -> SearchItem:
    return SearchItem(
        found.namespace,
        found.key,
        dict(found.value),
        _when(found.created_at),
        _when(found.updated_at),
        found.score,
    )
