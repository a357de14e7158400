"""Evaluation and agreement reports: as readable text for the terminal and as workbook tables."""

from __future__ import annotations

import os
from pathlib import Path

from qualcode.agreement import AgreementReport, Scores, alpha_reading, kappa_reading
from qualcode.evaluate import EvaluationReport
from qualcode.export.atomic import atomic_file
from qualcode.export.tables import Table
from qualcode.export.xlsx import write_tables


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(value: float | None, digits: int = 3):
    return None if value is None else round(value, digits)


def _score_line(name: str, scores: Scores) -> str:
    return (
        f"{name:<22} {100 * scores.reference_prevalence:5.1f}% {100 * scores.predicted_prevalence:6.1f}%"
        f" {_number(scores.precision):>5} {_number(scores.recall):>5} {_number(scores.f1):>5}"
        f" {_number(scores.kappa):>6} {_number(scores.alpha):>6}"
    )


_READS = {
    "ngrams": "words and word pairs (n-grams)",
    "embeddings": "sentence embeddings (all-mpnet-base-v2)",
    "both": "n-grams and sentence embeddings (the mean of the two models' probabilities)",
}


def _grouping(report) -> str:
    if report.group_by == "document":
        return "document"
    named = "folder" if report.group_by == "folder" else f"'{report.group_by}'"
    return f"{named} ({report.groups} groups)"


def _thresholds(report: EvaluationReport) -> str:
    """Where the classifier suggests a code: one probability, each code's own, or both."""
    if not report.code_thresholds:
        return f"at probability {report.threshold:g}"
    own = ", ".join(f"{code} {value:g}" for code, value in report.code_thresholds.items())
    if set(report.code_thresholds) >= set(report.code_ids):
        return f"at each code's own probability ({own})"
    return f"at probability {report.threshold:g} ({own})"


def format_evaluation(report: EvaluationReport) -> str:
    lines = [
        f"Evaluated {report.segments} segments in {report.documents} documents against the gold; "
        f"{report.folds}-fold cross-validation grouped by {_grouping(report)} (a fold never trains on the "
        f"{'documents' if report.group_by == 'document' else 'groups'} it tests). "
        f"The classifier reads {_READS[report.representation]} and suggests a code "
        f"{_thresholds(report)}.",
    ]
    if report.seed_left_out:
        lines.append(
            f"{report.seed_left_out} seed examples that are evaluated segments were left out of training."
        )
    if report.unmatched_gold_rows:
        lines.append(
            f"{report.unmatched_gold_rows} gold rows matched no segment and were left out."
        )
    lines.extend(report.notes)
    header = f"{'code':<22} {'gold':>6} {'machine':>7} {'P':>5} {'R':>5} {'F1':>5} {'kappa':>6} {'alpha':>6}"
    for method in report.methods:
        lines += ["", f"{method}", header]
        lines += [
            _score_line(code_id, report.scores[method][code_id]) for code_id in report.code_ids
        ]
        lines.append(_score_line("macro average", report.macro[method]))
    lines += [
        "",
        "Calibration of classifier confidence (all codes, held-out folds)",
        f"{'confidence':<12} {'n':>5} {'mean':>6} {'observed':>9}",
    ]
    for bin_ in report.calibration:
        if bin_.count:
            lines.append(
                f"{bin_.low:.1f}-{bin_.high:.1f}      {bin_.count:>5} {_number(bin_.mean_confidence):>6}"
                f" {_number(bin_.observed):>9}"
            )
    if report.learning_curve:
        lines += ["", "Learning curve (combined macro F1 by share of training documents per fold)"]
        lines += [
            f"{100 * fraction:>5.0f}%  ({documents} documents)  F1 {f1:.3f}"
            for fraction, documents, f1 in report.learning_curve
        ]
    if report.suggested_thresholds:
        lines += [
            "",
            "Classifier thresholds that agree best with the gold (chosen on these same folds, so the gain is "
            "optimistic; try them on other data)",
            f"{'code':<22} {'threshold':>9} {'alpha there':>12} {'alpha now':>10}",
        ]
        lines += [
            f"{code_id:<22} {threshold:>9.2f} {_number(best):>12} {_number(now):>10}"
            for code_id, (threshold, best, now) in report.suggested_thresholds.items()
        ]
        lines.append(
            "Set one in the codebook (threshold: 0.25 under the code) or for a run (--threshold CODE=0.25)."
        )
    flagged = [rule for rule in report.rules if rule.flagged]
    lines += [
        "",
        f"Rules below the precision floor: {len(flagged)} of {sum(1 for r in report.rules if r.hits)} that fired",
    ]
    lines += [
        f"  {rule.code_id}: {rule.rule}  precision {rule.correct}/{rule.hits}" for rule in flagged
    ]
    return "\n".join(lines)


