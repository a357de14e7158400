"""The sample corpus and its gold coding stay in step with the segmenter."""

import csv

from conftest import REPO, SAMPLE
from qualcode.codebook import load_codebook
from qualcode.ingest import read_documents
from qualcode.segment import segment_documents


def test_gold_covers_every_participant_segment_at_the_default_units():
    corpus = read_documents([SAMPLE])
    segments = {
        s.segment_id: s for s in segment_documents(corpus.documents) if not s.is_interviewer
    }
    with (REPO / "corpora" / "sample-gold.csv").open(newline="", encoding="utf-8") as handle:
        gold = list(csv.DictReader(handle))
    assert {row["segment_id"] for row in gold} == set(segments)
    for row in gold:
        assert row["text"] == segments[row["segment_id"]].text
    code_ids = load_codebook().code_ids
    for code_id in code_ids:
        assert {row[code_id] for row in gold} == {"0", "1"}, f"{code_id} is used and not used"


def test_sample_has_the_promised_variety():
    corpus = read_documents([SAMPLE])
    kinds = [document.kind for document in corpus.documents]
    assert (
        kinds.count("transcript") >= 8 and kinds.count("essay") >= 4 and kinds.count("survey") >= 60
    )
    assert {file.path.rsplit(".", 1)[-1] for file in corpus.files} >= {
        "txt",
        "md",
        "vtt",
        "docx",
        "csv",
    }
