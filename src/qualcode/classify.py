"""The classifier: one calibrated scikit-learn logistic regression per code over shared TF-IDF features.

Training data comes as ``TrainingExample``s, each knowing only the labels someone actually gave:
a gold or reviewed segment knows every code; a codebook example knows only its own code. Each
code's model trains on the examples that carry a label for it. The same data always gives the
same model; a trained model is plain arrays (``ClassifierModel``), which ``model_cache`` keeps
by the hash of the data it came from, so a re-run with unchanged labels skips training.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources

import numpy as np

from qualcode.arrays import concatenated_ranges
from qualcode.features import (
    NgramHashes,
    count_matrix,
    doc_words,
    hashes_of_words,
    names_of_words,
    ngram_hashes,
    smooth_idf,
    tfidf,
    tfidf_matrix,
)
from qualcode.models import Codebook

logger = logging.getLogger(__name__)

HUMAN_WEIGHT = 1.0
EXAMPLE_WEIGHT = 1.0
SEED_WEIGHT = 1.0
WEAK_WEIGHT = 0.3
MIN_PER_CLASS = 2
CALIBRATION_FOLDS = 3
SEED_FILE = "relationship-themes-seed.csv"


@dataclass(frozen=True)
class TrainingExample:
    text: str
    labels: dict[str, int]
    weight: float = HUMAN_WEIGHT
    group: str = ""
    origin: str = "human"


def examples_from_codebook(codebook: Codebook) -> list[TrainingExample]:
    """Each code's positive examples say 1 and its negative examples say 0, for that code only."""
    examples = []
    for code in codebook.codes:
        for text in code.positive_examples:
            examples.append(
                TrainingExample(
                    text, {code.code_id: 1}, EXAMPLE_WEIGHT, f"codebook:{code.code_id}", "example"
                )
            )
        for text in code.negative_examples:
            examples.append(
                TrainingExample(
                    text, {code.code_id: 0}, EXAMPLE_WEIGHT, f"codebook:{code.code_id}", "example"
                )
            )
    return examples


@lru_cache(maxsize=1)
def _default_codebook_identity() -> tuple[str, tuple[str, ...]]:
    from qualcode.codebook import load_codebook

    default = load_codebook()
    return default.name, default.code_ids


@lru_cache(maxsize=1)
def _default_codebook_sha256() -> str:
    import hashlib

    from qualcode.codebook import default_codebook_path

    return hashlib.sha256(
        default_codebook_path().read_bytes().decode("utf-8-sig").encode("utf-8")
    ).hexdigest()


def _default_identity(codebook: Codebook) -> tuple[str, tuple[str, ...]]:
    if codebook.sha256 is not None and codebook.sha256 == _default_codebook_sha256():
        return codebook.name, codebook.code_ids  # the default itself: no need to parse it again
    return _default_codebook_identity()


def is_default_codebook(codebook: Codebook) -> bool:
    """The default codebook, or a refined copy that keeps its name: the codebook the seed set, the
    development corpus's vectors and the encoder's adapter were made for."""
    return codebook.name == _default_identity(codebook)[0]


def seed_examples(codebook: Codebook) -> list[TrainingExample]:
    """The hand-coded sample corpus shipped with the default codebook; empty for any other codebook."""
    if not is_default_codebook(codebook):
        return []
    code_ids = _default_identity(codebook)[1]
    data = resources.files("qualcode") / "data" / SEED_FILE
    shared = [code_id for code_id in code_ids if code_id in codebook.code_ids]
    with data.open("r", encoding="utf-8", newline="") as handle:
        return [
            TrainingExample(
                row["text"],
                {code_id: int(row[code_id]) for code_id in shared},
                SEED_WEIGHT,
                f"seed:{row['document']}",
                "seed",
            )
            for row in csv.DictReader(handle)
        ]


