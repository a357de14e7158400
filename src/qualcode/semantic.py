"""Classifiers over sentence embeddings (``embeddings``), and over embeddings and n-grams together.

``EmbeddingClassifier`` has the n-gram ``CodeClassifier``'s interface (fit, transform,
probabilities, explain_rows), so evaluation and coding can take either. Each code gets the same
calibrated logistic regression as the n-gram model (``classify.fit_model``), over the 768
numbers of a text's embedding instead of its n-grams. Its evidence is what a researcher can
check, instead of weights on dimensions that mean nothing to a reader: in a coding run, the
sentence of the segment that carries the code (``carriers``), then the labelled passages or
codebook examples of that code most like the segment, with their similarity.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from qualcode.carriers import excerpt
from qualcode.classify import (
    CodeClassifier,
    ModelClassifier,
    TrainingExample,
    TrainingMatrix,
    fit_model,
    is_default_codebook,
)
from qualcode.embeddings import (
    DIMENSIONS,
    EmbeddingCache,
    SentenceEncoder,
    embed_texts,
    load_encoder,
)

REPRESENTATIONS = ("ngrams", "embeddings", "both")
# What the classifier reads when a run does not say. Chosen by cross-validation over the sources
# of the two spent test splits of corpora/dev (447 passages, 115 sources the rules were not written
# from), training as a shipped model trains: rules + classifier alpha 0.44 with embeddings, 0.38
# with both, 0.25 with n-grams. See docs/real-text-evaluation.md.
DEFAULT_REPRESENTATION = "embeddings"
# Examples whose text may be shown as evidence: the codebook's and a researcher's own. Labels
# learnt from third-party text ship as vectors only and are never quoted.
_QUOTABLE = frozenset({"example", "seed", "human"})
SAME_TEXT_SIMILARITY = 0.995  # float16 vectors of one text agree to about 1e-3


def default_representation(parts: Sequence[str] | None = None) -> tuple[str, str | None]:
    """What a run reads when it names no representation, and why, if not the default.

    The default needs the sentence-embedding model, which is installed on its own (see README); a
    machine without it codes with n-grams and is told so, rather than refused. A model that is
    installed but altered is still refused when it is loaded.
    """
    from qualcode.embeddings import EmbeddingModelError, model_parts

    try:
        model_parts(parts)
    except EmbeddingModelError as error:
        return "ngrams", f"{error}; until then the classifier reads n-grams only"
    return DEFAULT_REPRESENTATION, None


@dataclass(frozen=True)
class _Neighbours:
    """A code's quotable positive examples, for evidence: unit vectors, excerpts, every code each
    carries, and how near each lies to the texts the model learnt from (``hubness``)."""

    vectors: np.ndarray
    excerpts: tuple[str, ...]
    codes: tuple[tuple[str, ...], ...]
    hubness: np.ndarray


# How many of the nearest learnt-from texts measure an example's hubness (``example_hubness``).
HUB_NEIGHBOURS = 10
HUB_BLOCK = 1024


def example_hubness(examples: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each example's mean similarity to its ``HUB_NEIGHBOURS`` nearest texts of ``reference``, itself left out.

    Some passages lie near everything (a long, general one most of all), and plain similarity
    quoted one invented passage for a third of the structural-context suggestions on real text.
    Evidence ranks examples by 2 x similarity - hubness (cross-domain similarity local scaling,
    Conneau et al. 2018), which prefers the example nearer this passage than to texts at large.
    """
    hubness = np.zeros(len(examples), dtype=np.float32)
    if not len(examples) or not len(reference):
        return hubness
    nearest = min(HUB_NEIGHBOURS, reference.shape[0])
    # In blocks, so that a project with many thousand reviewed segments never holds all their
    # similarities at once.
    for start in range(0, len(examples), HUB_BLOCK):
        similarity = examples[start : start + HUB_BLOCK] @ reference.T
        similarity[similarity >= SAME_TEXT_SIMILARITY] = -np.inf
        top = -np.partition(-similarity, nearest - 1, axis=1)[:, :nearest]
        top[~np.isfinite(top)] = 0.0
        hubness[start : start + HUB_BLOCK] = top.mean(axis=1)
    return hubness


