#!/usr/bin/env python3
"""Cut the development corpus into units, or rebuild the unit texts from page texts.

The repository holds no third-party text: only ``units.csv`` (each unit's source, position, word
count and SHA-1), ``sources.csv`` (URL, title, kind, split) and the codings. The unit texts are
rebuilt on your machine from the pages themselves:

    python corpora/dev/rebuild.py                 # from page texts saved in corpora/dev/pages/
    python corpora/dev/rebuild.py --fetch         # fetch each source URL first (needs web access)

Each unit is found by its hash, not its position: the page's text is split into paragraphs, and
every run of as many consecutive paragraphs as the unit has is hashed until one matches. A page
that has changed since it was read loses only the units whose words changed. Units are written
to ``texts/<split>/`` (``dev``, ``test``, and ``test2`` to ``test12``) as
``<source id>/<unit id>.txt``, one document each, for ``qualcode code --unit document`` and ``qualcode evaluate --gold gold.csv --group-by
folder``.

``--cut`` (used once, when the corpus was made) writes ``units.csv`` from the saved pages; see
``cut_units`` for the rule. ``--cut-new`` cuts only the sources of ``sources.csv`` that have no unit
yet, by the same rule, and appends their units to ``units.csv``, numbered after the last one; the
rows already there are left as they are (how the splits ``test2`` to ``test12`` were added).

``--vectors NPZ`` writes the training splits' embeddings and gold labels for the default model. A
unit whose vector NPZ already holds, made by the same encoder, keeps it and needs no text, so a
spent split can join on a machine that holds only its own pages.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html.parser
import re
import sys
import unicodedata
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
UNIT_COLUMNS = ("unit_id", "source_id", "first_paragraph", "paragraphs", "words", "chars", "sha1")
# A paragraph of running prose ends a sentence; headings, menus, bylines and an excerpt's cut-off
# last line do not.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
MIN_PROSE_WORDS = 5
MIN_UNIT_WORDS = 40
MIN_LEFTOVER_WORDS = 20
MAX_UNIT_WORDS = 200


@dataclass(frozen=True)
class Unit:
    unit_id: str
    source_id: str
    first_paragraph: int
    paragraphs: int
    words: int
    chars: int
    sha1: str

    @property
    def segment_id(self) -> str:
        """The id qualcode gives the unit's text read as one document (``--unit document``)."""
        return f"{self.source_id}/{self.unit_id}.txt:0-{self.chars}"