def _content_mask(names: np.ndarray) -> np.ndarray:
    """Function words help the model but explain nothing to a researcher, so evidence leaves them out."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return np.fromiter(
        (not ENGLISH_STOP_WORDS.issuperset(name.split()) for name in names.tolist()),
        dtype=bool,
        count=len(names),
    )


def _base_model(features):
    from sklearn.linear_model import LogisticRegression

    # The dual formulation solves the same problem, about twice as fast when there are fewer
    # texts than n-grams (the usual case); probabilities agree to 1e-4.
    dual = features.shape[0] < features.shape[1]
    return LogisticRegression(
        C=4.0, class_weight="balanced", solver="liblinear", dual=dual, max_iter=1000, random_state=0
    )  # the dual solver visits examples in a random order


# Part of the model cache key: change it whenever training would give a different model for the same data.
MODEL_VERSION = f"liblinear-C4-balanced-platt{CALIBRATION_FOLDS}-v2"


def _platt_calibrator(
    features, labels: np.ndarray, weights: np.ndarray, groups: np.ndarray, real: np.ndarray
):
    """Platt scaling fitted on out-of-fold scores, with folds grouped by document.

    Grouping matters: segments of one interview share words, so folds that split a document
    would make held-out scores look surer than they are on a new document. Returns the scaling
    (slope, intercept) and the fold models: predictions average the scaled fold models, whose
    scores are the ones the scaling was fitted on (scaling the full model's larger scores instead
    was over-confident by 0.2 in the middle of the range on the sample). None when there are too
    few groups or examples to hold any out. Codebook examples are cleaner than real segments, so
    the scaling is fitted on real segments when there are enough of them.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    folds = min(
        CALIBRATION_FOLDS, len(set(groups)), int(labels.sum()), int(len(labels) - labels.sum())
    )
    if folds < 2:
        return None
    scores = np.zeros(len(labels))
    fold_models = []
    for train, held_out in StratifiedGroupKFold(folds).split(features, labels, groups):
        if len(set(labels[train])) < 2:
            return None
        fold_model = _base_model(features).fit(
            features[train], labels[train], sample_weight=weights[train]
        )
        scores[held_out] = fold_model.decision_function(features[held_out])
        fold_models.append(fold_model)
    use = (
        real
        if labels[real].sum() >= MIN_PER_CLASS and (1 - labels[real]).sum() >= MIN_PER_CLASS
        else np.ones_like(real)
    )
    calibrator = LogisticRegression(C=1e4).fit(
        scores[use].reshape(-1, 1), labels[use], sample_weight=weights[use]
    )
    slope, intercept = float(calibrator.coef_[0, 0]), float(calibrator.intercept_[0])
    # Held-out scores that do not rise with the label mean too little data to calibrate; never invert the model.
    return ((slope, intercept), fold_models) if slope > 0 else None


@dataclass(frozen=True)
class CodeModel:
    """How one code is scored: columns of ``ClassifierModel.weights`` and an optional Platt scaling."""

    full: int
    folds: tuple[int, ...] = ()
    platt: tuple[float, float] | None = None


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