CORPUS_VECTORS = "dev-corpus-vectors.npz"
CORPUS_WEIGHT = 1.0
# Beside the shipped corpus, each of a researcher's own labels (--train, reviewed workbooks) counts,
# for the codes the corpus covers, as this many corpus passages (``weigh_researcher_labels``): a
# reviewed quarter of a project is some fifty passages against nearly 3,000, and at equal weight
# it moved the coding of the rest by +0.01. On test10, the split the adapter never saw, with each
# quarter of its sources reviewed in turn, the other three quarters gained +0.009 at weight 1,
# +0.022 at 10, +0.032 at 30 (every quarter gained) and +0.026 at 100.
# docs/real-text-evaluation.md, round 10.
REVIEWED_WEIGHT = 30.0
# On text it has never seen, the shipped model's probabilities run low: the adapter learnt the
# corpus's passages, so they sit further from the boundary than a new researcher's passages do.
# On the three sets the adapter never saw (test10 rebuilt, test11, test12; 662 passages, the
# classifier learning without them) the mean probability was under each code's rate of occurrence
# (participation 0.07 against 0.14, structural context 0.32 against 0.42). Raising every log-odds
# by 1.0 brought the means to the rates, cut the log-loss from 0.401 to 0.371 for every code, and
# raised macro alpha with the rules from 0.456 to 0.476 (each set chosen on the other two: +0.019).
# A researcher's own labels calibrate the model to their corpus by themselves (log-loss 0.29 on the
# rest of a reviewed set), and the shift on top of them cost 0.02, so it applies only without them.
# docs/real-text-evaluation.md, round 13.
NEW_TEXT_LOG_ODDS = 1.0
# Per code, the probability at which the shipped model (the adapter and the corpus's vectors)
# suggests a code. Chosen by cross-validation grouped by source over the 2,185 passages of the
# training splits, each fold's adapter and classifier learning only from the other folds: of the
# thresholds that found at least 45% of what the coders found, the one that agreed best with the
# gold. A single 0.35 agreed as well (macro alpha 0.42 against 0.41 with these, chosen in nested
# folds) but found only a third of the accessibility passages; a rare theme's probabilities rarely
# rise far, and a researcher reviews suggestions, so a passage missed is the costlier error.
# Structural context, a third of all passages, is suggested too often below 0.5.
# docs/real-text-evaluation.md, round 7. They were chosen with the adapted MiniLM; with the adapted
# mpnet, on the one fold run so far, they agree within 0.004 of a single 0.35 (round 8).
CORPUS_SUGGEST_AT = {
    "continuity": 0.25,
    "accessibility": 0.2,
    "participation": 0.3,
    "empathy": 0.3,
    "trust": 0.25,
    "structural_context": 0.5,
}


def weigh_researcher_labels(
    examples: Sequence[TrainingExample], covered: frozenset[str]
) -> tuple[tuple[TrainingExample, ...], list[int]]:
    """A researcher's labels weighted ``REVIEWED_WEIGHT`` for the codes the shipped corpus covers,
    and as they are for the codes it does not; with each example's row in ``examples``.

    The weight balances a researcher's few labels against the corpus's thousands of passages. A
    code of their own has no corpus passages, only the codebook's examples, and there the weight
    drowned those examples: with each of six codes taken as new in turn on the three sets the adapter
    never saw, a reviewed quarter raised the rest's alpha by 0.074 at weight 1 and by 0.030 at 30,
    and moved its ranking by +0.006 against -0.028 (corpora/dev/learning_curve.py; round 15).
    A label for both kinds of code becomes two rows, one per kind, as each code's model reads only
    the rows that carry it.
    """
    weighted: list[TrainingExample] = []
    rows: list[int] = []
    for row, example in enumerate(examples):
        if example.origin != "human":
            parts = [example]
        else:
            shared = {code: value for code, value in example.labels.items() if code in covered}
            own = {code: value for code, value in example.labels.items() if code not in covered}
            parts = []
            if shared:
                parts.append(
                    replace(example, labels=shared, weight=example.weight * REVIEWED_WEIGHT)
                )
            if own:
                parts.append(replace(example, labels=own))
            parts = parts or [example]  # no label at all: as it came
        weighted.extend(parts)
        rows.extend([row] * len(parts))
    return tuple(weighted), rows


