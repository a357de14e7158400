#!/usr/bin/env python3
"""What the embedding classifier can still learn from more coded passages, from the shipped vectors alone.

    python corpora/dev/learning_curve.py [--repeats 2] [--json FILE]

It needs no unit text: the shipped ``dev-corpus-vectors.npz`` holds each passage's adapted
embedding, its gold codes and its source, and ``sources.csv`` says which split a source is in.
Only the splits the encoder's adapter never learnt from (``test11`` onwards; ``test10`` has no
vectors) are held out in turn, since a passage the adapter learnt sits further from the boundary
than a new researcher's passage does. For each held-out split it reports the classifier alone
(no rules, no codebook examples, whose vectors need the encoder), by average precision per code
(ranking, no threshold) and macro alpha at the shipped per-code thresholds with the raise for new
text:

1. the learning curve by source: the product's classifier (``EmbeddingClassifier``) learning from
   a quarter, a half, three quarters and all of the other splits' sources;
2. other heads on all of them, to tell the classifier's form from what the vectors hold: a
   small neural network and an RBF support-vector machine (scikit-learn), ranking only;
3. a reviewed quarter: a quarter of the held-out split's sources given as a researcher's labels
   (weighted as ``--train`` labels are), the other three quarters scored with and without them;
4. a code of one's own: each code in turn taken as one the corpus never coded, learnt from the
   codebook's examples alone, then with a reviewed quarter's labels for it. The adapter learnt
   every code from the corpus, so a truly new code starts from vectors less suited to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
# A code not in the shipped corpus has no threshold of its own: embeddings' default.
OWN_CODE_SUGGEST_AT = 0.35
# A code the corpus does not cover learns a researcher's labels at weight 1 since round 15; at 30
# (the weight for the corpus's codes) before.
OWN_CODE_WEIGHTS = (1.0, 30.0)


def _load():
    sys.path.insert(0, str(HERE.parent.parent / "src"))
    from qualcode.codebook import default_codebook_path, load_codebook
    from qualcode.semantic import corpus_examples

    codebook = load_codebook(default_codebook_path())
    examples, vectors = corpus_examples(codebook)
    split_of = {
        row["source_id"]: row["split"] for row in csv.DictReader(open(HERE / "sources.csv"))
    }
    sources = np.array([example.group.removeprefix("dev-corpus:") for example in examples])
    splits = np.array([split_of[source] for source in sources])
    return codebook, examples, vectors, sources, splits


def _unseen_splits(splits: np.ndarray) -> list[str]:
    """Splits gathered after the adapter was learnt (test11 on); test10 has no vectors."""
    numbered = sorted(
        {split for split in splits if split.startswith("test") and split[4:].isdigit()},
        key=lambda split: int(split[4:]),
    )
    return [split for split in numbered if int(split[4:]) >= 11]


@dataclass(frozen=True)
class HeldOut:
    """One split held out, and everything a measurement learns from or scores against."""

    name: str
    code_ids: list[str]
    examples: list
    vectors: np.ndarray
    sources: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    thresholds: dict[str, float]


def _gold(examples, rows, code_ids) -> np.ndarray:
    return np.array([[examples[row].labels[code] for code in code_ids] for row in rows])


def _product_fit(code_ids, examples, vectors, rows, extra=()):
    from qualcode.semantic import NEW_TEXT_LOG_ODDS, EmbeddingClassifier

    chosen = [examples[row] for row in rows] + [example for example, _ in extra]
    chosen_vectors = np.vstack([vectors[rows]] + [vector[None, :] for _, vector in extra])
    classifier = EmbeddingClassifier(code_ids).fit(chosen, chosen_vectors)
    # Fitted without the prior, so fit() set no raise; the product raises when it learns the
    # shipped corpus and no label of the project.
    classifier.new_text_log_odds = 0.0 if extra else NEW_TEXT_LOG_ODDS
    return classifier


def _scores(classifier, vectors, gold, code_ids, thresholds) -> dict:
    from sklearn.metrics import average_precision_score

    from qualcode.agreement import krippendorff_alpha

    probabilities = classifier.probabilities(vectors)
    ap, alpha = [], []
    for column, code in enumerate(code_ids):
        ap.append(float(average_precision_score(gold[:, column], probabilities[:, column])))
        suggested = (probabilities[:, column] >= thresholds[code]).astype(float)
        value = krippendorff_alpha(np.vstack([gold[:, column].astype(float), suggested]))
        alpha.append(0.0 if value is None else float(value))
    return {
        "ap": ap,
        "alpha": alpha,
        "mean_ap": float(np.mean(ap)),
        "macro_alpha": float(np.mean(alpha)),
    }


def _other_heads(gold_train, train_vectors, test_vectors, gold_test) -> dict:
    from sklearn.metrics import average_precision_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    def unit(matrix):
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    train, test = unit(train_vectors), unit(test_vectors)
    network = np.mean(
        [
            MLPClassifier((256,), alpha=0.1, max_iter=300, early_stopping=True, random_state=seed)
            .fit(train, gold_train)
            .predict_proba(test)
            for seed in range(3)
        ],
        axis=0,
    )
    machine = np.column_stack(
        [
            SVC(C=2.0, kernel="rbf", class_weight="balanced")
            .fit(train, gold_train[:, column])
            .decision_function(test)
            for column in range(gold_train.shape[1])
        ]
    )
    return {
        name: float(
            np.mean(
                [
                    average_precision_score(gold_test[:, column], scores[:, column])
                    for column in range(gold_test.shape[1])
                ]
            )
        )
        for name, scores in (("neural network", network), ("RBF SVM", machine))
    }


def _quarters(sources: list[str], first_quarter) -> list[set[str]]:
    """The sources in four quarters, the first being the one score.py gives as --train labels."""
    quarters, left = [], list(sources)
    for remaining in (4, 3, 2):
        # Each later quarter is score.py's hash order again among the sources not yet taken.
        quarter = (
            first_quarter(left) if remaining == 4 else set(left[: round(len(left) / remaining)])
        )
        quarters.append(quarter)
        left = [source for source in left if source not in quarter]
    return [*quarters, set(left)]


def _rotations(split: HeldOut) -> list[tuple[list[int], np.ndarray]]:
    """Each quarter of the split's sources reviewed in turn: its rows, and the rest's."""
    sys.path.insert(0, str(HERE))
    from score import reviewed_sources  # the quarter score.py gives as --train labels

    quarters = _quarters(sorted(set(split.sources[split.test_rows])), reviewed_sources)
    return [
        (
            [row for row in split.test_rows if split.sources[row] in quarter],
            np.array([row for row in split.test_rows if split.sources[row] not in quarter]),
        )
        for quarter in quarters
    ]


def _curve(split: HeldOut, repeats: int) -> list[dict]:
    gold_test = _gold(split.examples, split.test_rows, split.code_ids)
    train_sources = sorted(set(split.sources[split.train_rows]))
    draw = random.Random(split.name)
    curve = []
    for fraction in FRACTIONS:
        runs = []
        for _ in range(repeats if fraction < 1 else 1):
            chosen = set(draw.sample(train_sources, round(len(train_sources) * fraction)))
            rows = np.array([row for row in split.train_rows if split.sources[row] in chosen])
            classifier = _product_fit(split.code_ids, split.examples, split.vectors, rows)
            runs.append(
                _scores(
                    classifier,
                    split.vectors[split.test_rows],
                    gold_test,
                    split.code_ids,
                    split.thresholds,
                )
            )
        curve.append(
            {
                "fraction": fraction,
                "passages": len(rows),
                "mean_ap": float(np.mean([run["mean_ap"] for run in runs])),
                "macro_alpha": float(np.mean([run["macro_alpha"] for run in runs])),
                "ap": np.mean([run["ap"] for run in runs], axis=0).tolist(),
            }
        )
        print(f"{split.name}: learnt from {len(rows)} passages", file=sys.stderr)
    return curve


def _review(split: HeldOut, weights) -> list[dict]:
    without_model = _product_fit(split.code_ids, split.examples, split.vectors, split.train_rows)
    rotations = []
    for reviewed, rest in _rotations(split):
        gold_rest = _gold(split.examples, rest, split.code_ids)
        rotation = {
            "reviewed_passages": len(reviewed),
            "without": _scores(
                without_model, split.vectors[rest], gold_rest, split.code_ids, split.thresholds
            ),
        }
        for weight in weights:
            labels = [
                (replace(split.examples[row], weight=weight, origin="human"), split.vectors[row])
                for row in reviewed
            ]
            learnt = _product_fit(
                split.code_ids, split.examples, split.vectors, split.train_rows, labels
            )
            rotation[f"weight {weight:g}"] = _scores(
                learnt, split.vectors[rest], gold_rest, split.code_ids, split.thresholds
            )
        rotations.append(rotation)
    return rotations


def _own_code(codebook, split: HeldOut, weights) -> dict:
    """Per code: the rest of the split scored for it, learnt from the codebook's examples for that
    code alone, then with a reviewed quarter's labels for it beside them at each weight (four
    rotations). A code the corpus does not cover learns at weight 1 (``weigh_researcher_labels``)."""
    from qualcode.classify import examples_from_codebook
    from qualcode.embeddings import embed_texts, load_encoder
    from qualcode.semantic import EmbeddingClassifier

    examples, vectors = split.examples, split.vectors
    book = examples_from_codebook(codebook)
    book_vectors = embed_texts([example.text for example in book], encoder=load_encoder())[0]
    rotations = _rotations(split)
    results = {}
    for code in codebook.code_ids:
        own = [row for row, example in enumerate(book) if code in example.labels]
        runs = {"examples": [], **{f"weight {weight:g}": [] for weight in weights}}
        for reviewed, rest in rotations:
            gold = _gold(examples, rest, [code])
            fits = [("examples", [book[row] for row in own], book_vectors[own])]
            for weight in weights:
                labels = [
                    replace(
                        examples[row],
                        labels={code: examples[row].labels[code]},
                        weight=weight,
                        origin="human",
                    )
                    for row in reviewed
                ]
                fits.append(
                    (
                        f"weight {weight:g}",
                        [book[row] for row in own] + labels,
                        np.vstack([book_vectors[own], vectors[reviewed]]),
                    )
                )
            for name, learnt, learnt_vectors in fits:
                classifier = EmbeddingClassifier([code]).fit(learnt, learnt_vectors)
                runs[name].append(
                    _scores(classifier, vectors[rest], gold, [code], {code: OWN_CODE_SUGGEST_AT})
                )
        results[code] = {
            name: {
                "ap": float(np.mean([run["mean_ap"] for run in scored])),
                "alpha": float(np.mean([run["macro_alpha"] for run in scored])),
            }
            for name, scored in runs.items()
        }
        results[code]["examples"]["count"] = len(own)
    return results


def _print_tables(results: dict) -> None:
    print(
        "| held-out split | " + " | ".join(f"{int(f * 100)}% of sources" for f in FRACTIONS) + " |"
    )
    print("|---" * (len(FRACTIONS) + 1) + "|")
    for held, result in results.items():
        cells = [
            f"{point['mean_ap']:.3f} / {point['macro_alpha']:.3f} ({point['passages']:,})"
            for point in result["curve"]
        ]
        print(f"| {held} ({result['passages']}) | " + " | ".join(cells) + " |")
    print("\nmean AP / macro alpha (passages learnt from); classifier alone\n")
    print("| held-out split | logistic (the product) | neural network | RBF SVM |")
    print("|---|---|---|---|")
    for held, result in results.items():
        heads = result["heads"]
        print(
            f"| {held} | {result['curve'][-1]['mean_ap']:.3f} | "
            f"{heads['neural network']:.3f} | {heads['RBF SVM']:.3f} |"
        )
    print("\nmean AP, learning from all the other splits\n")
    settings = [
        key for key in next(iter(results.values()))["review"][0] if key != "reviewed_passages"
    ]
    print("| held-out split | " + " | ".join(settings) + " |")
    print("|---" * (len(settings) + 1) + "|")
    for held, result in results.items():
        rotations = result["review"]
        cells = []
        for setting in settings:
            ap = np.mean([rotation[setting]["mean_ap"] for rotation in rotations])
            alpha = np.mean([rotation[setting]["macro_alpha"] for rotation in rotations])
            rose = sum(
                rotation[setting]["macro_alpha"] > rotation["without"]["macro_alpha"]
                for rotation in rotations
            )
            shown = f"{ap:.3f} / {alpha:.3f}"
            cells.append(shown if setting == "without" else f"{shown} ({rose} of {len(rotations)})")
        print(f"| {held} | " + " | ".join(cells) + " |")
    print(
        "\nthe rest of a split with each quarter of its sources reviewed in turn: mean AP / macro "
        "alpha over the four rotations (rotations where alpha rose)"
    )
    settings = list(next(iter(results.values()))["own_code"]["continuity"])
    titles = [
        "examples alone" if name == "examples" else f"+ a reviewed quarter, {name}"
        for name in settings
    ]
    print(
        "\n| held-out split | code | codebook examples | "
        + " | ".join(titles)
        + " | whole corpus |"
    )
    print("|---" * (len(settings) + 4) + "|")
    for held, result in results.items():
        for column, (code, own) in enumerate(result["own_code"].items()):
            cells = [f"{own[name]['ap']:.3f} / {own[name]['alpha']:.3f}" for name in settings]
            print(
                f"| {held} | {code} | {own['examples']['count']} | "
                + " | ".join(cells)
                + f" | {result['curve'][-1]['ap'][column]:.3f} |"
            )
    owns = [own for result in results.values() for own in result["own_code"].values()]
    for name in settings:
        ap = np.mean([own[name]["ap"] for own in owns])
        alpha = np.mean([own[name]["alpha"] for own in owns])
        line = f"mean over {len(owns)} codes and splits, {titles[settings.index(name)]}: {ap:.3f} / {alpha:.3f}"
        if name != "examples":
            ap_up = sum(own[name]["ap"] > own["examples"]["ap"] for own in owns)
            alpha_up = sum(own[name]["alpha"] > own["examples"]["alpha"] for own in owns)
            line += f" (AP up for {ap_up}, alpha for {alpha_up})"
        print(line)
    print(
        "\neach code taken as one the corpus never coded: AP / alpha at 0.35 on the rest of the "
        "split, over the four rotations; the whole corpus's AP is the shipped model's (section 1)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="draws of sources per fraction")
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        help="weights of a reviewed label to try (default: the shipped REVIEWED_WEIGHT)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from qualcode.semantic import REVIEWED_WEIGHT, corpus_thresholds

    codebook, examples, vectors, sources, splits = _load()
    code_ids = list(codebook.code_ids)
    thresholds = corpus_thresholds(codebook)
    results = {}
    for held in _unseen_splits(splits):
        split = HeldOut(
            held,
            code_ids,
            examples,
            vectors,
            sources,
            np.flatnonzero(splits != held),
            np.flatnonzero(splits == held),
            thresholds,
        )
        results[held] = {
            "passages": len(split.test_rows),
            "curve": _curve(split, args.repeats),
            "heads": _other_heads(
                _gold(examples, split.train_rows, code_ids),
                vectors[split.train_rows],
                vectors[split.test_rows],
                _gold(examples, split.test_rows, code_ids),
            ),
            "review": _review(split, args.weights or [REVIEWED_WEIGHT]),
            "own_code": _own_code(codebook, split, OWN_CODE_WEIGHTS),
        }
    _print_tables(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