@dataclass(frozen=True)
class ClassifierModel:
    """A trained classifier as plain arrays: predicting needs numpy and scipy, not scikit-learn.

    ``vocabulary`` holds the sorted n-gram hashes that are the feature columns (``features``);
    every linear scorer (each code's full model and its fold models) is a column of ``weights``
    with its entry in ``intercepts``. A code is scored by its Platt-scaled fold models, averaged,
    or by its full model when there was too little data to calibrate; the full model's weights
    also pick the evidence n-grams.
    """

    code_ids: tuple[str, ...]
    vocabulary: np.ndarray
    idf: np.ndarray
    names: np.ndarray
    content: np.ndarray
    weights: np.ndarray
    intercepts: np.ndarray
    codes: dict[str, CodeModel]
    training_counts: dict[str, tuple[int, int]]

    @property
    def trained_codes(self) -> tuple[str, ...]:
        return tuple(code_id for code_id in self.code_ids if code_id in self.codes)

    def features(self, batch: NgramHashes):
        """The TF-IDF matrix (texts x vocabulary) of a batch of n-gram hashes."""
        return tfidf_matrix(batch, self.vocabulary, self.idf)

    def probabilities(self, features) -> np.ndarray:
        """Calibrated probabilities (texts x codes) for a feature matrix; NaN for untrained codes."""
        result = np.full((features.shape[0], len(self.code_ids)), np.nan)
        if features.shape[0] == 0 or not self.codes:
            return result
        scores = np.asarray(features @ self.weights) + self.intercepts
        for column, code_id in enumerate(self.code_ids):
            code = self.codes.get(code_id)
            if code is None:
                continue
            if code.platt is None:
                result[:, column] = _sigmoid(scores[:, code.full])
            else:
                slope, intercept = code.platt
                result[:, column] = _sigmoid(slope * scores[:, list(code.folds)] + intercept).mean(
                    axis=1
                )
        return result

    def explain(self, features, row: int, code_id: str, top: int = 4) -> list[tuple[str, float]]:
        """The content n-grams of text ``row`` of a feature matrix that pushed it most towards ``code_id``.

        Ties in weight go to the n-gram whose name sorts first.
        """
        return self.explain_rows(features, [(row, code_id)], top)[0]

    @cached_property
    def _names_in_order(self) -> tuple[list[str], np.ndarray]:
        """The n-gram names as Python strings, and each one's position when the names are sorted."""
        rank = np.empty(len(self.names), dtype=np.int64)
        rank[np.argsort(self.names, kind="stable")] = np.arange(len(self.names))
        return self.names.tolist(), rank

    def explain_rows(
        self, features, pairs: Sequence[tuple[int, str]], top: int = 4
    ) -> list[list[tuple[str, float]]]:
        """``explain`` for many (row, code_id) pairs at once, in their order: one numpy pass per code, not per pair."""
        names, name_rank = self._names_in_order
        explained: list[list[tuple[str, float]]] = [[] for _ in pairs]
        positions_by_code: dict[str, list[int]] = {}
        for position, (_, code_id) in enumerate(pairs):
            positions_by_code.setdefault(code_id, []).append(position)
        for code_id, positions in positions_by_code.items():
            coefficients = self.weights[:, self.codes[code_id].full]
            rows = np.array([pairs[position][0] for position in positions], dtype=np.int64)
            # Every stored entry of those rows, straight from the CSR arrays, tagged with its pair.
            starts = features.indptr[rows]
            lengths = features.indptr[rows + 1] - starts
            owner = np.repeat(np.arange(len(rows)), lengths)
            entries = concatenated_ranges(starts, lengths)
            indices = features.indices[entries]
            weights = features.data[entries] * coefficients[indices]
            keep = (weights > 0) & self.content[indices]
            owner, indices, weights = owner[keep], indices[keep], weights[keep]
            order = np.lexsort((name_rank[indices], -weights, owner))
            owner, indices, weights = owner[order], indices[order], weights[order]
            place = np.arange(len(owner)) - np.searchsorted(
                owner, owner
            )  # 0 for each pair's strongest n-gram
            best = place < top
            for pair, index, weight in zip(
                owner[best].tolist(), indices[best].tolist(), weights[best].tolist()
            ):
                explained[positions[pair]].append((names[index], weight))
        return explained


@dataclass(frozen=True)
class TrainingMatrix:
    """Labelled examples as TF-IDF features (examples x ``vocabulary``): all that fitting needs, without spaCy.

    ``fit_model`` can run in a process that never imports spaCy, while this one tokenizes.
    """

    examples: tuple[TrainingExample, ...]
    vocabulary: np.ndarray
    idf: np.ndarray
    names: np.ndarray
    matrix: object


def training_matrix(examples: Sequence[TrainingExample], nlp) -> TrainingMatrix:
    """Tokenize the examples that have text with ``nlp`` and weigh their n-grams (see ``features``)."""
    examples = tuple(example for example in examples if example.text.strip())
    words = doc_words(nlp.tokenizer.pipe([example.text for example in examples]))
    batch = hashes_of_words(words)
    vocabulary = np.unique(batch.hashes)
    counts = count_matrix(batch, vocabulary)
    idf = smooth_idf(counts)
    names_by_hash = names_of_words(words, nlp.vocab.strings)
    names = np.array([names_by_hash[int(value)] for value in vocabulary], dtype=str)
    return TrainingMatrix(examples, vocabulary, idf, names, tfidf(counts, idf))


