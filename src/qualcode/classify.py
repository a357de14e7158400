"""The scikit-learn classifier: one calibrated binary model per code over shared TF-IDF features.

Training data comes as ``TrainingExample``s, each knowing only the labels someone actually gave:
a gold or reviewed segment knows every code; a codebook example knows only its own code. Each
code's model trains on the examples that carry a label for it. Nothing is pickled: the model is
rebuilt from labelled data on every run (seconds for thousands of segments), so the same data
always gives the same model.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

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
            examples.append(TrainingExample(text, {code.code_id: 1}, EXAMPLE_WEIGHT, f"codebook:{code.code_id}", "example"))
        for text in code.negative_examples:
            examples.append(TrainingExample(text, {code.code_id: 0}, EXAMPLE_WEIGHT, f"codebook:{code.code_id}", "example"))
    return examples


@lru_cache(maxsize=1)
def _default_codebook_identity() -> tuple[str, tuple[str, ...]]:
    from qualcode.codebook import load_codebook

    default = load_codebook()
    return default.name, default.code_ids


def seed_examples(codebook: Codebook) -> list[TrainingExample]:
    """The hand-coded sample corpus shipped with the default codebook; empty for any other codebook."""
    name, code_ids = _default_codebook_identity()
    if codebook.name != name:
        return []
    data = resources.files("qualcode") / "data" / SEED_FILE
    shared = [code_id for code_id in code_ids if code_id in codebook.code_ids]
    with data.open("r", encoding="utf-8", newline="") as handle:
        return [
            TrainingExample(row["text"], {code_id: int(row[code_id]) for code_id in shared}, SEED_WEIGHT,
                            f"seed:{row['document']}", "seed")
            for row in csv.DictReader(handle)
        ]


def _only_stop_words(ngram: str) -> bool:
    """Function words help the model but explain nothing to a researcher, so evidence leaves them out."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return all(word in ENGLISH_STOP_WORDS for word in ngram.split())


def _content_mask(names) -> np.ndarray:
    return np.array([not _only_stop_words(name) for name in names], dtype=bool)


def _default_vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, strip_accents="unicode",
                           token_pattern=r"(?u)\b\w[\w']*\b")


def _base_model():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=4.0, class_weight="balanced", solver="liblinear", max_iter=1000)