def paragraphs_of(page_text: str) -> list[str]:
    """A page's non-empty lines, whitespace-normalised: the paragraphs units are cut from and found in."""
    text = unicodedata.normalize("NFC", page_text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return [line for line in lines if line]


def unit_text(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _is_prose(paragraph: str) -> bool:
    return len(paragraph.split()) >= MIN_PROSE_WORDS and bool(_SENTENCE_END.search(paragraph))


def cut_units(source_id: str, page_text: str) -> list[tuple[int, list[str]]]:
    """(index of first paragraph, paragraphs) of each unit of a page.

    Consecutive prose paragraphs are gathered until they hold at least 40 words, without passing
    200 words; a paragraph that is not prose (a heading, a menu, a cut-off last line) closes the
    unit being gathered, which is kept if it holds at least 20 words. Every prose paragraph of a
    page therefore lands in a unit, on theme or not: units are not chosen for their content.
    """
    paragraphs = paragraphs_of(page_text)
    units: list[tuple[int, list[str]]] = []
    gathered: list[str] = []
    first = 0

    def close(minimum: int) -> None:
        nonlocal gathered
        if gathered and sum(len(p.split()) for p in gathered) >= minimum:
            units.append((first, gathered))
        gathered = []

    for index, paragraph in enumerate(paragraphs):
        if not _is_prose(paragraph):
            close(MIN_LEFTOVER_WORDS)
            continue
        words = len(paragraph.split())
        held = sum(len(p.split()) for p in gathered)
        if gathered and held + words > MAX_UNIT_WORDS:
            close(MIN_LEFTOVER_WORDS)
        if not gathered:
            first = index
        gathered.append(paragraph)
        if held + words >= MIN_UNIT_WORDS:
            close(MIN_UNIT_WORDS)
    close(MIN_LEFTOVER_WORDS)
    return units


def find_unit(unit: Unit, paragraphs: list[str]) -> str | None:
    """The unit's text among a page's paragraphs, found by its hash; None if the page no longer has it."""
    candidates = [unit.first_paragraph] + [
        i for i in range(len(paragraphs)) if i != unit.first_paragraph
    ]
    for start in candidates:
        window = paragraphs[start : start + unit.paragraphs]
        if len(window) == unit.paragraphs and sha1(unit_text(window)) == unit.sha1:
            return unit_text(window)
    return None


class _TextOfPage(html.parser.HTMLParser):
    """The visible text of an HTML page, a line per block element."""

    _BLOCKS = {
        "p",
        "div",
        "br",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "tr",
        "section",
        "article",
    }
    _HIDDEN = {"script", "style", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def text_of_html(page: str) -> str:
    parser = _TextOfPage()
    parser.feed(page)
    return "".join(parser.parts)


def fetch_page(url: str) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": "qualcode-dev-corpus-rebuild"})
    with urllib.request.urlopen(request, timeout=30) as response:
        charset = response.headers.get_content_charset() or "utf-8"
        return text_of_html(response.read().decode(charset, errors="replace"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_units(path: Path) -> list[Unit]:
    return [
        Unit(
            row["unit_id"],
            row["source_id"],
            int(row["first_paragraph"]),
            int(row["paragraphs"]),
            int(row["words"]),
            int(row["chars"]),
            row["sha1"],
        )
        for row in read_csv(path)
    ]


def write_units(units: list[Unit], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(UNIT_COLUMNS)
        writer.writerows(
            (u.unit_id, u.source_id, u.first_paragraph, u.paragraphs, u.words, u.chars, u.sha1)
            for u in units
        )


def cut_corpus(sources: list[dict[str, str]], pages: Path, *, first_number: int = 1) -> list[Unit]:
    """The units of these sources' saved pages, in order, numbered from ``U<first_number>``."""
    units = []
    for source in sources:
        page = (pages / f"{source['source_id']}.txt").read_text(encoding="utf-8")
        for first, paragraphs in cut_units(source["source_id"], page):
            text = unit_text(paragraphs)
            units.append(
                Unit(
                    f"U{first_number + len(units):04d}",
                    source["source_id"],
                    first,
                    len(paragraphs),
                    len(text.split()),
                    len(text),
                    sha1(text),
                )
            )
    return units


def cut_new(sources: list[dict[str, str]], pages: Path, units: list[Unit]) -> list[Unit]:
    """The units of the sources that have none in ``units`` yet, numbered after the last of ``units``.

    A source with no saved page is passed over: the pages that gave no unit when they were cut
    are not kept, and a machine holds only the pages it rebuilt.
    """
    cut = {unit.source_id for unit in units}
    last = max((int(unit.unit_id[1:]) for unit in units), default=0)
    return cut_corpus(
        [
            source
            for source in sources
            if source["source_id"] not in cut and (pages / f"{source['source_id']}.txt").is_file()
        ],
        pages,
        first_number=last + 1,
    )


def append_units(units: list[Unit], path: Path) -> None:
    """Add rows to an existing ``units.csv`` without rewriting the rows already in it."""
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(
            (u.unit_id, u.source_id, u.first_paragraph, u.paragraphs, u.words, u.chars, u.sha1)
            for u in units
        )


def rebuild(
    units: list[Unit], sources: list[dict[str, str]], pages: Path, out: Path, *, fetch: bool = False
) -> tuple[int, list[str]]:
    """Write every unit found to ``out/<split>/<source id>/<unit id>.txt``; returns (written, units not found)."""
    by_source = {source["source_id"]: source for source in sources}
    split = splits_of(sources)
    page_paragraphs: dict[str, list[str]] = {}
    written, missing = 0, []
    for unit in units:
        source = by_source[unit.source_id]
        if unit.source_id not in page_paragraphs:
            saved = pages / f"{unit.source_id}.txt"
            if fetch:
                try:
                    page = fetch_page(source["url"])
                except OSError as error:
                    print(f"{source['url']}: not fetched ({error})", file=sys.stderr)
                    page = ""
            else:
                page = saved.read_text(encoding="utf-8") if saved.is_file() else ""
            page_paragraphs[unit.source_id] = paragraphs_of(page)
        text = find_unit(unit, page_paragraphs[unit.source_id])
        if text is None:
            missing.append(unit.unit_id)
            continue
        path = text_path(unit, split, out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        written += 1
    return written, missing


# What qualcode's default model learns from: the dev split, and each test split once it has been
# scored (test to test5 on 2026-12-02, test6 to test13 on 2026-12-03) and is spent. A split not yet
# scored is never learnt from. test10 is spent but not here: its texts could be rebuilt only in
# part on a new machine (176 of 232 units), and neither the adapter nor the vectors have learnt
# from it, so it is where a classifier setting is checked on text the whole model never saw. The
# adapter learnt from dev to test9 (its own ``training_splits``); test11 to test13 joined the
# vectors only.
TRAINING_SPLITS = (
    "dev",
    "test",
    "test2",
    "test3",
    "test4",
    "test5",
    "test6",
    "test7",
    "test8",
    "test9",
    "test11",
    "test12",
    "test13",
)


def training_units(units: list[Unit], sources: list[dict[str, str]]):
    """The training splits' units, their gold labels (units x codes, int8) and the code ids."""
    import numpy as np

    split = splits_of(sources)
    gold_rows = read_csv(HERE / "gold.csv")
    gold = {row["segment_id"]: row for row in gold_rows}
    code_ids = [name for name in gold_rows[0] if name != "segment_id"]
    chosen = [unit for unit in units if split[unit.source_id] in TRAINING_SPLITS]
    labels = np.array(
        [[int(gold[unit.segment_id][code]) for code in code_ids] for unit in chosen], dtype=np.int8
    )
    return chosen, labels, code_ids


def splits_of(sources: list[dict[str, str]]) -> dict[str, str]:
    return {source["source_id"]: source.get("split", "dev") for source in sources}


def text_path(unit: Unit, split: dict[str, str], texts: Path) -> Path:
    """Where ``rebuild`` writes the unit's text."""
    return texts / split[unit.source_id] / unit.source_id / f"{unit.unit_id}.txt"


def read_unit_text(path: Path, unit: Unit) -> str:
    """The rebuilt text of ``unit``; a text that is not the one ``units.csv`` names stops the script."""
    text = path.read_text(encoding="utf-8").removesuffix("\n") if path.is_file() else None
    if text is None or sha1(text) != unit.sha1:
        raise SystemExit(f"{path}: missing, or not the text units.csv names; run rebuild.py first")
    return text


def training_passages(units: list[Unit], sources: list[dict[str, str]], texts: Path):
    """The training splits' units, their rebuilt texts, gold labels (units x codes, int8) and code ids.

    What the default model learns from, for the shipped vectors and the encoder adapter alike.
    """
    chosen, labels, code_ids = training_units(units, sources)
    split = splits_of(sources)
    unit_texts = [read_unit_text(text_path(unit, split, texts), unit) for unit in chosen]
    return chosen, unit_texts, labels, code_ids


def stored_vectors(target: Path, encoder_sha256: str) -> dict:
    """The vectors already in ``target`` by text SHA-1, if the same encoder made them; else none."""
    import numpy as np

    if not target.is_file():
        return {}
    with np.load(target, allow_pickle=False) as data:
        if str(data["encoder"]) != encoder_sha256:
            return {}
        return dict(zip(data["sha1"].tolist(), data["vectors"], strict=True))


def write_vectors(
    units: list[Unit], sources: list[dict[str, str]], texts: Path, target: Path
) -> tuple[int, int]:
    """The training splits' embeddings (float16), gold labels and text hashes: what the default
    model learns, as numbers. Returns (units written, units encoded now).

    A unit whose vector ``target`` already holds, made by the same encoder (model and adapter), keeps
    it, and needs no text: a spent split joins the training data on a machine that has only its own
    pages. Labels always come from ``gold.csv``. With a new adapter every unit is encoded again.
    """
    import numpy as np

    from qualcode.embeddings import load_encoder

    chosen, labels, code_ids = training_units(units, sources)
    encoder = load_encoder()
    kept = stored_vectors(target, encoder.model_sha256)
    fresh = [unit for unit in chosen if unit.sha1 not in kept]
    split = splits_of(sources)
    fresh_texts = [read_unit_text(text_path(unit, split, texts), unit) for unit in fresh]
    if fresh:
        kept.update(
            zip(
                [unit.sha1 for unit in fresh],
                encoder.encode(fresh_texts).astype(np.float16),
                strict=True,
            )
        )
    save_npz(
        target,
        vectors=np.stack([kept[unit.sha1] for unit in chosen]),
        labels=labels,
        code_ids=np.array(code_ids),
        sha1=np.array([unit.sha1 for unit in chosen]),
        sources=np.array([unit.source_id for unit in chosen]),
        encoder=np.array(encoder.model_sha256),
    )
    return len(chosen), len(fresh)


def save_npz(target: Path, **arrays) -> None:
    """``arrays`` to ``target``, written beside it and renamed into place (qualcode's own way)."""
    import numpy as np

    from qualcode.export.atomic import atomic_file

    with atomic_file(target) as temporary, temporary.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def write_example_vectors(target: Path) -> tuple[int, int]:
    """The default codebook's example and seed texts as float32 vectors, by the adapted encoder (a
    default run) and of its examples by the upstream one (``--no-seed``). Our own texts, so they ship
    as they are; qualcode reads them instead of embedding those texts on a first run."""
    import numpy as np

    from qualcode.classify import examples_from_codebook, seed_examples
    from qualcode.codebook import load_codebook
    from qualcode.embeddings import load_encoder, text_key

    codebook = load_codebook()
    examples = examples_from_codebook(codebook)
    texts = {
        "adapted": sorted({e.text for e in examples + seed_examples(codebook) if e.text.strip()}),
        "upstream": sorted({e.text for e in examples if e.text.strip()}),
    }
    arrays = {}
    for name, chosen in texts.items():
        encoder = load_encoder(adapted=name == "adapted")
        arrays[f"{name}_keys"] = np.array([text_key(text).hex() for text in chosen])
        arrays[f"{name}_vectors"] = encoder.encode(chosen).astype(np.float32)
        arrays[f"{name}_model"] = np.array(encoder.model_sha256)
    save_npz(target, **arrays)
    return len(texts["adapted"]), len(texts["upstream"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pages", type=Path, default=HERE / "pages", help="folder of page texts, <source_id>.txt"
    )
    parser.add_argument("--out", type=Path, default=HERE / "texts", help="where the unit texts go")
    parser.add_argument(
        "--fetch", action="store_true", help="fetch each source URL instead of reading --pages"
    )
    parser.add_argument("--cut", action="store_true", help="(re)make units.csv from the pages")
    parser.add_argument(
        "--cut-new",
        action="store_true",
        help="cut only the sources that have no units yet and append their units to units.csv",
    )
    parser.add_argument(
        "--vectors",
        type=Path,
        metavar="NPZ",
        help="write the training splits' sentence embeddings and gold labels (numbers, no text) "
        "to NPZ, for qualcode's default model; needs qualcode and its model installed",
    )
    parser.add_argument(
        "--example-vectors",
        type=Path,
        metavar="NPZ",
        help="write the default codebook's example and seed texts' vectors to NPZ (run after "
        "changing its examples or the adapter)",
    )
    args = parser.parse_args(argv)
    if args.example_vectors:
        adapted, upstream = write_example_vectors(args.example_vectors)
        print(
            f"{adapted} texts (adapted encoder) and {upstream} (upstream) -> {args.example_vectors}"
        )
        return 0
    sources = read_csv(HERE / "sources.csv")
    if args.cut:
        units = cut_corpus(sources, args.pages)
        write_units(units, HERE / "units.csv")
        print(f"{len(units)} units from {len(sources)} sources -> {HERE / 'units.csv'}")
        return 0
    units = read_units(HERE / "units.csv")
    if args.cut_new:
        new = cut_new(sources, args.pages, units)
        append_units(new, HERE / "units.csv")
        span = f" ({new[0].unit_id}-{new[-1].unit_id})" if new else ""
        print(
            f"{len(new)} new units{span} from {len({u.source_id for u in new})} new sources -> {HERE / 'units.csv'}"
        )
        return 0
    if args.vectors:
        count, encoded = write_vectors(units, sources, args.out, args.vectors)
        print(
            f"{count} units' vectors and labels ({', '.join(TRAINING_SPLITS)} splits; "
            f"{encoded} encoded now, {count - encoded} kept) -> {args.vectors}"
        )
        return 0
    written, missing = rebuild(units, sources, args.pages, args.out, fetch=args.fetch)
    print(f"{written} of {len(units)} units rebuilt -> {args.out}")
    if missing:
        print(
            f"{len(missing)} units not found (their page changed or is missing): {', '.join(missing[:20])}"
            + (" ..." if len(missing) > 20 else ""),
            file=sys.stderr,
        )
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