def train_model(
    code_ids: Sequence[str], examples: Sequence[TrainingExample], nlp
) -> ClassifierModel:
    """Fit one calibrated logistic regression per code on the examples that carry a label for it."""
    return fit_model(code_ids, training_matrix(examples, nlp))


# From this many examples, codes are fitted in several processes (``fit_model``): below it, starting
# them costs more than the fits.
PARALLEL_FIT_FROM = 2_000


def _fitting_processes(codes: int, examples: int) -> int:
    """How many processes ``fit_model`` fits codes in: one per core, when the data is big and this process may fork."""
    import multiprocessing
    import os

    if (
        codes < 2
        or examples < PARALLEL_FIT_FROM
        or "fork" not in multiprocessing.get_all_start_methods()
        or multiprocessing.current_process().daemon
    ):  # a daemonic process may not start others
        return 1
    return min(codes, os.cpu_count() or 1)


# (coefficients, intercept) of one linear scorer; a code's fit is its full scorer and, when
# calibrated, its Platt scaling and fold scorers.
Scorer = tuple[np.ndarray, float]
CodeFit = tuple[Scorer, tuple[tuple[float, float], list[Scorer]] | None]

_FITTING: tuple[TrainingMatrix, dict[str, list[int]]] | None = (
    None  # what forked fitting processes inherit
)


def _fit_code(data: TrainingMatrix, rows: list[int], code_id: str) -> CodeFit:
    examples, matrix = data.examples, data.matrix
    labels = np.array([examples[index].labels[code_id] for index in rows], dtype=int)
    features = matrix[rows]
    weights = np.array([examples[index].weight for index in rows])
    groups = np.array([examples[index].group or str(index) for index in rows])
    real = np.array([examples[index].origin != "example" for index in rows])

    def scorer(model) -> Scorer:
        return model.coef_.ravel(), float(model.intercept_[0])

    full = scorer(_base_model(features).fit(features, labels, sample_weight=weights))
    calibration = _platt_calibrator(features, labels, weights, groups, real)
    if calibration is None:
        return full, None
    platt, fold_models = calibration
    return full, (platt, [scorer(model) for model in fold_models])


def _fit_inherited_code(code_id: str) -> CodeFit:
    data, rows = _FITTING
    return _fit_code(data, rows[code_id], code_id)


def _fit_codes(data: TrainingMatrix, rows: dict[str, list[int]]) -> list[CodeFit]:
    """Each code's fit, in the order of ``rows``; in several forked processes when that pays.

    Every fit seeds liblinear's random generator, which is per process, so a code gets the same
    model wherever it is fitted (threads would share the generator and race for it).
    """
    global _FITTING
    processes = _fitting_processes(len(rows), len(data.examples))
    if processes == 1:
        return [_fit_code(data, code_rows, code_id) for code_id, code_rows in rows.items()]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _FITTING = (data, rows)
    try:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_fit_inherited_code, rows))
    finally:
        _FITTING = None


def fit_model(code_ids: Sequence[str], data: TrainingMatrix) -> ClassifierModel:
    """``train_model`` on examples already turned into features."""
    examples, vocabulary, idf, names = data.examples, data.vocabulary, data.idf, data.names
    counts_by_code: dict[str, tuple[int, int]] = {}
    trainable: dict[str, list[int]] = {}
    for code_id in code_ids:
        rows = [index for index, example in enumerate(examples) if code_id in example.labels]
        positives = sum(examples[index].labels[code_id] for index in rows)
        negatives = len(rows) - positives
        counts_by_code[code_id] = (positives, negatives)
        if positives < MIN_PER_CLASS or negatives < MIN_PER_CLASS:
            logger.info(
                "code %s: %d positive and %d negative examples; too few to train",
                code_id,
                positives,
                negatives,
            )
            continue
        trainable[code_id] = rows
    scorers: list[Scorer] = []
    codes: dict[str, CodeModel] = {}

    def add(scorer: Scorer) -> int:
        scorers.append(scorer)
        return len(scorers) - 1

    for code_id, (full, calibration) in zip(trainable, _fit_codes(data, trainable)):
        if calibration is None:
            codes[code_id] = CodeModel(add(full))
        else:
            platt, folds = calibration
            full_column = add(full)
            codes[code_id] = CodeModel(full_column, tuple(add(fold) for fold in folds), platt)
    weight_matrix = (
        np.column_stack([coefficients for coefficients, _ in scorers])
        if scorers
        else np.zeros((len(vocabulary), 0))
    )
    return ClassifierModel(
        tuple(code_ids),
        vocabulary,
        idf,
        names,
        _content_mask(names),
        weight_matrix,
        np.array([intercept for _, intercept in scorers]),
        codes,
        counts_by_code,
    )