def format_representations(reports: list[EvaluationReport]) -> str:
    """Krippendorff's alpha per code of the classifier alone and combined with the rules, for each representation."""
    names = [report.representation for report in reports]
    header = f"{'code':<22}" + "".join(
        f" {name + ' ' + method:>24}" for method in ("classifier", "combined") for name in names
    )
    lines = ["Representations compared (Krippendorff's alpha, held-out folds)", header]
    for code_id in [*reports[0].code_ids, None]:
        cells = []
        for method in ("classifier", "combined"):
            for report in reports:
                scores = report.macro[method] if code_id is None else report.scores[method][code_id]
                cells.append(f" {_number(scores.alpha):>24}")
        lines.append(f"{code_id or 'macro average':<22}" + "".join(cells))
    if all(report.learning_curve for report in reports):
        lines += [
            "",
            "Learning curve (combined macro F1 by share of training documents per fold)",
            f"{'share':>6}" + "".join(f" {name:>12}" for name in names),
        ]
        for step, (fraction, _, _) in enumerate(reports[0].learning_curve):
            lines.append(
                f"{100 * fraction:>5.0f}%"
                + "".join(f" {report.learning_curve[step][2]:>12.3f}" for report in reports)
            )
    return "\n".join(lines)


def evaluation_tables(report: EvaluationReport) -> list[Table]:
    metrics = [
        (
            method,
            code_id,
            scores.units,
            _cell(scores.reference_prevalence),
            _cell(scores.predicted_prevalence),
            _cell(scores.precision),
            _cell(scores.recall),
            _cell(scores.f1),
            _cell(scores.kappa),
            _cell(scores.alpha),
        )
        for method in report.methods
        for code_id, scores in [*report.scores[method].items(), ("(macro)", report.macro[method])]
    ]
    calibration = [
        (round(b.low, 1), round(b.high, 1), b.count, _cell(b.mean_confidence), _cell(b.observed))
        for b in report.calibration
    ]
    curve = [(fraction, documents, _cell(f1)) for fraction, documents, f1 in report.learning_curve]
    rules = [
        (
            rule.code_id,
            rule.rule,
            rule.hits,
            rule.correct,
            _cell(rule.precision),
            "yes" if rule.flagged else None,
            "\n".join(rule.wrong_segments) or None,
        )
        for rule in report.rules
    ]
    disagreements = [
        (
            item.segment.segment_id,
            item.segment.doc_id,
            item.segment.speaker,
            item.segment.text,
            "; ".join(item.gold) or None,
            "; ".join(item.machine) or None,
            item.evidence or None,
        )
        for item in report.disagreements
    ]
    return [
        Table(
            "Metrics",
            (
                "method",
                "code",
                "segments",
                "gold prevalence",
                "machine prevalence",
                "precision",
                "recall",
                "f1",
                "kappa",
                "alpha",
            ),
            metrics,
        ),
        Table(
            "Calibration",
            ("from", "to", "suggestions", "mean confidence", "observed share correct"),
            calibration,
        ),
        Table(
            "Learning curve",
            ("share of training documents", "documents per fold", "combined macro f1"),
            curve,
        ),
        Table(
            "Rules",
            ("code", "rule", "hits", "correct", "precision", "below floor", "wrong segments"),
            rules,
            text_columns=("wrong segments",),
        ),
        Table(
            "Disagreements",
            (
                "segment_id",
                "document",
                "speaker",
                "text",
                "gold codes",
                "machine codes",
                "evidence",
            ),
            disagreements,
            text_columns=("text", "evidence"),
        ),
    ]


