"""Agreement measures, from scikit-learn and the ``krippendorff`` package, and coder comparison.

Agreement is counted per segment and code (a unit is one segment; a decision is "this code applies
to this segment or not"), never per character: character-level figures are inflated by uncoded text.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qualcode.errors import InputDataError
from qualcode.labels import LabelFile, LabelledUnit

UNIT_DESCRIPTION = "segment (one decision per segment and code)"
_SEGMENT_ID = re.compile(r"^(?P<document>.+):(?P<start>\d+)-(?P<end>\d+)$")


def percent_agreement(ratings: np.ndarray) -> float:
    """Share of units on which every coder gave the same value. ``ratings``: coders x units."""
    ratings = np.asarray(ratings)
    if ratings.shape[1] == 0:
        return float("nan")
    return float(np.mean(np.all(ratings == ratings[0], axis=0)))


def cohen_kappa(first: Sequence[int], second: Sequence[int]) -> float | None:
    """Cohen's kappa (scikit-learn); None where it is undefined (both coders used a single value)."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        value = cohen_kappa_score(first, second, labels=[0, 1])
    return None if np.isnan(value) else float(value)


def mean_pairwise_kappa(ratings: np.ndarray) -> float | None:
    """Cohen's kappa for two coders; for more, the mean over pairs (Light's kappa). None if undefined."""
    values = [
        cohen_kappa(ratings[i], ratings[j])
        for i in range(len(ratings))
        for j in range(i + 1, len(ratings))
    ]
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def krippendorff_alpha(ratings: np.ndarray, level: str = "nominal") -> float | None:
    """Krippendorff's alpha (the ``krippendorff`` package); NaN cells are missing ratings. None if undefined."""
    import krippendorff

    ratings = np.asarray(ratings, dtype=float)
    observed = ratings[~np.isnan(ratings)]
    if observed.size == 0 or np.unique(observed).size < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = krippendorff.alpha(reliability_data=ratings, level_of_measurement=level)
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True)
class Scores:
    """Machine (or one coder) against a reference, for one code or pooled."""

    units: int
    precision: float
    recall: float
    f1: float
    kappa: float | None
    alpha: float | None
    reference_prevalence: float
    predicted_prevalence: float


def binary_scores(reference: Sequence[int], predicted: Sequence[int]) -> Scores:
    from sklearn.metrics import precision_recall_fscore_support

    reference, predicted = np.asarray(reference, dtype=int), np.asarray(predicted, dtype=int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        reference, predicted, average="binary", zero_division=0
    )
    return Scores(
        units=len(reference),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        kappa=cohen_kappa(reference, predicted),
        alpha=krippendorff_alpha(np.vstack([reference, predicted])),
        reference_prevalence=float(reference.mean()) if len(reference) else 0.0,
        predicted_prevalence=float(predicted.mean()) if len(predicted) else 0.0,
    )


def macro_average(scores: Sequence[Scores]) -> Scores:
    def mean(values):
        values = [value for value in values if value is not None]
        return float(np.mean(values)) if values else None

    return Scores(
        units=scores[0].units if scores else 0,
        precision=mean([s.precision for s in scores]) or 0.0,
        recall=mean([s.recall for s in scores]) or 0.0,
        f1=mean([s.f1 for s in scores]) or 0.0,
        kappa=mean([s.kappa for s in scores]),
        alpha=mean([s.alpha for s in scores]),
        reference_prevalence=mean([s.reference_prevalence for s in scores]) or 0.0,
        predicted_prevalence=mean([s.predicted_prevalence for s in scores]) or 0.0,
    )


# --- comparing coders' files -------------------------------------------------------------------


@dataclass(frozen=True)
class CodeAgreement:
    code_id: str
    units: int
    percent: float
    kappa: float | None
    alpha: float | None
    prevalence: tuple[float, ...]


@dataclass(frozen=True)
class Disagreement:
    segment_id: str
    document: str | None
    text: str | None
    code_id: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class PairAgreement:
    """Two coders on every shared code, pooled: read one pair against the others to see who differs."""

    first: str
    second: str
    units: int
    percent: float
    kappa: float | None
    alpha: float | None


