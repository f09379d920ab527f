"""The knowledge base: facts with embeddings, vector/text/hybrid search, embedders, rank fusion;
items (namespaced JSON documents with time-to-live) on top of it."""

from __future__ import annotations

from ._base import MODES, KnowledgeBase, KnowledgeStorage
from ._embedding import HashingEmbedder, SentenceTransformerEmbedder, check_texts
from ._facts import (
    Fact,
    FactBatch,
    FactFilter,
    FactHit,
    FactStore,
    FactStoreBase,
    StaleVectors,
    check_fact,
    content_hash,
    epoch,
    next_version,
    object_type,
    vectors_gone,
)
from ._fusion import RRF_K, reciprocal_rank_fusion
from ._items import Item, ItemPut, Items, check_filter, item_key, matches_filter, parse_item_key

__all__ = [
    "MODES",
    "RRF_K",
    "Fact",
    "FactBatch",
    "FactFilter",
    "FactHit",
    "FactStore",
    "FactStoreBase",
    "HashingEmbedder",
    "Item",
    "ItemPut",
    "Items",
    "KnowledgeBase",
    "KnowledgeStorage",
    "SentenceTransformerEmbedder",
    "StaleVectors",
    "check_fact",
    "check_filter",
    "check_texts",
    "content_hash",
    "epoch",
    "item_key",
    "matches_filter",
    "next_version",
    "object_type",
    "parse_item_key",
    "reciprocal_rank_fusion",
    "vectors_gone",
]