def corpus_thresholds(codebook) -> dict[str, float]:
    """The shipped model's threshold per code, for the default codebook's codes; empty for any other."""
    if not is_default_codebook(codebook):
        return {}
    return {code: value for code, value in CORPUS_SUGGEST_AT.items() if code in codebook.code_ids}


@lru_cache(maxsize=1)
def _shipped_corpus() -> tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]]:
    """The shipped vectors file, read once a process (evaluate reads it with and without the
    evaluated passages): vectors, labels, code ids, SHA-1s and sources, the arrays read-only."""
    from importlib import resources

    with (resources.files("qualcode") / "data" / CORPUS_VECTORS).open("rb") as handle:
        data = np.load(handle, allow_pickle=False)
        vectors, labels = data["vectors"].astype(np.float32), data["labels"]
        columns = (data["code_ids"].tolist(), data["sha1"].tolist(), data["sources"].tolist())
    vectors.setflags(write=False)
    labels.setflags(write=False)
    return (vectors, labels, *columns)


def corpus_examples(
    codebook, leave_out: frozenset[str] = frozenset()
) -> tuple[list[TrainingExample], np.ndarray]:
    """The development corpus of real writing as labelled vectors, for the default codebook's codes.

    qualcode ships what it learnt from that corpus as numbers only: each passage's embedding, its
    adjudicated codes and the SHA-1 of its text, never the text (see corpora/dev). Passages whose
    SHA-1 is in ``leave_out`` (texts being evaluated) are left out. Empty for any other codebook.
    """
    if not is_default_codebook(codebook):
        return [], np.zeros((0, DIMENSIONS), dtype=np.float32)
    vectors, labels, code_ids, hashes, sources = _shipped_corpus()
    shared = [
        (column, code_id) for column, code_id in enumerate(code_ids) if code_id in codebook.code_ids
    ]
    keep = [row for row, digest in enumerate(hashes) if digest not in leave_out]
    examples = [
        TrainingExample(
            "",
            {code_id: int(labels[row, column]) for column, code_id in shared},
            CORPUS_WEIGHT,
            f"dev-corpus:{sources[row]}",
            "dev-corpus",
        )
        for row in keep
    ]
    return examples, vectors[keep]


def _matrix(examples: Sequence[TrainingExample], vectors: np.ndarray) -> TrainingMatrix:
    return TrainingMatrix(
        tuple(examples),
        np.arange(DIMENSIONS, dtype=np.uint64),
        np.ones(DIMENSIONS),
        np.array([f"dimension {index}" for index in range(DIMENSIONS)]),
        vectors.astype(np.float64),
    )