@dataclass(frozen=True)
class AgreementReport:
    coders: tuple[str, ...]
    files: tuple[str, ...]
    code_ids: tuple[str, ...]
    units: int
    per_code: tuple[CodeAgreement, ...]
    overall: CodeAgreement
    unmatched: dict[str, int] = field(default_factory=dict)
    codes_not_shared: tuple[str, ...] = ()
    disagreements: tuple[Disagreement, ...] = ()
    unit_description: str = UNIT_DESCRIPTION
    pairs: tuple[PairAgreement, ...] = ()
    warnings: tuple[str, ...] = ()


def kappa_reading(kappa: float | None) -> str:
    """Landis and Koch's (1977) words for a kappa."""
    if kappa is None:
        return "n/a"
    if kappa < 0:
        return "poor"
    for bound, words in (
        (0.20, "slight"),
        (0.40, "fair"),
        (0.60, "moderate"),
        (0.80, "substantial"),
    ):
        if kappa <= bound:
            return words
    return "almost perfect"


def alpha_reading(alpha: float | None) -> str:
    """Krippendorff's (2004) bars: .800 to rely on the data, .667 for tentative conclusions at most."""
    if alpha is None:
        return "n/a"
    if alpha >= 0.800:
        return "reliable"
    if alpha >= 0.667:
        return "tentative only"
    return "unreliable"


def unit_key(unit: LabelledUnit) -> tuple:
    """A key that matches a unit whether a file names it by segment id or by document and offsets."""
    if unit.document is not None and unit.start is not None and unit.end is not None:
        return (unit.document, unit.start, unit.end)
    parsed = _SEGMENT_ID.match(unit.segment_id or "")
    if parsed:
        return (parsed.group("document"), int(parsed.group("start")), int(parsed.group("end")))
    return ("id", unit.segment_id)


def _unique_names(files: Sequence[LabelFile]) -> tuple[str, ...]:
    names: list[str] = []
    for file in files:
        name, number = file.coder, 2
        while name in names:
            name, number = f"{file.coder}-{number}", number + 1
        names.append(name)
    return tuple(names)


def _agreement_for(code_id: str, ratings: np.ndarray) -> CodeAgreement:
    return CodeAgreement(
        code_id,
        ratings.shape[1],
        percent_agreement(ratings),
        mean_pairwise_kappa(ratings),
        krippendorff_alpha(ratings),
        tuple(float(row.mean()) if row.size else 0.0 for row in ratings),
    )


def compare_coders(files: Sequence[LabelFile]) -> AgreementReport:
    """Intercoder agreement per code and pooled over codes, on the units every coder labelled.

    Units are matched by segment id, else document + offsets; what cannot be matched is counted
    per coder in ``unmatched``, not silently dropped. Raises ``InputDataError`` when a file
    shares no unit or no code with the others.
    """
    if len(files) < 2:
        raise InputDataError("agreement needs at least two coders' files")
    coders = _unique_names(files)
    keyed = [{unit_key(unit): unit for unit in file.units} for file in files]
    common_keys = [key for key in keyed[0] if all(key in others for others in keyed[1:])]
    for file, units in zip(files[1:], keyed[1:]):
        if not any(key in units for key in keyed[0]):
            raise InputDataError(
                f"{file.path}: none of its {len(units)} rows labels a segment that {files[0].path} "
                "labels; the files must code the same segments (matched by segment_id, or "
                "document + start + end)"
            )
    if not common_keys:
        raise InputDataError(
            "no segment is labelled in every file; agreement needs shared segments"
        )
    shared_codes = tuple(
        code for code in files[0].code_ids if all(code in file.code_ids for file in files[1:])
    )
    if not shared_codes:
        raise InputDataError(f"{files[1].path}: shares no code column with {files[0].path}")
    all_codes = {code for file in files for code in file.code_ids}
    common = set(common_keys)
    unmatched = {
        coder: sum(1 for key in units if key not in common) for coder, units in zip(coders, keyed)
    }
    per_code = []
    pooled = []
    disagreements = []
    for code_index, code_id in enumerate(shared_codes):
        ratings = np.array(
            [[units[key].labels[code_id] for key in common_keys] for units in keyed], dtype=int
        )
        per_code.append(_agreement_for(code_id, ratings))
        pooled.append(ratings)
        for column in np.flatnonzero(~np.all(ratings == ratings[0], axis=0)):
            key = common_keys[column]
            first = keyed[0][key]
            text = next((units[key].text for units in keyed if units[key].text), None)
            segment_id = first.segment_id or f"{key[0]}:{key[1]}-{key[2]}"
            disagreements.append(
                (
                    column,
                    code_index,
                    Disagreement(
                        segment_id,
                        first.document or key[0],
                        text,
                        code_id,
                        tuple(int(value) for value in ratings[:, column]),
                    ),
                )
            )
    overall = _agreement_for("(all codes, pooled)", np.hstack(pooled))
    pairs = ()
    if len(files) > 2:
        everything = np.hstack(pooled)
        pairs = tuple(
            PairAgreement(
                coders[i],
                coders[j],
                everything.shape[1],
                percent_agreement(everything[[i, j]]),
                cohen_kappa(everything[i], everything[j]),
                krippendorff_alpha(everything[[i, j]]),
            )
            for i in range(len(files))
            for j in range(i + 1, len(files))
        )
    return AgreementReport(
        coders=coders,
        files=tuple(file.path for file in files),
        code_ids=shared_codes,
        units=len(common_keys),
        per_code=tuple(per_code),
        overall=overall,
        unmatched=unmatched,
        codes_not_shared=tuple(sorted(all_codes - set(shared_codes))),
        disagreements=tuple(
            item for _, _, item in sorted(disagreements, key=lambda entry: entry[:2])
        ),
        pairs=pairs,
        warnings=tuple(_trained_on_compared(files, coders, common_keys, keyed)),
    )