def format_agreement(report: AgreementReport) -> str:
    kappa_name = "Cohen's kappa" if len(report.coders) == 2 else "mean pairwise Cohen's kappa"
    lines = [
        f"Coders: {', '.join(f'{coder} ({path})' for coder, path in zip(report.coders, report.files))}",
        f"Unit: one {report.unit_description}; {report.units} segments labelled by every coder.",
    ]
    for coder, count in report.unmatched.items():
        if count:
            lines.append(
                f"{coder}: {count} segments not labelled by every other coder; left out of the figures."
            )
    if report.codes_not_shared:
        lines.append(f"Codes not in every file, left out: {', '.join(report.codes_not_shared)}")
    lines += [
        "",
        f"{'code':<22} {'units':>6} {'agree':>7} {'kappa':>7} {'alpha':>7}  "
        + "  ".join(f"{coder[:10]:>10}" for coder in report.coders),
    ]
    for row in (*report.per_code, report.overall):
        lines.append(
            f"{row.code_id:<22} {row.units:>6} {100 * row.percent:6.1f}% {_number(row.kappa):>7}"
            f" {_number(row.alpha):>7}  "
            + "  ".join(f"{100 * share:9.1f}%" for share in row.prevalence)
        )
    lines += [
        "",
        f"kappa: {kappa_name}; alpha: Krippendorff's alpha (nominal); the last columns give each coder's "
        "share of units coded. n/a: undefined because every rating was the same.",
    ]
    if report.pairs:
        lines += [
            "",
            "Pair by pair, all codes pooled:",
            f"{'coders':<32} {'units':>6} {'agree':>7} {'kappa':>7} {'alpha':>7}  reading",
        ]
        for pair in report.pairs:
            lines.append(
                f"{(pair.first + ' / ' + pair.second)[:32]:<32} {pair.units:>6} {100 * pair.percent:6.1f}% "
                f"{_number(pair.kappa):>7} {_number(pair.alpha):>7}  {_reading(pair.kappa, pair.alpha)}"
            )
    overall = report.overall
    lines += [
        "",
        f"Reading: pooled, {_reading(overall.kappa, overall.alpha)}. Kappa in Landis and Koch's words: "
        "up to .20 slight, .21-.40 fair, .41-.60 moderate, .61-.80 substantial, above .80 almost perfect. "
        "Krippendorff asks alpha >= .800 to rely on coded data and accepts .667 to .800 for tentative "
        "conclusions only; below .667, discuss the codes and code again before relying on them.",
    ]
    lines += [f"Warning: {warning}" for warning in report.warnings]
    lines.append(f"{len(report.disagreements)} disagreements (segment and code).")
    return "\n".join(lines)


def _reading(kappa, alpha) -> str:
    return f"kappa {_number(kappa)} is {kappa_reading(kappa)}, alpha {_number(alpha)} is {alpha_reading(alpha)}"