class EmbeddingClassifier(ModelClassifier):
    """Multi-label classifier over sentence embeddings: ``fit(examples)``, then ``predict_proba(texts)``.

    ``prior`` is labelled data known only as vectors (``corpus_examples``), learnt beside the examples.
    """

    def __init__(
        self,
        code_ids: Sequence[str],
        *,
        cache: EmbeddingCache | None = None,
        progress=None,
        prior: tuple[list[TrainingExample], np.ndarray] | None = None,
        model_cache: bool = False,
    ):
        self.code_ids = tuple(code_ids)
        self.cache = cache
        self.progress = progress
        self.prior = prior
        self.model_cache = model_cache
        self.model = None
        self.model_status = "trained"
        self.new_text_log_odds = 0.0
        self._neighbours: dict[str, _Neighbours] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(
            list(texts), encoder=encoder_for(self.prior), cache=self.cache, progress=self.progress
        )[0]

    def fit(
        self, examples: Sequence[TrainingExample], vectors: np.ndarray | None = None
    ) -> EmbeddingClassifier:
        """Fit on ``examples``; ``vectors`` are their embeddings when known (e.g. shipped without their texts)."""
        examples = (
            tuple(example for example in examples if example.text.strip())
            if vectors is None
            else tuple(examples)
        )
        vectors = self.embed([example.text for example in examples]) if vectors is None else vectors
        if self.prior is not None and len(self.prior[0]):
            covered = frozenset(code for example in self.prior[0] for code in example.labels)
            weighted, rows = weigh_researcher_labels(examples, covered)
            examples = weighted + tuple(self.prior[0])
            vectors = np.vstack([np.asarray(vectors)[rows], self.prior[1]])
        self.model = self._fitted(examples, vectors)
        learns_shipped_corpus = self.prior is not None and len(self.prior[0]) > 0
        learns_researcher = any(example.origin == "human" for example in examples)
        self.new_text_log_odds = (
            NEW_TEXT_LOG_ODDS if learns_shipped_corpus and not learns_researcher else 0.0
        )
        quotable = [
            row
            for row, example in enumerate(examples)
            if example.origin in _QUOTABLE
            and example.text.strip()
            and any(example.labels.get(code_id) == 1 for code_id in self.code_ids)
        ]
        # Once for every quotable example, however many codes it carries.
        hubness = dict(
            zip(
                quotable,
                example_hubness(
                    np.asarray(vectors[quotable], dtype=np.float32),
                    np.asarray(vectors, dtype=np.float32),
                ).tolist(),
            )
        )
        for code_id in self.code_ids:
            rows = [row for row in quotable if examples[row].labels.get(code_id) == 1]
            self._neighbours[code_id] = _Neighbours(
                np.asarray(vectors[rows], dtype=np.float32),
                tuple(excerpt(examples[row].text) for row in rows),
                tuple(
                    tuple(code for code in self.code_ids if examples[row].labels.get(code) == 1)
                    for row in rows
                ),
                np.array([hubness[row] for row in rows], dtype=np.float32),
            )
        return self

    def _fitted(self, examples: Sequence[TrainingExample], vectors: np.ndarray):
        """The model fitted to these examples and vectors, from the model cache when it has them.

        Fitting a calibrated model per code over thousands of shipped vectors takes seconds on
        every run, and a researcher's re-runs mostly change the codebook's rules, not what the
        classifier learns from. A model fitted before on the same vectors and labels is the same
        model (every fit is seeded).
        """
        if not self.model_cache:
            return fit_model(self.code_ids, _matrix(examples, vectors))
        from qualcode.model_cache import default_cache_dir, embedding_model_key, load_model
        from qualcode.training import loaded, remember

        key = embedding_model_key(self.code_ids, examples, vectors)
        model = load_model(default_cache_dir(), key)
        if model is not None:
            self.model_status = loaded(key)
            return model
        model = fit_model(self.code_ids, _matrix(examples, vectors))
        self.model_status = remember(model, key)
        return model

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def probabilities(self, features) -> np.ndarray:
        """Calibrated probabilities, raised for new text when only the shipped corpus was learnt (see
        ``NEW_TEXT_LOG_ODDS``); NaN for untrained codes."""
        probabilities = self.model.probabilities(features)
        if not self.new_text_log_odds:
            return probabilities
        from scipy.special import expit, logit

        return expit(logit(probabilities) + self.new_text_log_odds)

    def explain_rows(
        self, features, pairs: Sequence[tuple[int, str]], top: int = 2
    ) -> list[list[tuple[str, float]]]:
        """For each (row, code) pair, the most similar quotable examples of that code: (excerpt, similarity, description)."""
        explained = []
        for row, code_id in pairs:
            neighbours = self._neighbours.get(code_id)
            if neighbours is None or not len(neighbours.excerpts):
                explained.append([])
                continue
            similarity = neighbours.vectors @ np.asarray(features[row], dtype=np.float32)
            # A passage that is itself a labelled example (a seed text, a reviewed segment) would cite
            # itself at similarity 1.00: evidence of nothing.
            similarity[similarity >= SAME_TEXT_SIMILARITY] = -np.inf
            best = [
                index
                for index in np.argsort(-(2 * similarity - neighbours.hubness), kind="stable")[:top]
                if np.isfinite(similarity[index])
            ]
            explained.append(
                [
                    (
                        neighbours.excerpts[index],
                        float(similarity[index]),
                        f"classifier: like this example coded {', '.join(neighbours.codes[index])} "
                        f"(similarity {similarity[index]:.2f})",
                    )
                    for index in best
                ]
            )
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
        return tuple(
            code
            for code in self.code_ids
            if code in self.ngrams.trained_codes and code in self.embeddings.trained_codes
        )

    @property
    def training_counts_(self) -> dict[str, tuple[int, int]]:
        return self.ngrams.training_counts_

    def transform(self, texts: Sequence[str]) -> PairedFeatures:
        return PairedFeatures(self.ngrams.transform(texts), self.embeddings.transform(texts))

    def probabilities(self, features: PairedFeatures) -> np.ndarray:
        return (
            self.ngrams.probabilities(features.ngrams)
            + self.embeddings.probabilities(features.embeddings)
        ) / 2

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.probabilities(self.transform(texts))

    def explain_rows(
        self, features: PairedFeatures, pairs: Sequence[tuple[int, str]], top: int = 4
    ):
        words = self.ngrams.explain_rows(features.ngrams, pairs, top=top - 1)
        similar = self.embeddings.explain_rows(features.embeddings, pairs, top=1)
        return [first + second for first, second in zip(words, similar)]