def _normalised(text: str | None) -> str:
    return " ".join((text or "").split())


def _texts_of(path: str, code_ids: Sequence[str]) -> set[str] | None:
    """The texts a label file or reviewed workbook gave the classifier; None if it cannot be read now."""
    from qualcode.errors import QualcodeError
    from qualcode.ingest.tables import read_table, xlsx_sheet_names

    try:
        file = Path(path)
        sheet = (
            "Segments"
            if file.suffix.lower() == ".xlsx" and "Segments" in xlsx_sheet_names(file)
            else None
        )
        _, rows = read_table(file, sheet)
        return {_normalised(row.values.get("text")) for row in rows}
    except (QualcodeError, OSError):
        return None


def _model_sources(file: LabelFile) -> list[tuple[str, set[str] | None]]:
    """What the classifier of a qualcode workbook learned from, by the Run sheet: (description, texts)."""
    run = file.run
    if run.get("option classifier", "").lower() != "true":
        return []
    sources: list[tuple[str, set[str] | None]] = []
    if run.get("option seed", "").lower() == "true":
        from qualcode.classify import seed_examples
        from qualcode.codebook import load_codebook

        default = load_codebook()
        if run.get("codebook name") == default.name:
            sources.append(
                (
                    "the seed set shipped with the default codebook (the sample corpus's gold)",
                    {_normalised(example.text) for example in seed_examples(default)},
                )
            )
    for option, what in (("option train", "--train"), ("option reviews", "--reviews")):
        for path in filter(None, (part.strip() for part in run.get(option, "none").split(", "))):
            if path != "none":
                sources.append((f"{what} {path}", _texts_of(path, file.code_ids)))
    study = run.get("option study", "none")
    if study != "none":
        sources.append((f"the decisions stored in the study {study}", _study_texts(study)))
    return sources


def _study_texts(root: str) -> set[str] | None:
    from qualcode.errors import QualcodeError
    from qualcode.study import Study

    try:
        with Study.open(root) as study:
            return {_normalised(decision.text) for decision in study.decisions()}
    except QualcodeError:
        return None


def _trained_on_compared(
    files: Sequence[LabelFile], coders: Sequence[str], common_keys: list, keyed: list[dict]
) -> list[str]:
    """Warn where a qualcode workbook's classifier was trained on the segments it is compared on.

    Its agreement there measures how well it remembers its training labels, not how it codes
    text it has not seen: ``qualcode evaluate`` measures that, on held-out documents.
    """
    warnings_found = []
    for file, coder, units in zip(files, coders, keyed):
        if not file.written_by_qualcode:
            continue
        compared = [_normalised(units[key].text) for key in common_keys]
        for description, texts in _model_sources(file):
            if texts is None:
                warnings_found.append(
                    f"{coder} ({file.path}): its classifier was trained on {description}, which "
                    "cannot be read now to check whether it holds the compared segments"
                )
                continue
            seen = sum(1 for text in compared if text and text in texts)
            if seen:
                warnings_found.append(
                    f"{coder} ({file.path}): its classifier was trained on {seen} of the {len(compared)} compared "
                    f"segments, from {description}; its agreement there is inflated. Run qualcode evaluate for "
                    "agreement on documents it was not trained on"
                )
    return warnings_found
