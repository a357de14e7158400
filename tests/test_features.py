"""The classifier's n-gram features: what a text yields, and TF-IDF as scikit-learn computes it."""

import numpy as np
from sklearn.feature_extraction.text import TfidfTransformer

from qualcode.features import count_matrix, ngram_hashes, ngram_names, smooth_idf, tfidf


def _docs(nlp, *texts):
    return list(nlp.tokenizer.pipe(texts))


def test_words_and_ordered_pairs_without_punctuation(nlp):
    docs = _docs(nlp, "She never rang.", "Rang never, she!", "")
    batch = ngram_hashes(docs)
    assert len(batch) == 3
    first, second, empty = (
        set(batch.hashes[batch.offsets[i] : batch.offsets[i + 1]].tolist()) for i in range(3)
    )
    names = ngram_names(docs)
    assert sorted(names[h] for h in first) == ["never", "never rang", "rang", "she", "she never"]
    # The same words in another order share the word features but none of the pairs.
    assert {names[h] for h in first & second} == {"she", "never", "rang"}
    assert {names[h] for h in second - first} == {"rang never", "never she"}
    assert empty == set()


def test_case_and_contractions_are_normalised(nlp):
    docs = _docs(nlp, "She DIDN'T call", "she didn't call", "she did not call")
    batch = ngram_hashes(docs)
    rows = [batch.hashes[batch.offsets[i] : batch.offsets[i + 1]].tolist() for i in range(3)]
    assert rows[0] == rows[1]
    assert rows[1] != rows[2]


def test_unknown_ngrams_are_dropped_and_repeats_counted(nlp):
    vocabulary_docs = _docs(nlp, "never rang back")
    vocabulary = np.unique(ngram_hashes(vocabulary_docs).hashes)
    counts = count_matrix(
        ngram_hashes(_docs(nlp, "never never rang", "nothing known here")), vocabulary
    )
    names = ngram_names(vocabulary_docs)
    by_name = {names[int(h)]: counts[0, column] for column, h in enumerate(vocabulary)}
    assert by_name == {"never": 2, "rang": 1, "back": 0, "never rang": 1, "rang back": 0}
    assert counts[1].nnz == 0


def test_tfidf_equals_scikit_learns_sublinear_transformer(nlp):
    texts = [
        "she never had time for us",
        "never rang back, never",
        "she was honest with me",
        "time and time again she came",
        "the office never rang",
    ]
    batch = ngram_hashes(_docs(nlp, *texts))
    vocabulary = np.unique(batch.hashes)
    counts = count_matrix(batch, vocabulary)
    expected = TfidfTransformer(sublinear_tf=True).fit_transform(counts.copy()).toarray()
    idf = smooth_idf(counts)
    np.testing.assert_allclose(tfidf(counts, idf).toarray(), expected, rtol=1e-12)
