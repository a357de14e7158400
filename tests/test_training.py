"""A run's classifier comes from the model cache or is trained in another process while the documents are read."""

import dataclasses
import multiprocessing

import numpy as np
import pytest

from qualcode.codebook import load_codebook
from qualcode.coding import CodingOptions
from qualcode.training import background_training_available, start_classifier, training_process

needs_fork = pytest.mark.skipif(
    not background_training_available(),
    reason="no training in a process of its own here: no fork, or a single core",
)


def _training_children():
    return [
        child for child in multiprocessing.active_children() if child.name == "qualcode-training"
    ]


@needs_fork
def test_a_model_trained_in_the_background_is_the_one_trained_here(nlp):
    codebook, options = load_codebook(), CodingOptions(model_cache=False)
    with start_classifier(codebook, options, nlp=nlp, background=False) as here:
        assert not here.in_background and here.description is None  # not trained yet
        expected = here.result()
    with start_classifier(codebook, options, background=True) as elsewhere:
        assert elsewhere.in_background and _training_children()
        model = elsewhere.result()
    assert not _training_children()
    assert elsewhere.description == here.description == "trained"
    assert model.codes == expected.codes and model.code_ids == expected.code_ids
    np.testing.assert_array_equal(model.vocabulary, expected.vocabulary)
    np.testing.assert_allclose(model.weights, expected.weights)


def test_a_cached_model_is_ready_without_training(nlp, tmp_path, monkeypatch):
    monkeypatch.setenv("QUALCODE_CACHE_DIR", str(tmp_path))
    codebook, options = load_codebook(), CodingOptions()
    with start_classifier(codebook, options, nlp=nlp, background=False) as first:
        trained = first.result()
    assert first.description.startswith("trained (cached as ")
    with start_classifier(codebook, options, nlp=nlp) as second:
        assert (
            second.description.startswith("loaded from the model cache (")
            and not second.in_background
        )
        assert second.result().codes == trained.codes
    assert second.description.startswith("loaded from the model cache (")


@needs_fork
def test_a_training_no_one_waits_for_is_stopped():
    with start_classifier(
        load_codebook(), CodingOptions(model_cache=False), background=True
    ) as pending:
        assert pending.in_background and _training_children()
    assert not _training_children()


@needs_fork
def test_a_failure_in_the_training_process_is_raised_where_the_model_is_asked_for(nlp):
    from qualcode.classify import TrainingExample, training_matrix

    data = training_matrix(
        [
            TrainingExample(text, {"trust": label})
            for text, label in (
                ("I told her everything", 1),
                ("she kept her word", 1),
                ("the bus was late", 0),
                ("it rained", 0),
            )
        ],
        nlp,
    )
    with training_process() as trainer:
        trainer.fit(
            ["trust"], dataclasses.replace(data, matrix=None)
        )  # not a matrix: fitting fails there
        with pytest.raises(TypeError):
            trainer.result()
        assert not _training_children()


@needs_fork
def test_a_training_process_started_before_the_data_is_known_trains_the_same_model(
    nlp, tmp_path, monkeypatch
):
    monkeypatch.setenv("QUALCODE_CACHE_DIR", str(tmp_path))
    codebook, options = load_codebook(), CodingOptions()
    with training_process() as trainer:
        assert trainer is not None and _training_children()
        with start_classifier(codebook, options, trainer=trainer) as early:
            assert early.in_background
            model = early.result()
    assert not _training_children()
    assert early.description.startswith("trained (cached as ")
    with start_classifier(codebook, options, nlp=nlp, background=False) as cached:
        assert cached.description.startswith("loaded from the model cache (")
        np.testing.assert_allclose(cached.result().weights, model.weights)
    with training_process() as unused:
        with start_classifier(codebook, options, trainer=unused) as again:
            assert (
                not again.in_background and not _training_children()
            )  # the cache had it: stopped unused


@needs_fork
def test_training_data_that_cannot_be_sent_fails_where_it_is_sent():
    import pickle

    with training_process() as trainer:
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            trainer.fit(["trust"], lambda: None)
    assert not _training_children()


def test_a_training_process_ends_when_stopped_whatever_handler_the_command_installed():
    import subprocess
    import sys

    # The command's SIGTERM handler is inherited by a forked child; one that does not exit (here:
    # one that does nothing) kept a terminated training process alive and its parent waiting.
    script = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, lambda *_: None)\n"
        "from qualcode.training import TrainingProcess\n"
        "trainer = TrainingProcess()\n"
        "trainer.stop()\n"
        "print('stopped')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stopped"