def _platt_calibrator(features, labels: np.ndarray, weights: np.ndarray, groups: np.ndarray, real: np.ndarray):
    """Platt scaling fitted on out-of-fold scores, with folds grouped by document.

    Grouping matters: segments of one interview share words, so folds that split a document
    would make held-out scores look surer than they are on a new document. Returns the scaling
    and the fold models: predictions average the scaled fold models, whose scores are the ones
    the scaling was fitted on (scaling the full model's larger scores instead was over-confident
    by 0.2 in the middle of the range on the sample). None when there are too few groups or
    examples to hold any out. Codebook examples are cleaner than real segments, so the scaling is
    fitted on real segments when there are enough of them.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    folds = min(CALIBRATION_FOLDS, len(set(groups)), int(labels.sum()), int(len(labels) - labels.sum()))
    if folds < 2:
        return None
    scores = np.zeros(len(labels))
    fold_models = []
    for train, held_out in StratifiedGroupKFold(folds).split(features, labels, groups):
        if len(set(labels[train])) < 2:
            return None
        fold_model = _base_model().fit(features[train], labels[train], sample_weight=weights[train])
        scores[held_out] = fold_model.decision_function(features[held_out])
        fold_models.append(fold_model)
    use = real if labels[real].sum() >= MIN_PER_CLASS and (1 - labels[real]).sum() >= MIN_PER_CLASS else np.ones_like(real)
    calibrator = LogisticRegression(C=1e4).fit(scores[use].reshape(-1, 1), labels[use], sample_weight=weights[use])
    # Held-out scores that do not rise with the label mean too little data to calibrate; never invert the model.
    return (calibrator, fold_models) if calibrator.coef_[0, 0] > 0 else None


class CodeClassifier:
    """Multi-label classifier: ``fit(examples)`` then ``predict_proba(texts)`` -> array (texts x codes).

    A code without at least two positive and two negative examples has no model; its column is NaN.
    Probabilities are calibrated by Platt scaling on out-of-fold scores (see ``_platt_calibrator``).
    """

    def __init__(self, code_ids: Sequence[str]):
        self.code_ids = tuple(code_ids)

    def fit(self, examples: Sequence[TrainingExample]) -> CodeClassifier:
        examples = [example for example in examples if example.text.strip()]
        self.vectorizer_ = _default_vectorizer()
        matrix = self.vectorizer_.fit_transform([example.text for example in examples]) if examples else None
        self.models_: dict[str, tuple[object, object | None]] = {}
        self.training_counts_: dict[str, tuple[int, int]] = {}
        for code_id in self.code_ids:
            rows = [index for index, example in enumerate(examples) if code_id in example.labels]
            labels = np.array([examples[index].labels[code_id] for index in rows], dtype=int)
            positives, negatives = int(labels.sum()), int(len(labels) - labels.sum())
            self.training_counts_[code_id] = (positives, negatives)
            if positives < MIN_PER_CLASS or negatives < MIN_PER_CLASS:
                logger.info("code %s: %d positive and %d negative examples; too few to train", code_id, positives, negatives)
                continue
            features = matrix[rows]
            weights = np.array([examples[index].weight for index in rows])
            groups = np.array([examples[index].group or str(index) for index in rows])
            real = np.array([examples[index].origin != "example" for index in rows])
            model = _base_model().fit(features, labels, sample_weight=weights)
            self.models_[code_id] = (model, _platt_calibrator(features, labels, weights, groups, real))
        self.feature_names_ = self.vectorizer_.get_feature_names_out() if examples else np.array([])
        self.content_features_ = _content_mask(self.feature_names_)
        return self

    @property
    def trained_codes(self) -> tuple[str, ...]:
        return tuple(code_id for code_id in self.code_ids if code_id in self.models_)

    def transform(self, texts: Sequence[str]):
        return self.vectorizer_.transform(list(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.probabilities(self.transform(texts))

    def probabilities(self, features) -> np.ndarray:
        """Calibrated probabilities (texts x codes) for texts already transformed; NaN for untrained codes."""
        result = np.full((features.shape[0], len(self.code_ids)), np.nan)
        if features.shape[0] == 0:
            return result
        for column, code_id in enumerate(self.code_ids):
            if code_id in self.models_:
                model, calibration = self.models_[code_id]
                if calibration is None:
                    result[:, column] = model.predict_proba(features)[:, 1]
                else:
                    calibrator, fold_models = calibration
                    result[:, column] = np.mean([calibrator.predict_proba(fold.decision_function(features).reshape(-1, 1))[:, 1]
                                                 for fold in fold_models], axis=0)
        return result

    def explain(self, features, row: int, code_id: str, top: int = 4) -> list[tuple[str, float]]:
        """The content n-grams of text ``row`` of a transformed batch that pushed it most towards ``code_id``."""
        coef = self.models_[code_id][0].coef_.ravel()
        # Straight from the CSR arrays: slicing a row object costs more than the arithmetic.
        begin, end = features.indptr[row], features.indptr[row + 1]
        indices, values = features.indices[begin:end], features.data[begin:end]
        weights = values * coef[indices]
        keep = (weights > 0) & self.content_features_[indices]
        indices, weights = indices[keep], weights[keep]
        names = self.feature_names_[indices]
        order = np.lexsort((names, -weights))[:top]
        return [(str(names[i]), float(weights[i])) for i in order]


def examples_from_labels(label_file, segments: Sequence | None = None, *, weight: float = HUMAN_WEIGHT) -> list[TrainingExample]:
    """Training examples from a label file: its text column, else the text of the segments it matches."""
    from qualcode.errors import InputDataError
    from qualcode.labels import match_units

    if all(unit.text is not None for unit in label_file.units):
        pairs = [(unit, unit.text) for unit in label_file.units]
    else:
        matched, _ = match_units(label_file.units, segments or ())
        if not matched:
            raise InputDataError(f"{label_file.path}: has no text column and none of its rows matches a segment "
                                 "of the inputs by segment_id or document/start/end")
        texts = {segment.segment_id: segment.text for segment in segments}
        pairs = [(unit, texts[segment_id]) for segment_id, unit in matched.items()]
    return [TrainingExample(text, dict(unit.labels), weight, unit.document or label_file.path, "human")
            for unit, text in pairs if text and text.strip()]


def weak_examples(segments: Sequence, rule_assignments: Iterable) -> list[TrainingExample]:
    """Rule-matched segments as low-weight positives for the matched code (only with --weak-labels)."""
    texts = {segment.segment_id: (segment.text, segment.doc_id) for segment in segments}
    return [TrainingExample(texts[a.segment_id][0], {a.code_id: 1}, WEAK_WEIGHT, texts[a.segment_id][1], "weak")
            for a in rule_assignments if a.segment_id in texts]
