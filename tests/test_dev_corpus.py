"""The development corpus of real writing: its index, and the script that rebuilds its texts."""

import csv
import importlib.util
import re

import pytest

from conftest import REPO, SHARED, needs_model

DEV = REPO / "corpora" / "dev"


def _address(url: str) -> str:
    """A page's address for comparing: no scheme, www or trailing slash, in lower case.

    A query can name the page itself (a blog's ?p=1911); only tracking parameters are dropped.
    """
    base, _, query = re.sub(r"^https?://(www\.)?", "", url.strip()).partition("?")
    kept = "&".join(part for part in query.split("&") if part and not part.startswith("utm_"))
    return (base.rstrip("/") + ("?" + kept if kept else "")).lower()


# The splits made after the first was scored, in the order they were made.
LATER_SPLITS = tuple(f"test{number}" for number in range(2, 14))


@pytest.fixture(scope="module")
def rebuild():
    import sys

    spec = importlib.util.spec_from_file_location("qualcode_dev_rebuild", DEV / "rebuild.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


# Written for this test: a page as a reader's browser shows it, menus and a cut-off last line included.
PAGE = """Skip to content
Home | About | Blog

My worker and me

Posted on 3 May

I met my new worker in March. She sat with me in the kitchen and asked what I wanted from the plan, and she wrote it down.
She rang back the same day when I left a message.
Short line here.

Then in June she told me she was moving to another team. Nobody had said anything before, and I had to start again with someone who had not read my file or met my kids. It felt like the whole year had been wasted and I would have to explain everything from the beginning once more to a stranger who did not know us.

Share this:
The next worker came twice and then went off sick, so for most of the autumn there was nob"""


def test_units_gather_prose_paragraphs_and_leave_out_menus_and_a_cut_off_line(rebuild):
    units = rebuild.cut_units("S1", PAGE)
    texts = [rebuild.unit_text(paragraphs) for _, paragraphs in units]
    assert len(units) == 2
    assert texts[0].startswith("I met my new worker in March.") and texts[0].endswith(
        "left a message."
    )
    assert texts[0].count("\n\n") == 1
    assert not any("Short line here." in text for text in texts)  # under five words: not prose
    assert texts[1].startswith("Then in June") and texts[1].endswith("did not know us.")
    assert not any("Skip to content" in text or "nob" == text[-3:] for text in texts)


def test_a_unit_is_found_by_its_hash_in_a_page_that_moved_around_it(rebuild):
    first, paragraphs = rebuild.cut_units("S1", PAGE)[1]
    text = rebuild.unit_text(paragraphs)
    unit = rebuild.Unit(
        "U0002", "S1", first, len(paragraphs), len(text.split()), len(text), rebuild.sha1(text)
    )
    moved = "Cookie notice\nAccept all\n" + PAGE.replace(
        "Then in June she told", "Then in June  she\ttold"
    )
    assert rebuild.find_unit(unit, rebuild.paragraphs_of(moved)) == text
    edited = PAGE.replace("wasted", "lost")
    assert rebuild.find_unit(unit, rebuild.paragraphs_of(edited)) is None


def test_the_text_of_an_html_page_gives_the_same_units(rebuild):
    body = "".join(f"<p>{line}</p>" for line in PAGE.splitlines() if line)
    html = f"<html><head><script>var x = 'I met my new worker';</script><style>p {{}}</style></head><body>{body}</body></html>"
    expected = [rebuild.unit_text(paragraphs) for _, paragraphs in rebuild.cut_units("S1", PAGE)]
    got = [
        rebuild.unit_text(paragraphs)
        for _, paragraphs in rebuild.cut_units("S1", rebuild.text_of_html(html))
    ]
    assert got == expected


def test_rebuild_writes_each_unit_to_its_split_and_reports_what_it_cannot_find(rebuild, tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "S1.txt").write_text(PAGE, encoding="utf-8")
    sources = [
        {"source_id": "S1", "url": "http://127.0.0.1/none", "split": "test"},
        {"source_id": "S2", "url": "http://127.0.0.1/none", "split": "dev"},
    ]
    units = rebuild.cut_corpus(sources[:1], pages)
    units.append(rebuild.Unit("U0003", "S2", 0, 1, 10, 50, "0" * 40))
    written, missing = rebuild.rebuild(units, sources, pages, tmp_path / "texts")
    assert (written, missing) == (2, ["U0003"])
    folder = tmp_path / "texts" / "test" / "S1"
    assert sorted(path.name for path in folder.iterdir()) == ["U0001.txt", "U0002.txt"]
    assert (folder / "U0002.txt").read_text(encoding="utf-8").startswith("Then in June")
    assert (
        units[1].segment_id
        == f"S1/U0002.txt:0-{len((folder / 'U0002.txt').read_text(encoding='utf-8')) - 1}"
    )


def _rows(name):
    with (DEV / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_index_is_whole_and_holds_no_text():
    sources = {row["source_id"]: row for row in _rows("sources.csv")}
    units = _rows("units.csv")
    assert list(units[0]) == [
        "unit_id",
        "source_id",
        "first_paragraph",
        "paragraphs",
        "words",
        "chars",
        "sha1",
    ]
    assert [row["unit_id"] for row in units] == [f"U{i:04d}" for i in range(1, len(units) + 1)]
    assert len(units) >= 600 and len({row["source_id"] for row in units}) >= 40
    assert all(row["source_id"] in sources for row in units)
    assert all(re.fullmatch(r"[0-9a-f]{40}", row["sha1"]) for row in units)
    assert {row["split"] for row in sources.values()} == {"dev", "test", *LATER_SPLITS}
    # The first split: a quarter of the original sources set aside as test before anything was tuned.
    original = [row for row in sources.values() if row["split"] in ("dev", "test")]
    test_share = sum(row["split"] == "test" for row in original) / len(original)
    assert 0.2 <= test_share <= 0.3


@pytest.mark.parametrize("split", LATER_SPLITS)
def test_a_later_test_split_is_new_sources_whose_units_come_after_the_earlier_ones(split):
    sources = {row["source_id"]: row for row in _rows("sources.csv")}
    units = _rows("units.csv")
    chosen = {source_id for source_id, row in sources.items() if row["split"] == split}
    assert len(chosen) >= 40
    inside = [row["split"] == split for row in (sources[unit["source_id"]] for unit in units)]
    first = inside.index(True)
    last = len(inside) - inside[::-1].index(True)
    # One block, appended after every unit of the splits made before it ...
    assert all(inside[first:last]) and not any(inside[:first])
    # ... and followed only by the units of the splits made after it.
    later = {sources[unit["source_id"]]["split"] for unit in units[last:]}
    assert later <= set(LATER_SPLITS[LATER_SPLITS.index(split) + 1 :])
    assert sum(inside) >= 150 and {unit["source_id"] for unit in units[first:last]} == chosen

    earlier = {_address(row["url"]) for row in sources.values() if row["split"] != split}
    new = {_address(sources[source_id]["url"]) for source_id in chosen}
    assert len(new) == len(chosen) and not earlier & new  # new pages, each once


# Written for this test: a second page, of a source added after the first was cut.
NEW_PAGE = """Blog | Contact

Our review meeting

The review was held at school because my daughter wanted it there. Her social worker had read the plan and asked her first what she thought, before any of the adults spoke.
We left with three things to do and a date for the next visit written in her diary.

Comments are closed."""


def test_cut_new_appends_the_units_of_new_sources_and_leaves_the_rows_already_there(
    rebuild, tmp_path
):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "S1.txt").write_text(PAGE, encoding="utf-8")
    (pages / "S2.txt").write_text(NEW_PAGE, encoding="utf-8")
    index = tmp_path / "units.csv"
    old_sources = [{"source_id": "S1", "url": "http://127.0.0.1/one", "split": "dev"}]
    rebuild.write_units(rebuild.cut_corpus(old_sources, pages), index)
    before = index.read_bytes()
    sources = old_sources + [{"source_id": "S2", "url": "http://127.0.0.1/two", "split": "test2"}]
    new = rebuild.cut_new(sources, pages, rebuild.read_units(index))
    rebuild.append_units(new, index)
    assert [(unit.unit_id, unit.source_id) for unit in new] == [("U0003", "S2")]
    assert index.read_bytes().startswith(before)
    units = rebuild.read_units(index)
    assert [unit.unit_id for unit in units] == ["U0001", "U0002", "U0003"]
    assert rebuild.cut_new(sources, pages, units) == []  # nothing left to cut
    # A source whose page is not on this machine (one that gave no unit, say) is not cut.
    absent = sources + [{"source_id": "S3", "url": "http://127.0.0.1/three", "split": "test2"}]
    assert rebuild.cut_new(absent, pages, units) == []
    written, missing = rebuild.rebuild(units, sources, pages, tmp_path / "texts")
    assert (written, missing) == (3, [])
    text = (tmp_path / "texts" / "test2" / "S2" / "U0003.txt").read_text(encoding="utf-8")
    assert text.startswith("The review was held at school") and text.endswith("in her diary.\n")


def test_no_held_out_page_is_in_the_corpus():
    listing = SHARED / "heldout-sources.md"
    if not listing.is_file():
        pytest.skip(f"{listing} is not on this machine")

    held_out = {
        _address(line[2:]) for line in listing.read_text().splitlines() if line.startswith("- http")
    }
    assert held_out and not held_out & {_address(row["url"]) for row in _rows("sources.csv")}


def test_the_texts_match_the_index_where_they_have_been_rebuilt():
    texts = DEV / "texts"
    if not texts.is_dir():
        pytest.skip("the unit texts are not rebuilt here (python corpora/dev/rebuild.py)")
    import hashlib

    splits = {row["source_id"]: row["split"] for row in _rows("sources.csv")}
    for row in _rows("units.csv"):
        path = texts / splits[row["source_id"]] / row["source_id"] / f"{row['unit_id']}.txt"
        if path.is_file():
            text = path.read_text(encoding="utf-8").removesuffix("\n")
            assert hashlib.sha1(text.encode("utf-8")).hexdigest() == row["sha1"], path
            assert len(text) == int(row["chars"]), path


@needs_model
def test_vectors_are_kept_without_their_texts_when_the_same_encoder_made_them(rebuild, tmp_path):
    import numpy as np

    from qualcode.embeddings import load_encoder

    shipped = REPO / "src" / "qualcode" / "data" / "dev-corpus-vectors.npz"
    target = tmp_path / "vectors.npz"
    target.write_bytes(shipped.read_bytes())
    units, sources = rebuild.read_units(DEV / "units.csv"), _rows("sources.csv")
    no_texts = tmp_path / "texts"
    # Every training unit's vector is in the file: no text is read, and the file comes back as it was.
    count, encoded = rebuild.write_vectors(units, sources, no_texts, target)
    assert encoded == 0 and count == len(rebuild.training_units(units, sources)[0])
    with np.load(shipped) as before, np.load(target) as after:
        assert before.files == after.files
        assert all(np.array_equal(before[name], after[name]) for name in before.files)
        # Vectors another encoder made are not kept: the units' texts are needed again.
        other = {name: before[name] for name in before.files} | {"encoder": np.array("0" * 64)}
    np.savez(target, **other)
    assert rebuild.stored_vectors(target, load_encoder().model_sha256) == {}
    with pytest.raises(SystemExit, match=r"texts/dev/F001/U0001\.txt: missing"):
        rebuild.write_vectors(units, sources, no_texts, target)


def test_the_learning_curve_rotates_four_quarters_starting_from_the_one_score_reviews():
    import sys

    sys.path.insert(0, str(DEV))
    try:
        import learning_curve
        from score import reviewed_sources
    finally:
        sys.path.remove(str(DEV))
    sources = [f"F{number:03d}" for number in range(1, 62)]
    quarters = learning_curve._quarters(sources, reviewed_sources)
    assert quarters[0] == reviewed_sources(sources)
    assert sorted(len(quarter) for quarter in quarters) == [15, 15, 15, 16]
    assert set().union(*quarters) == set(sources)
    assert sum(len(quarter) for quarter in quarters) == len(sources)  # no source in two quarters
    splits = ["dev", "test", "test9", "test13", "test11", "test12", "test2"]
    assert learning_curve._unseen_splits(splits) == ["test11", "test12", "test13"]