def encoder_for(prior: tuple[list[TrainingExample], np.ndarray] | None) -> SentenceEncoder:
    """The adapted model where the development corpus's vectors are learnt from, else the upstream one.

    The adapter and the vectors were learnt together for the default codebook's themes: the vectors
    only make sense in the adapted model's space, and the adapter is no evidence for other codes.
    """
    return load_encoder(adapted=prior is not None and len(prior[0]) > 0)


def default_embedding_cache(
    encoder: SentenceEncoder, *, read_only: bool = False
) -> EmbeddingCache | None:
    """``encoder``'s embedding cache beside the model cache ($QUALCODE_CACHE_DIR, else ~/.cache/qualcode).

    ``read_only`` (a run that stores nothing, ``--no-model-cache``) reads the vectors earlier runs
    stored, since a text's embedding never depends on the run, and gives None where there are none.
    """
    from qualcode.model_cache import default_cache_dir

    path = default_cache_dir() / "embeddings.sqlite"
    if read_only:
        try:
            return (
                EmbeddingCache(path, encoder.model_sha256, read_only=True)
                if path.is_file()
                else None
            )
        except sqlite3.Error:
            return None
    return EmbeddingCache(path, encoder.model_sha256)


def new_classifier(
    representation: str,
    code_ids: Sequence[str],
    nlp,
    *,
    cache: EmbeddingCache | None = None,
    prior: tuple[list[TrainingExample], np.ndarray] | None = None,
    model_cache: bool = False,
):
    """An unfitted classifier over ``representation`` (one of ``REPRESENTATIONS``); ``prior`` and
    ``model_cache`` (keep fitted models in the model cache) as ``EmbeddingClassifier``."""
    if representation == "ngrams":
        return CodeClassifier(code_ids, nlp)
    embedder = EmbeddingClassifier(code_ids, cache=cache, prior=prior, model_cache=model_cache)
    if representation == "embeddings":
        return embedder
    if representation == "both":
        return BlendedClassifier(CodeClassifier(code_ids, nlp), embedder)
    raise ValueError(
        f"unknown representation {representation!r}; choose one of {', '.join(REPRESENTATIONS)}"
    )


def _rows(features, start: int, stop: int):
    if isinstance(features, PairedFeatures):
        return PairedFeatures(features.ngrams[start:stop], features.embeddings[start:stop])
    return features[start:stop]


