"""The knowledge base: facts with embeddings, vector/text/hybrid search, embedders, rank fusion."""

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
    "KnowledgeBase",
    "KnowledgeStorage",
    "SentenceTransformerEmbedder",
    "StaleVectors",
    "check_fact",
    "check_texts",
    "content_hash",
    "epoch",
    "next_version",
    "object_type",
    "reciprocal_rank_fusion",
    "vectors_gone",
]