def agreement_tables(report: AgreementReport) -> list[Table]:
    coders = report.coders
    summary = [
        (
            row.code_id,
            row.units,
            _cell(row.percent),
            _cell(row.kappa),
            _cell(row.alpha),
            *(_cell(share) for share in row.prevalence),
            kappa_reading(row.kappa),
            alpha_reading(row.alpha),
        )
        for row in (*report.per_code, report.overall)
    ]
    disagreements = [
        (d.segment_id, d.document, d.text, d.code_id, *d.values) for d in report.disagreements
    ]
    return [
        Table(
            "Agreement",
            (
                "code",
                "units",
                "percent agreement",
                "kappa",
                "krippendorff alpha",
                *(f"{coder} share coded" for coder in coders),
                "kappa reading (Landis and Koch)",
                "alpha reading (Krippendorff)",
            ),
            summary,
        ),
        *(
            [
                Table(
                    "Pairs",
                    (
                        "first coder",
                        "second coder",
                        "units",
                        "percent agreement",
                        "kappa",
                        "krippendorff alpha",
                        "kappa reading (Landis and Koch)",
                        "alpha reading (Krippendorff)",
                    ),
                    [
                        (
                            pair.first,
                            pair.second,
                            pair.units,
                            _cell(pair.percent),
                            _cell(pair.kappa),
                            _cell(pair.alpha),
                            kappa_reading(pair.kappa),
                            alpha_reading(pair.alpha),
                        )
                        for pair in report.pairs
                    ],
                )
            ]
            if report.pairs
            else []
        ),
        *(
            [
                Table(
                    "Warnings",
                    ("warning",),
                    [(warning,) for warning in report.warnings],
                    text_columns=("warning",),
                )
            ]
            if report.warnings
            else []
        ),
        Table(
            "Disagreements",
            ("segment_id", "document", "text", "code", *coders),
            disagreements,
            text_columns=("text",),
        ),
        Table(
            "Coders",
            ("coder", "file", "segments not shared"),
            [
                (coder, path, report.unmatched.get(coder, 0))
                for coder, path in zip(coders, report.files)
            ],
        ),
    ]


def write_report(tables: list[Table], output: str | os.PathLike[str]) -> Path:
    output = Path(output)
    with atomic_file(output) as temporary:
        write_tables(tables, temporary)
    return output


def format_codebook_diff(changes, impact=None) -> str:
    from qualcode.codebook_diff import EXAMPLES_PER_CODE

    lines = [f"{len(changes)} changes" + (":" if changes else "")]
    lines += [f"  {change.code_id}: {change.change}: {change.detail}" for change in changes]
    if impact is not None:
        lines += ["", f"{'code':<22} {'before':>7} {'after':>7} {'gained':>7} {'lost':>6}"]
        lines += [
            f"{item.code_id:<22} {item.before:>7} {item.after:>7} {len(item.gained):>7} {len(item.lost):>6}"
            for item in impact
        ]
        for item in impact:
            for label, segments in (("gains", item.gained), ("loses", item.lost)):
                for segment in segments[:EXAMPLES_PER_CODE]:
                    text = " ".join(segment.text.split())
                    lines.append(
                        f"  {item.code_id} {label} {segment.segment_id}: {text[:100]}{'…' if len(text) > 100 else ''}"
                    )
    return "\n".join(lines)


def codebook_diff_tables(changes, impact=None) -> list[Table]:
    tables = [
        Table(
            "Changes",
            ("code", "change", "detail"),
            [(c.code_id, c.change, c.detail) for c in changes],
            text_columns=("detail",),
        )
    ]
    if impact is not None:
        tables.append(
            Table(
                "Impact",
                ("code", "segments before", "segments after", "gained", "lost"),
                [(i.code_id, i.before, i.after, len(i.gained), len(i.lost)) for i in impact],
            )
        )
        for name, attribute in (("Gained", "gained"), ("Lost", "lost")):
            rows = [
                (item.code_id, segment.segment_id, segment.doc_id, segment.speaker, segment.text)
                for item in impact
                for segment in getattr(item, attribute)
            ]
            tables.append(
                Table(
                    name,
                    ("code", "segment_id", "document", "speaker", "text"),
                    rows,
                    text_columns=("text",),
                )
            )
    return tables


def suggestion_table(suggestions) -> Table:
    return Table(
        "Why these segments",
        ("segment_id", "score", "reason"),
        [(s.segment_id, s.score, s.reason) for s in suggestions],
        text_columns=("reason",),
    )