def _point_into_passages(
    merged_by_chunk, codable, classifier, embedder, code_ids, task, nlp, progress=None
) -> None:
    """Put first in each classifier suggestion's evidence the sentence of its passage that carries it
    (``carriers.carrying_sentences``), keeping the example it most resembles after it.

    Each sentence is embedded alone. Pooled inside its passage instead, every sentence of a passage
    about a theme read as that theme (on the sample the sentence chosen agreed with reading it alone
    for only 140 of 220 suggestions), so a first run pays for embedding them to say which one.
    """
    from qualcode.carriers import carrying_sentences

    places, suggestions = [], []
    for number, (merged, segments) in enumerate(zip(merged_by_chunk, codable)):
        by_id = {segment.segment_id: segment for segment in segments}
        for place, assignment in enumerate(merged):
            if assignment.source == "classifier" and assignment.status == "suggested":
                places.append((number, place))
                suggestions.append((by_id[assignment.segment_id], assignment.code_id))
    if not suggestions:
        return

    def predict(sentences: list[str]) -> np.ndarray:
        embedder.progress = (
            (lambda done: progress("sentences", done, len(sentences))) if progress else None
        )
        return classifier.predict_proba(sentences)

    carriers = carrying_sentences(suggestions, code_ids, predict, task.policy.threshold, nlp)
    for (number, place), carrier in zip(places, carriers):
        if carrier is not None:
            assignment = merged_by_chunk[number][place]
            merged_by_chunk[number][place] = replace(
                assignment, evidence=(carrier, *assignment.evidence[:1])
            )


def code_semantically(held, codebook, options, task, examples, nlp, record: dict, progress=None):
    """Classify and combine a run's chunks (rule hits, not yet coded) with a classifier over embeddings.

    The corpus's coded segments are embedded in one pass, so texts of like length share batches
    and a text said twice is embedded once; cached texts are not embedded again. Returns the
    coded chunks and the fitted model (for the Run sheet's training counts).
    """
    from qualcode.combine import combine

    prior = corpus_examples(codebook) if options.seed else None
    encoder = encoder_for(prior)
    cache = default_embedding_cache(encoder, read_only=not options.model_cache)
    codable = [chunk.codable(options.code_interviewer) for chunk in held]
    texts = [segment.text for segments in codable for segment in segments]
    total = len(texts) + len(examples)
    classifier = new_classifier(
        options.representation,
        codebook.code_ids,
        nlp,
        cache=cache,
        prior=prior,
        model_cache=options.model_cache,
    )
    embedder = classifier.embeddings if isinstance(classifier, BlendedClassifier) else classifier
    embedder.progress = (lambda done: progress("embed", done, total)) if progress else None
    try:
        classifier.fit(examples)
        features = classifier.transform(texts)
        probabilities = classifier.probabilities(features).astype(np.float32)
        merged_by_chunk, start = [], 0
        for chunk, segments in zip(held, codable):
            stop = start + len(segments)
            rows = _rows(features, start, stop)
            merged_by_chunk.append(
                combine(
                    segments,
                    chunk.assignments,
                    probabilities[start:stop],
                    codebook.code_ids,
                    task.policy,
                    lambda pairs, rows=rows: classifier.explain_rows(rows, pairs),
                )
            )
            start = stop
        if options.sentence_evidence:
            _point_into_passages(
                merged_by_chunk,
                codable,
                classifier,
                embedder,
                codebook.code_ids,
                task,
                nlp,
                progress,
            )
    finally:
        if cache is not None:
            cache.close()
    coded, start = [], 0
    for chunk, segments, merged in zip(held, codable, merged_by_chunk):
        stop = start + len(segments)
        coded.append(
            replace(
                chunk,
                assignments=merged,
                ngrams=None,
                coded=True,
                probabilities=probabilities[start:stop],
            )
        )
        start = stop
    record["classifier representation"] = {
        "embeddings": f"sentence embeddings ({encoder.description})",
        "both": f"n-grams and sentence embeddings ({encoder.description}), the mean of the two models' probabilities",
    }[options.representation]
    shipped = len(prior[0]) if prior else 0
    record["classifier model"] = (
        f"{embedder.model_status}; learnt from {len(examples)} examples of this run"
        + (f" and {shipped} passages of real writing (corpora/dev, as vectors)" if shipped else "")
        + (
            f"; its probabilities raised by {embedder.new_text_log_odds:g} in log-odds, for text it "
            "has not seen and no labels of this project"
            if embedder.new_text_log_odds
            else ""
        )
    )
    model = (
        classifier.embeddings.model
        if isinstance(classifier, BlendedClassifier)
        else classifier.model
    )
    return coded, model