class ModelClassifier:
    """What a classifier over a fitted ``ClassifierModel`` offers whatever its features: subclasses
    set ``model`` in ``fit`` and say how texts become features in ``transform``."""

    model: ClassifierModel | None

    @property
    def trained_codes(self) -> tuple[str, ...]:
        return self.model.trained_codes

    @property
    def training_counts_(self) -> dict[str, tuple[int, int]]:
        return self.model.training_counts

    def transform(self, texts: Sequence[str]):
        raise NotImplementedError

    def probabilities(self, features) -> np.ndarray:
        return self.model.probabilities(features)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.probabilities(self.transform(texts))


class CodeClassifier(ModelClassifier):
    """Multi-label classifier: ``fit(examples)`` then ``predict_proba(texts)`` -> array (texts x codes).

    A code without at least two positive and two negative examples has no model; its column is NaN.
    Probabilities are calibrated by Platt scaling on out-of-fold scores (see ``_platt_calibrator``).
    Texts are tokenized by ``nlp`` (default: the offline pipeline), as the rules tokenize them.
    """

    def __init__(self, code_ids: Sequence[str], nlp=None, model: ClassifierModel | None = None):
        self.code_ids = tuple(code_ids)
        self._nlp = nlp
        self.model = model

    @property
    def nlp(self):
        if self._nlp is None:
            from qualcode.segment import build_pipeline

            self._nlp = build_pipeline()
        return self._nlp

    def fit(self, examples: Sequence[TrainingExample]) -> CodeClassifier:
        self.model = train_model(self.code_ids, examples, self.nlp)
        return self

    def transform(self, texts: Sequence[str]):
        return self.model.features(ngram_hashes(self.nlp.tokenizer.pipe(list(texts))))

    def explain(self, features, row: int, code_id: str, top: int = 4) -> list[tuple[str, float]]:
        return self.model.explain(features, row, code_id, top)

    def explain_rows(
        self, features, pairs: Sequence[tuple[int, str]], top: int = 4
    ) -> list[list[tuple[str, float]]]:
        return self.model.explain_rows(features, pairs, top)


def examples_from_labels(
    label_file, segments: Sequence | None = None, *, weight: float = HUMAN_WEIGHT
) -> list[TrainingExample]:
    """Training examples from a label file: its text column, else the text of the segments it matches."""
    from qualcode.errors import InputDataError
    from qualcode.labels import match_units

    if all(unit.text is not None for unit in label_file.units):
        pairs = [(unit, unit.text) for unit in label_file.units]
    else:
        matched, _ = match_units(label_file.units, segments or ())
        if not matched:
            raise InputDataError(
                f"{label_file.path}: has no text column and none of its rows matches a segment "
                "of the inputs by segment_id or document/start/end"
            )
        texts = {segment.segment_id: segment.text for segment in segments}
        pairs = [(unit, texts[segment_id]) for segment_id, unit in matched.items()]
    return [
        TrainingExample(text, dict(unit.labels), weight, unit.document or label_file.path, "human")
        for unit, text in pairs
        if text and text.strip()
    ]


def weak_examples(segments: Sequence, rule_assignments: Iterable) -> list[TrainingExample]:
    """Rule-matched segments as low-weight positives for the matched code (only with --weak-labels)."""
    texts = {segment.segment_id: (segment.text, segment.doc_id) for segment in segments}
    return [
        TrainingExample(
            texts[a.segment_id][0], {a.code_id: 1}, WEAK_WEIGHT, texts[a.segment_id][1], "weak"
        )
        for a in rule_assignments
        if a.segment_id in texts
    ]
