"""Machine coding against a human gold standard: rules alone, classifier alone, and combined.

The gold also trains the classifier, so it is evaluated by K-fold cross-validation grouped by
document: a fold's test documents never contribute a segment to its training data. Seed examples
whose text is one of the evaluated segments are left out for the same reason.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from qualcode.agreement import Scores, binary_scores, macro_average
from qualcode.classify import TrainingExample
from qualcode.coding import CodingOptions, match_rules
from qualcode.combine import DEFAULT_SUGGEST_AT, combine
from qualcode.errors import InputDataError
from qualcode.labels import LabelFile, match_units
from qualcode.llm.policy import with_llm
from qualcode.llm.run import ask_model
from qualcode.models import COUNTED_STATUSES, Codebook, Corpus, Segment
from qualcode.rules import compile_rules, rule_labels
from qualcode.segment import build_pipeline, segment_documents
from qualcode.semantic import (
    DEFAULT_REPRESENTATION,
    corpus_examples,
    default_embedding_cache,
    encoder_for,
)
from qualcode.semantic import new_classifier as make_classifier
from qualcode.training import training_examples

logger = logging.getLogger(__name__)

METHODS = ("rules", "classifier", "combined")
LEARNING_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
THRESHOLD_GRID = tuple(round(0.05 * step, 2) for step in range(2, 19))  # 0.10 ... 0.90
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class RuleDiagnostic:
    code_id: str
    rule: str
    hits: int
    correct: int
    wrong_segments: tuple[str, ...]
    flagged: bool

    @property
    def precision(self) -> float | None:
        return self.correct / self.hits if self.hits else None


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    mean_confidence: float | None
    observed: float | None


@dataclass(frozen=True)
class EvaluatedSegment:
    segment: Segment
    gold: tuple[str, ...]
    machine: tuple[str, ...]
    evidence: str


@dataclass(frozen=True)
class EvaluationReport:
    code_ids: tuple[str, ...]
    segments: int
    documents: int
    folds: int
    unmatched_gold_rows: int
    scores: dict[str, dict[str, Scores]]
    macro: dict[str, Scores]
    calibration: tuple[CalibrationBin, ...]
    learning_curve: tuple[tuple[float, int, float], ...]
    rules: tuple[RuleDiagnostic, ...]
    evaluated: tuple[EvaluatedSegment, ...]
    seed_left_out: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    group_by: str = "document"
    groups: int = 0
    representation: str = DEFAULT_REPRESENTATION
    # The probability at which the classifier suggests a code (the policy's, before per-code ones).
    threshold: float = DEFAULT_SUGGEST_AT
    # Codes suggested at thresholds of their own (the model's, the codebook's or set), code -> threshold.
    code_thresholds: dict[str, float] = field(default_factory=dict)
    # code -> (threshold, combined alpha there, combined alpha at the run's threshold)
    suggested_thresholds: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # The methods scored; with a language model also "llm" (the model alone) and "rules + classifier".
    methods: tuple[str, ...] = METHODS

    @property
    def disagreements(self) -> tuple[EvaluatedSegment, ...]:
        return tuple(item for item in self.evaluated if set(item.gold) != set(item.machine))


def _matrix(segments: Sequence[Segment], assignments, code_ids: Sequence[str]) -> np.ndarray:
    rows = {segment.segment_id: index for index, segment in enumerate(segments)}
    matrix = np.zeros((len(segments), len(code_ids)), dtype=int)
    columns = {code_id: index for index, code_id in enumerate(code_ids)}
    for assignment in assignments:
        if assignment.status in COUNTED_STATUSES and assignment.code_id in columns:
            matrix[rows[assignment.segment_id], columns[assignment.code_id]] = 1
    return matrix


def fold_groups(corpus: Corpus, segments: list[Segment], group_by: str) -> list[str]:
    """The group of each segment that cross-validation keeps within one fold."""
    if group_by == "document":
        return [segment.doc_id for segment in segments]
    if group_by == "folder":
        return [segment.doc_id.rpartition("/")[0] for segment in segments]
    attributes = {document.doc_id: document.attributes for document in corpus.documents}
    missing = sorted(
        {segment.doc_id for segment in segments if group_by not in attributes[segment.doc_id]}
    )
    if missing:
        raise InputDataError(
            f"--group-by {group_by}: document {missing[0]} has no attribute '{group_by}' "
            "(use document, folder, or a column every document has)"
        )
    return [str(attributes[segment.doc_id][group_by]) for segment in segments]


def _group_folds(groups: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold

    distinct = len(set(groups))
    if distinct < 2:
        raise InputDataError(
            "the gold labels cover a single document; cross-validation needs at least two"
        )
    splitter = GroupKFold(n_splits=min(folds, distinct))
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def _train(
    new_classifier, code_ids, base: list[TrainingExample], segments, gold: np.ndarray, rows, groups
):
    human = [
        TrainingExample(
            segments[row].text, dict(zip(code_ids, map(int, gold[row]))), 1.0, str(groups[row])
        )
        for row in rows
    ]
    return new_classifier().fit(base + human)


def _calibration(probabilities: np.ndarray, gold: np.ndarray) -> tuple[CalibrationBin, ...]:
    known = ~np.isnan(probabilities)
    values, truth = probabilities[known], gold[known]
    bins = []
    for index in range(CALIBRATION_BINS):
        low, high = index / CALIBRATION_BINS, (index + 1) / CALIBRATION_BINS
        inside = (values >= low) & (
            (values < high) if index < CALIBRATION_BINS - 1 else (values <= high)
        )
        count = int(inside.sum())
        bins.append(
            CalibrationBin(
                low,
                high,
                count,
                float(values[inside].mean()) if count else None,
                float(truth[inside].mean()) if count else None,
            )
        )
    return tuple(bins)


def evaluate(
    corpus: Corpus,
    codebook: Codebook,
    gold: LabelFile,
    *,
    options: CodingOptions = CodingOptions(),
    folds: int = 5,
    min_rule_precision: float = 0.5,
    learning_curve: bool = True,
    group_by: str = "document",
    representation: str = DEFAULT_REPRESENTATION,
    embedding_cache=None,
    nlp=None,
    llm=None,
) -> EvaluationReport:
    """Score rules, classifier and their combination against ``gold``, per code and macro-averaged.

    Folds are grouped by ``group_by``: ``document``, ``folder`` (the folder holding the document,
    e.g. one per participant or source) or the name of a document attribute (a survey column), so
    that the classifier is always scored on groups it was not trained on. ``representation``
    chooses what the classifier reads (``semantic.REPRESENTATIONS``: n-grams, sentence
    embeddings, or both); embeddings are kept in ``embedding_cache`` (default: the user cache).
    With ``options.llm``, the language model is scored alone (method ``llm``) and ``combined`` is the
    policy of ``qualcode code --llm`` (``llm.policy``), beside rules and classifier without it; the
    model learns nothing from the gold, so it is asked once about every segment. ``llm`` is the
    ``llm.coder.LlmCoder`` to ask (its key, answer cache and progress), as for ``coding.code_corpus``.
    """
    nlp = nlp if nlp is not None else build_pipeline(options.spacy_model)
    segments_all = segment_documents(
        corpus.documents, unit=options.unit, nlp=nlp, interviewer_labels=options.interviewer_labels
    )
    matched, unmatched = match_units(gold.units, segments_all)
    if not matched:
        raise InputDataError(
            f"{gold.path}: none of its {len(gold.units)} rows matches a segment of the inputs "
            "(by segment_id, or document + start + end); code the same files at the same --unit"
        )
    if unmatched:
        logger.warning(
            "%s: %d of %d gold rows match no segment (first: %s) and are left out",
            gold.path,
            len(unmatched),
            len(gold.units),
            unmatched[0].place,
        )
    code_ids = tuple(code_id for code_id in codebook.code_ids if code_id in gold.code_ids)
    segments = [segment for segment in segments_all if segment.segment_id in matched]
    truth = np.array(
        [[matched[s.segment_id].labels[code_id] for code_id in code_ids] for s in segments],
        dtype=int,
    )
    groups = np.array(fold_groups(corpus, segments, group_by))

    rule_assignments = match_rules(segments, compile_rules(codebook, nlp))
    rules_matrix = _matrix(segments, rule_assignments, code_ids)
    answers, llm_record = None, {}
    if options.llm is not None:
        answers = ask_model(options.llm, llm, codebook, segments_all, segments, llm_record)

    evaluated_texts = {segment.text for segment in segments}
    base_all = training_examples(codebook, options)
    base = [
        example
        for example in base_all
        if not (example.origin == "seed" and example.text in evaluated_texts)
    ]
    seed_left_out = len(base_all) - len(base)

    # The policy of a run over this representation: its own default threshold unless one is set.
    policy = replace(options, representation=representation).policy(codebook)
    split = _group_folds(groups, folds)
    notes = []
    prior = None
    if representation != "ngrams":
        if options.seed:
            # Real passages the default model knows as vectors: never those being evaluated.
            evaluated = frozenset(
                hashlib.sha1(text.encode("utf-8")).hexdigest() for text in evaluated_texts
            )
            prior = corpus_examples(codebook, leave_out=evaluated)
            shipped = corpus_examples(codebook)[0]
            if len(shipped) > len(prior[0]):
                notes.append(
                    f"{len(shipped) - len(prior[0])} passages of the development corpus that are evaluated "
                    "segments were left out of training; the encoder's adapter learnt from them too, "
                    "so these figures flatter the model (--no-seed reads the upstream encoder)."
                )
        if embedding_cache is None:
            embedding_cache = default_embedding_cache(encoder_for(prior))

    def new_classifier():
        # The run's pipeline: n-grams are tokenized as the rules tokenize, and no fold builds its own.
        # A fold's embedding model is kept in the model cache, as a coding run's is: evaluate is run
        # again after each change to the rules, and the folds' training data have not changed.
        return make_classifier(
            representation,
            code_ids,
            nlp,
            cache=embedding_cache,
            prior=prior,
            model_cache=options.model_cache,
        )

    probabilities = np.full(truth.shape, np.nan)
    combined_matrix = np.zeros_like(truth)
    without_llm_matrix = np.zeros_like(truth)
    machine_assignments = []
    for train_rows, test_rows in split:
        classifier = _train(new_classifier, code_ids, base, segments, truth, train_rows, groups)
        test_segments = [segments[row] for row in test_rows]
        features = classifier.transform([segment.text for segment in test_segments])
        fold_probabilities = classifier.probabilities(features)
        probabilities[test_rows] = fold_probabilities
        test_ids = {segment.segment_id for segment in test_segments}
        fold_rules = [
            assignment for assignment in rule_assignments if assignment.segment_id in test_ids
        ]
        merged = combine(
            test_segments,
            fold_rules,
            fold_probabilities,
            code_ids,
            policy,
            lambda pairs, classifier=classifier, features=features: classifier.explain_rows(
                features, pairs
            ),
        )
        without_llm_matrix[test_rows] = _matrix(test_segments, merged, code_ids)
        if answers is not None:
            merged = with_llm(test_segments, merged, answers, code_ids, options.llm.model)
        machine_assignments.extend(merged)
        combined_matrix[test_rows] = _matrix(test_segments, merged, code_ids)

    thresholds = np.array([policy.threshold(code_id) for code_id in code_ids])
    classifier_matrix = (np.nan_to_num(probabilities, nan=-1.0) >= thresholds).astype(int)
    matrices = {"rules": rules_matrix, "classifier": classifier_matrix, "combined": combined_matrix}
    methods = METHODS
    if answers is not None:
        methods = ("rules", "classifier", "llm", "rules + classifier", "combined")
        matrices["llm"] = np.array(
            [
                [int(code_id in applied) for code_id in code_ids]
                for applied in (_applied(answers.get(s.segment_id)) for s in segments)
            ],
            dtype=int,
        )
        matrices["rules + classifier"] = without_llm_matrix
        unusable = sum(
            1 for s in segments if s.segment_id not in answers or not answers[s.segment_id].usable
        )
        notes.append(
            f"Language model {options.llm.model} at {options.llm.endpoint}: {llm_record['llm answers']}. "
            "'llm' scores the model alone (no answer counts as not coded"
            + (f": {unusable} segments" if unusable else "")
            + "); 'combined' is the policy of "
            "qualcode code --llm, its judgement first, rules and classifier where it gave none."
        )
    scores = {
        method: {
            code_id: binary_scores(truth[:, column], matrices[method][:, column])
            for column, code_id in enumerate(code_ids)
        }
        for method in methods
    }
    macro = {method: macro_average(list(per_code.values())) for method, per_code in scores.items()}

    suggested = _best_thresholds(
        segments,
        rule_assignments,
        probabilities,
        code_ids,
        policy,
        truth,
        {
            code_id: scores.get("rules + classifier", scores["combined"])[code_id].alpha
            for code_id in code_ids
        },
    )
    curve = (
        _learning_curve(
            new_classifier, code_ids, base, segments, truth, split, rule_assignments, policy, groups
        )
        if learning_curve
        else ()
    )
    evidence = {}
    for assignment in machine_assignments:
        if assignment.status in COUNTED_STATUSES:
            evidence.setdefault(assignment.segment_id, []).append(
                f"{assignment.code_id}: {assignment.evidence_text}"
            )
    evaluated = tuple(
        EvaluatedSegment(
            segment,
            tuple(code_id for column, code_id in enumerate(code_ids) if truth[row, column]),
            tuple(
                code_id for column, code_id in enumerate(code_ids) if combined_matrix[row, column]
            ),
            " | ".join(evidence.get(segment.segment_id, [])),
        )
        for row, segment in enumerate(segments)
    )
    missing = [code_id for code_id in codebook.code_ids if code_id not in code_ids]
    if missing:
        notes.append(
            f"the gold has no column for {', '.join(missing)}; those codes are not evaluated"
        )
    return EvaluationReport(
        code_ids=code_ids,
        segments=len(segments),
        documents=len({segment.doc_id for segment in segments}),
        folds=len(split),
        unmatched_gold_rows=len(unmatched),
        scores=scores,
        macro=macro,
        calibration=_calibration(probabilities, truth),
        learning_curve=curve,
        rules=_rule_diagnostics(
            codebook, code_ids, segments, truth, rule_assignments, min_rule_precision
        ),
        evaluated=evaluated,
        seed_left_out=seed_left_out,
        notes=tuple(notes),
        group_by=group_by,
        groups=len(set(groups)),
        representation=representation,
        threshold=policy.suggest_at,
        code_thresholds=dict(policy.per_code),
        suggested_thresholds=suggested,
        methods=methods,
    )


def _applied(answer) -> set[str]:
    """The codes a usable answer of the language model says apply."""
    if answer is None or not answer.usable:
        return set()
    return {code_id for code_id, verdict in answer.codes.items() if verdict.applies}


def _best_thresholds(
    segments, rule_assignments, probabilities, code_ids, policy, truth, current_alpha
):
    """Per code, the classifier threshold at which the combined coding agrees best with the gold.

    Chosen on the same held-out probabilities it is scored on, so the gain is optimistic: a
    starting point for the codebook's ``threshold``, to be checked on other data.
    """
    from qualcode.combine import Policy

    if np.isnan(probabilities).all():
        return {}
    current = {code_id: policy.threshold(code_id) for code_id in code_ids}
    alphas = {}
    for threshold in THRESHOLD_GRID:
        trial = Policy(suggest_at=threshold, veto_below=policy.veto_below)
        matrix = _matrix(
            segments, combine(segments, rule_assignments, probabilities, code_ids, trial), code_ids
        )
        for column, code_id in enumerate(code_ids):
            alphas[code_id, threshold] = binary_scores(truth[:, column], matrix[:, column]).alpha
    best = {}
    for code_id in code_ids:
        scored = [
            (alphas[code_id, threshold], -abs(threshold - current[code_id]), threshold)
            for threshold in THRESHOLD_GRID
            if not math.isnan(alphas[code_id, threshold])
        ]
        if scored:
            alpha, _, threshold = max(scored)
            best[code_id] = (threshold, alpha, current_alpha[code_id])
    return best


def _learning_curve(
    new_classifier, code_ids, base, segments, truth, split, rule_assignments, policy, groups
):
    """Combined macro F1 after training on a growing share of each fold's training documents."""
    rng = np.random.default_rng(0)
    by_segment: dict[str, list] = {}
    for assignment in rule_assignments:
        by_segment.setdefault(assignment.segment_id, []).append(assignment)
    curve = []
    for fraction in LEARNING_FRACTIONS:
        predicted = np.zeros_like(truth)
        documents_used = 0
        for train_rows, test_rows in split:
            documents = sorted({segments[row].doc_id for row in train_rows})
            keep = set(rng.permutation(documents)[: max(1, math.ceil(fraction * len(documents)))])
            documents_used += len(keep)
            rows = [row for row in train_rows if segments[row].doc_id in keep]
            classifier = _train(new_classifier, code_ids, base, segments, truth, rows, groups)
            test_segments = [segments[row] for row in test_rows]
            fold_rules = [a for s in test_segments for a in by_segment.get(s.segment_id, [])]
            merged = combine(
                test_segments,
                fold_rules,
                classifier.predict_proba([s.text for s in test_segments]),
                code_ids,
                policy,
            )
            predicted[test_rows] = _matrix(test_segments, merged, code_ids)
        f1 = macro_average(
            [binary_scores(truth[:, c], predicted[:, c]) for c in range(len(code_ids))]
        ).f1
        curve.append((fraction, round(documents_used / len(split)), f1))
    return tuple(curve)


def _rule_diagnostics(codebook, code_ids, segments, truth, rule_assignments, min_precision):
    rows = {segment.segment_id: index for index, segment in enumerate(segments)}
    hits: dict[tuple[str, str], list[str]] = {}
    for assignment in rule_assignments:
        for rule in dict.fromkeys(item.rule for item in assignment.evidence):
            hits.setdefault((assignment.code_id, rule), []).append(assignment.segment_id)
    diagnostics = []
    for code in codebook.codes:
        if code.code_id not in code_ids:
            continue
        column = code_ids.index(code.code_id)
        for rule in rule_labels(code):
            segment_ids = hits.get((code.code_id, rule), [])
            wrong = tuple(
                segment_id for segment_id in segment_ids if not truth[rows[segment_id], column]
            )
            correct = len(segment_ids) - len(wrong)
            flagged = bool(segment_ids) and correct / len(segment_ids) < min_precision
            diagnostics.append(
                RuleDiagnostic(code.code_id, rule, len(segment_ids), correct, wrong, flagged)
            )
    return tuple(diagnostics)
