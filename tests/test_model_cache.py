"""Trained models kept by the hash of their data: a re-run loads what it trained, a change retrains."""

import numpy as np
import openpyxl
import pytest
from click.testing import CliRunner

from conftest import SAMPLE, run_sheet
from qualcode.classify import TrainingExample, train_model
from qualcode.cli import cli
from qualcode.features import ngram_hashes
from qualcode.model_cache import KEEP_MODELS, load_model, model_key, store_model

TEXTS = {
    1: [
        "she never had time for us",
        "nobody ever rang back",
        "always rushing off",
        "weeks before a call",
    ],
    0: ["we had chips after school", "the bus was late", "it rained all week", "I like drawing"],
}
EXAMPLES = [
    TrainingExample(text, {"time": label}, group=f"g{index}")
    for label, texts in TEXTS.items()
    for index, text in enumerate(texts)
]


@pytest.fixture(scope="module")
def model(nlp):
    return train_model(["time", "trust"], EXAMPLES, nlp)


def test_a_stored_model_loads_with_identical_predictions(model, nlp, tmp_path):
    key = model_key(["time", "trust"], EXAMPLES, "blank:en")
    store_model(tmp_path, key, model)
    loaded = load_model(tmp_path, key)
    assert (
        loaded is not None
        and loaded.codes == model.codes
        and loaded.training_counts == model.training_counts
    )
    features = ngram_hashes(nlp.tokenizer.pipe(["she never rang back", "the bus again"]))
    np.testing.assert_array_equal(
        loaded.probabilities(loaded.features(features)),
        model.probabilities(model.features(features)),
    )
    assert loaded.explain(loaded.features(features), 0, "time") == model.explain(
        model.features(features), 0, "time"
    )
    assert [path.suffix for path in (tmp_path / "models").iterdir()] == [".npz"]


def test_the_key_changes_with_labels_codes_and_tokenizer():
    key = model_key(["time", "trust"], EXAMPLES, "blank:en")
    relabelled = [TrainingExample(EXAMPLES[0].text, {"time": 0}, group="g0"), *EXAMPLES[1:]]
    assert model_key(["time", "trust"], relabelled, "blank:en") != key
    assert model_key(["time"], EXAMPLES, "blank:en") != key
    assert model_key(["time", "trust"], EXAMPLES, "en_core_web_sm") != key
    assert model_key(["time", "trust"], list(EXAMPLES), "blank:en") == key


def test_an_unreadable_cache_file_means_training_again(model, tmp_path):
    store_model(tmp_path, "k", model)
    (tmp_path / "models" / "k.npz").write_bytes(b"not a zip file")
    assert load_model(tmp_path, "k") is None
    assert load_model(tmp_path, "missing") is None


def test_only_the_most_recent_models_are_kept(model, tmp_path):
    for index in range(KEEP_MODELS + 3):
        store_model(tmp_path, f"key{index}", model)
    kept = sorted(path.stem for path in (tmp_path / "models").glob("*.npz"))
    assert len(kept) == KEEP_MODELS and "key0" not in kept and f"key{KEEP_MODELS + 2}" in kept
    assert not list((tmp_path / "models").glob(".model.*"))


def test_a_rerun_loads_the_model_and_writes_the_same_workbook(tmp_path, monkeypatch):
    monkeypatch.setenv("QUALCODE_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    outputs = []
    for name, extra in (
        ("first.xlsx", []),
        ("second.xlsx", []),
        ("uncached.xlsx", ["--no-model-cache"]),
    ):
        # The model cache keeps n-gram models; embeddings have their own cache (test_embeddings).
        result = runner.invoke(
            cli,
            ["code", str(SAMPLE), "-o", str(tmp_path / name), "--representation", "ngrams", *extra],
        )
        assert result.exit_code == 0, result.output
        outputs.append(tmp_path / name)
    runs = [run_sheet(path) for path in outputs]
    assert runs[0]["option classifier model"].startswith("trained (cached as ")
    assert runs[1]["option classifier model"].startswith("loaded from the model cache (")
    assert runs[2]["option classifier model"] == "trained"
    codings = [
        list(openpyxl.load_workbook(path, read_only=True)["Codings"].iter_rows(values_only=True))
        for path in outputs
    ]
    assert len(codings[0]) > 100
    assert codings[0] == codings[1] == codings[2]
