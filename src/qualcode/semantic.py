"""Classifiers over sentence embeddings (``embeddings``), and over embeddings and n-grams together.

``EmbeddingClassifier`` has the n-gram ``CodeClassifier``'s interface (fit, transform,
probabilities, explain_rows), so evaluation and coding can take either. Each code gets the same
calibrated logistic regression as the n-gram model (``classify.fit_model``), over the 384
numbers of a text's embedding instead of its n-grams. Its evidence is what a researcher can
check: the labelled passages or codebook examples of that code most like the segment, with
their similarity, instead of weights on dimensions that mean nothing to a reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qualcode.classify import CodeClassifier, TrainingExample, TrainingMatrix, fit_model
from qualcode.embeddings import DIMENSIONS, EmbeddingCache, embed_texts, load_encoder

REPRESENTATIONS = ("ngrams", "embeddings", "both")
# Examples whose text may be shown as evidence: the codebook's and a researcher's own. Labels
# learnt from third-party text ship as vectors only and are never quoted.
_QUOTABLE = frozenset({"example", "seed", "human"})
EVIDENCE_CHARS = 80


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EVIDENCE_CHARS else text[:EVIDENCE_CHARS - 1].rsplit(" ", 1)[0] + "…"


@dataclass(frozen=True)
class _Neighbours:
    """A code's quotable positive examples, for evidence: unit vectors and excerpts."""

    vectors: np.ndarray
    excerpts: tuple[str, ...]


class EmbeddingClassifier:
    """Multi-label classifier over sentence embeddings: ``fit(examples)``, then ``predict_proba(texts)``."""

    def __init__(self, code_ids: Sequence[str], *, cache: EmbeddingCache | None = None, progress=None):
        self.code_ids = tuple(code_ids)
        self.cache = cache
        self.progress = progress
        self.model = None
        self._neighbours: dict[str, _Neighbours] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(list(texts), encoder=load_encoder(), cache=self.cache, progress=self.progress)[0]

    def fit(self, examples: Sequence[TrainingExample], vectors: np.ndarray | None = None) -> EmbeddingClassifier:
        """Fit on ``examples``; ``vectors`` are their embeddings when known (e.g. shipped without their texts)."""
        examples = tuple(examples)
        vectors = self.embed([example.text for example in examples]) if vectors is None else vectors
        data = TrainingMatrix(examples, np.arange(DIMENSIONS, dtype=np.uint64), np.ones(DIMENSIONS),
                              np.array([f"dimension {index}" for index in range(DIMENSIONS)]), vectors.astype(np.float64))
        self.model = fit_model(self.code_ids, data)
        for code_id in self.code_ids:
            rows = [row for row, example in enumerate(examples)
                    if example.labels.get(code_id) == 1 and example.origin in _QUOTABLE and example.text.strip()]
            self._neighbours[code_id] = _Neighbours(vectors[rows].astype(np.float32),
                                                    tuple(_excerpt(examples[row].text) for row in rows))
        return self

    @property
    def trained_codes(self) -> tuple[str, ...]:
        return self.model.trained_codes

    @property
    def training_counts_(self) -> dict[str, tuple[int, int]]:
        return self.model.training_counts

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def probabilities(self, features) -> np.ndarray:
        return self.model.probabilities(features)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.probabilities(self.transform(texts))

    def explain_rows(self, features, pairs: Sequence[tuple[int, str]], top: int = 2) -> list[list[tuple[str, float]]]:
        """For each (row, code) pair, the most similar quotable examples of that code: (excerpt, similarity, description)."""
        explained = []
        for row, code_id in pairs:
            neighbours = self._neighbours.get(code_id)
            if neighbours is None or not len(neighbours.excerpts):
                explained.append([])
                continue
            similarity = neighbours.vectors @ np.asarray(features[row], dtype=np.float32)
            best = np.argsort(-similarity, kind="stable")[:top]
            explained.append([(neighbours.excerpts[index], float(similarity[index]),
                               f"classifier: like this coded example (similarity {similarity[index]:.2f})")
                              for index in best])
        return explained


class PairedFeatures:
    """The n-gram features and the embeddings of the same texts, row for row."""

    def __init__(self, ngrams, embeddings: np.ndarray):
        self.ngrams = ngrams
        self.embeddings = embeddings


class BlendedClassifier:
    """N-grams and embeddings together: each code's probability is the mean of the two calibrated models'.

    Evidence comes from both: the n-grams that pushed the text towards the code, then the most
    similar example.
    """

    def __init__(self, ngrams: CodeClassifier, embeddings: EmbeddingClassifier):
        self.ngrams = ngrams
        self.embeddings = embeddings
        self.code_ids = ngrams.code_ids

    def fit(self, examples: Sequence[TrainingExample]) -> BlendedClassifier:
        self.ngrams.fit(examples)
        self.embeddings.fit(examples)
        return self

    @property
    def trained_codes(self) -> tuple[str, ...]:
        return tuple(code for code in self.code_ids
                     if code in self.ngrams.trained_codes and code in self.embeddings.trained_codes)

    @property
    def training_counts_(self) -> dict[str, tuple[int, int]]:
        return self.ngrams.training_counts_

    def transform(self, texts: Sequence[str]) -> PairedFeatures:
        return PairedFeatures(self.ngrams.transform(texts), self.embeddings.transform(texts))

    def probabilities(self, features: PairedFeatures) -> np.ndarray:
        return (self.ngrams.probabilities(features.ngrams) + self.embeddings.probabilities(features.embeddings)) / 2

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.probabilities(self.transform(texts))

    def explain_rows(self, features: PairedFeatures, pairs: Sequence[tuple[int, str]], top: int = 4):
        words = self.ngrams.explain_rows(features.ngrams, pairs, top=top - 1)
        similar = self.embeddings.explain_rows(features.embeddings, pairs, top=1)
        return [first + second for first, second in zip(words, similar)]


def default_embedding_cache() -> EmbeddingCache:
    """The embedding cache beside the model cache ($QUALCODE_CACHE_DIR, else ~/.cache/qualcode)."""
    from qualcode.model_cache import default_cache_dir

    return EmbeddingCache(default_cache_dir() / "embeddings.sqlite", load_encoder().model_sha256)


def new_classifier(representation: str, code_ids: Sequence[str], nlp, *, cache: EmbeddingCache | None = None):
    """An unfitted classifier over ``representation`` (one of ``REPRESENTATIONS``)."""
    if representation == "ngrams":
        return CodeClassifier(code_ids, nlp)
    if representation == "embeddings":
        return EmbeddingClassifier(code_ids, cache=cache)
    if representation == "both":
        return BlendedClassifier(CodeClassifier(code_ids, nlp), EmbeddingClassifier(code_ids, cache=cache))
    raise ValueError(f"unknown representation {representation!r}; choose one of {', '.join(REPRESENTATIONS)}")
