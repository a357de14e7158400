"""Word and word-pair features read off spaCy docs, shared by training and prediction.

The classifier sees the tokens the rules match on: a text becomes the hashes of its words' NORM
(lower case, with contractions and curly quotes normalised by spaCy) and of each pair of
neighbouring words, punctuation and spaces left out. Hashes need no vocabulary, so a worker can
compute them for its chunk while the model is still being trained or loaded, and send them back
as two compact arrays; the model then maps them onto its own columns (``tfidf_matrix``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Part of the model cache key: change it whenever the features a text yields change.
FEATURE_VERSION = "norm-1-2gram-v1"
_PAIR_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class NgramHashes:
    """The n-gram hashes of a batch of texts: text ``i`` owns ``hashes[offsets[i]:offsets[i + 1]]``."""

    hashes: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


def _words(doc) -> np.ndarray:
    from spacy.attrs import IS_PUNCT, IS_SPACE, NORM

    if not len(doc):
        return np.empty(0, dtype=np.uint64)
    table = doc.to_array([NORM, IS_PUNCT, IS_SPACE])
    return table[(table[:, 1] == 0) & (table[:, 2] == 0), 0]


def _pairs_of(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    # Multiplying the first word makes "a b" and "b a" different features; uint64 arithmetic wraps.
    return (first * _PAIR_MIX) ^ second


def _pairs(words: np.ndarray) -> np.ndarray:
    return _pairs_of(words[:-1], words[1:])


def doc_words(docs: Iterable) -> list[np.ndarray]:
    """Each doc's word hashes (NORM, punctuation and spaces left out): what hashes and names are made of."""
    return [_words(doc) for doc in docs]


def ngram_hashes(docs: Iterable) -> NgramHashes:
    """The word and word-pair hashes of each doc, in order."""
    return hashes_of_words(doc_words(docs))


def hashes_of_words(words_per_text: Sequence[np.ndarray]) -> NgramHashes:
    """``ngram_hashes`` from ``doc_words``."""
    parts, offsets = [], [0]
    for words in words_per_text:
        grams = np.concatenate([words, _pairs(words)]) if len(words) > 1 else words
        parts.append(grams)
        offsets.append(offsets[-1] + len(grams))
    hashes = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
    return NgramHashes(hashes.astype(np.uint64, copy=False), np.array(offsets, dtype=np.int64))


def ngram_names(docs: Iterable) -> dict[int, str]:
    """Readable text for every word and word-pair hash of the docs ("never", "never rang")."""
    docs = list(docs)
    return names_of_words(doc_words(docs), docs[0].vocab.strings) if docs else {}


def names_of_words(words_per_text: Sequence[np.ndarray], strings) -> dict[int, str]:
    """``ngram_names`` from ``doc_words`` and the docs' ``vocab.strings``."""
    if not words_per_text:
        return {}
    # Each distinct word and pair is looked up once, however often it occurs.
    text = {word: strings[word] for word in np.unique(np.concatenate(words_per_text)).tolist()}
    first = np.concatenate([words[:-1] for words in words_per_text])
    second = np.concatenate([words[1:] for words in words_per_text])
    pairs, where = np.unique(_pairs_of(first, second), return_index=True)
    names = dict(text)
    names.update(
        zip(
            pairs.tolist(),
            (f"{text[a]} {text[b]}" for a, b in zip(first[where].tolist(), second[where].tolist())),
        )
    )
    return names


def count_matrix(batch: NgramHashes, vocabulary: np.ndarray):
    """Texts x columns counts of the n-grams that are in ``vocabulary`` (sorted hashes); others are dropped."""
    from scipy.sparse import csr_matrix

    rows = np.repeat(np.arange(len(batch)), np.diff(batch.offsets))
    if not len(vocabulary):
        return csr_matrix((len(batch), 0))
    columns = np.minimum(np.searchsorted(vocabulary, batch.hashes), len(vocabulary) - 1)
    known = vocabulary[columns] == batch.hashes
    matrix = csr_matrix(
        (np.ones(int(known.sum())), (rows[known], columns[known])),
        shape=(len(batch), len(vocabulary)),
    )
    matrix.sum_duplicates()
    return matrix


def smooth_idf(counts) -> np.ndarray:
    """Inverse document frequency as scikit-learn's TfidfTransformer computes it (smooth_idf=True)."""
    documents = counts.shape[0]
    frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    return np.log((1 + documents) / (1 + frequency)) + 1


def tfidf(counts, idf: np.ndarray):
    """Sublinear term frequency times idf, each row scaled to unit length (in place on ``counts``)."""
    counts.data = (1 + np.log(counts.data)) * idf[counts.indices]
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    norms = np.sqrt(np.bincount(rows, weights=counts.data**2, minlength=counts.shape[0]))
    counts.data /= norms[rows]
    return counts


def tfidf_matrix(batch: NgramHashes, vocabulary: np.ndarray, idf: np.ndarray):
    return tfidf(count_matrix(batch, vocabulary), idf)
