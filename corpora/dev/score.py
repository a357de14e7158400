#!/usr/bin/env python3
"""Score qualcode's coding of one split of the development corpus against the gold, as a user would run it.

    python corpora/dev/score.py --split test [--keep DIR] [--llm MODEL [--llm-url URL]]

The test split is scored once, after every rule, example and setting was chosen on the dev split
(see README.md). For the split's units (rebuilt by ``rebuild.py`` into ``texts/<split>/``) this
runs the command line itself, so the figures are those of ``qualcode code`` as shipped:

1. ``qualcode code`` with each classifier representation (and rules alone), compared with the
   gold by ``qualcode agree``: per code precision, recall and Krippendorff's alpha, macro-averaged.
2. A researcher's review: the gold of a quarter of the split's sources (chosen by a hash of the
   source id, not by looking) is given as ``--train`` labels, and the other three quarters are
   coded with and without them; the gain is what the product learns from a researcher's decisions.
3. With ``--llm MODEL``, one more run: the default with the language model as a third assistant
   (``qualcode code --llm MODEL [--llm-url URL]``), sending every unit of the split to that
   endpoint. Its answers go to qualcode's answer cache as in any run outside a study, so scoring
   again asks nothing twice.

On the dev split the figures flatter the classifier: the default model ships the dev split's
vectors, so it has seen those passages. Nothing here is used to tune anything.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODES = ("continuity", "accessibility", "participation", "empathy", "trust", "structural_context")
RUNS = {
    "rules alone": ["--no-classifier"],
    "rules + n-grams": ["--representation", "ngrams"],
    "rules + embeddings": ["--representation", "embeddings"],
    "rules + both": ["--representation", "both"],
}
REVIEWED_SHARE = 0.25
# A reviewed quarter is given to the first default (n-grams), the blend and the default now.
LEARNING_RUNS = ("rules + n-grams", "rules + both", "rules + embeddings")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_gold(rows: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0]] if rows else ["segment_id", *CODES])
        writer.writeheader()
        writer.writerows(rows)
    return path


def reviewed_sources(sources: list[str]) -> set[str]:
    """A quarter of the sources, by the order of a hash of their ids: a fixed choice nobody made by reading."""
    ranked = sorted(
        sources, key=lambda source: hashlib.sha1(f"qualcode-reviewed:{source}".encode()).hexdigest()
    )
    return set(ranked[: max(1, round(len(ranked) * REVIEWED_SHARE))])


def copy_sources(texts: Path, sources: set[str], target: Path) -> Path:
    for source in sorted(sources):
        shutil.copytree(texts / source, target / source, dirs_exist_ok=True)
    return target


def qualcode(*args: object) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "qualcode", *map(str, args)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"qualcode {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout + result.stderr


def scores(gold: Path, workbook: Path) -> dict[str, tuple[float, float, float]]:
    """Per code (and 'macro'), precision, recall and alpha of the workbook's coding against the gold."""
    from qualcode.agreement import binary_scores, macro_average
    from qualcode.labels import read_label_file

    truth = read_label_file(gold, CODES)
    machine = {unit.key: unit.labels for unit in read_label_file(workbook, CODES).units}
    per_code = {}
    for code in CODES:
        pairs = [
            (unit.labels[code], machine[unit.key][code])
            for unit in truth.units
            if unit.key in machine
        ]
        if len(pairs) != len(truth.units):
            raise SystemExit(
                f"{workbook}: {len(truth.units) - len(pairs)} gold units were not coded"
            )
        per_code[code] = binary_scores([a for a, _ in pairs], [b for _, b in pairs])
    macro = macro_average(list(per_code.values()))
    return {
        **{code: (s.precision, s.recall, s.alpha) for code, s in per_code.items()},
        "macro": (macro.precision, macro.recall, macro.alpha),
    }


def table(title: str, results: dict[str, dict[str, tuple[float, float, float]]]) -> str:
    lines = [
        f"\n{title}",
        "| code | " + " | ".join(results) + " |",
        "|---" * (len(results) + 1) + "|",
    ]
    for code in (*CODES, "macro"):
        cells = [
            f"{r[code][2]:.2f} (P {r[code][0]:.2f}, R {r[code][1]:.2f})" for r in results.values()
        ]
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--split",
        choices=list(dict.fromkeys(row["split"] for row in read_csv(HERE / "sources.csv"))),
        required=True,
    )
    parser.add_argument("--texts", type=Path, default=HERE / "texts")
    parser.add_argument(
        "--keep", type=Path, help="keep the gold files and workbooks in this folder"
    )
    parser.add_argument("--llm", metavar="MODEL", help="also score the default with this model")
    parser.add_argument(
        "--llm-url", metavar="URL", help="the model's endpoint (qualcode's default if not given)"
    )
    args = parser.parse_args(argv)
    if args.llm_url and not args.llm:
        parser.error("--llm-url needs --llm MODEL")
    runs = dict(RUNS)
    if args.llm:
        runs["rules + embeddings + llm"] = [
            *RUNS["rules + embeddings"],
            "--llm",
            args.llm,
            *(["--llm-url", args.llm_url] if args.llm_url else []),
        ]

    split_sources = {
        row["source_id"] for row in read_csv(HERE / "sources.csv") if row["split"] == args.split
    }
    texts = args.texts / args.split
    present = {path.name for path in texts.iterdir() if path.is_dir()} if texts.is_dir() else set()
    if not present:
        raise SystemExit(
            f"{texts}: no unit texts; rebuild them first (python corpora/dev/rebuild.py)"
        )
    gold = [
        row
        for row in read_csv(HERE / "gold.csv")
        if row["segment_id"].split("/")[0] in present & split_sources
    ]
    reviewed = reviewed_sources(sorted(present & split_sources))

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qualcode-score-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        all_gold = write_gold(gold, work / "gold.csv")
        results = {}
        for name, options in runs.items():
            out = work / f"{name.replace(' ', '').replace('+', '-')}.xlsx"
            qualcode("code", texts, "--unit", "document", "-o", out, "-q", "--force", *options)
            results[name] = scores(all_gold, out)
        print(f"{args.split} split: {len(gold)} units from {len(present & split_sources)} sources")
        print(
            table(
                "qualcode code, each classifier representation (alpha, precision, recall)", results
            )
        )

        rest_folder = copy_sources(texts, present & split_sources - reviewed, work / "rest")
        rest_gold = write_gold(
            [row for row in gold if row["segment_id"].split("/")[0] not in reviewed],
            work / "rest-gold.csv",
        )
        # Labels for texts outside the coded folder carry their text, as a reviewed workbook does.
        train_gold = write_gold(
            [
                {**row, "text": (texts / row["segment_id"].rsplit(":", 1)[0]).read_text("utf-8")}
                for row in gold
                if row["segment_id"].split("/")[0] in reviewed
            ],
            work / "reviewed-gold.csv",
        )
        learning = {}
        for name in LEARNING_RUNS:
            for label, extra in (("without", []), ("with", ["--train", train_gold])):
                out = work / f"rest-{name.replace(' ', '').replace('+', '-')}-{label}.xlsx"
                qualcode(
                    "code",
                    rest_folder,
                    "--unit",
                    "document",
                    "-o",
                    out,
                    "-q",
                    "--force",
                    *RUNS[name],
                    *extra,
                )
                learning[f"{name}, {label} the reviewed quarter"] = scores(rest_gold, out)
        print(
            f"\nThe other three quarters ({len(read_csv(rest_gold))} units), coded without and with the gold of "
            f"{len(reviewed)} reviewed sources ({len(read_csv(train_gold))} units) as --train labels"
        )
        print(table("", learning))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
