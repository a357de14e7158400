"""Where a coding run's classifier comes from: the model cache, or training started early in another process.

Training needs the codebook and the labelled examples but not the documents, and it splits where
the libraries split: tokenizing the examples needs spaCy (``classify.training_matrix``), fitting
needs scikit-learn (``classify.fit_model``), whose import alone takes about a second. The command
line starts a ``TrainingProcess`` first thing, which imports scikit-learn while this process
builds the pipeline and reads the codebook; ``start_classifier`` then takes the model from the
model cache, or tokenizes the examples here and has that process fit them while the documents
are read and the rules compile.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterator, Sequence

from qualcode.classify import (
    ClassifierModel,
    TrainingExample,
    TrainingMatrix,
    examples_from_codebook,
    fit_model,
    seed_examples,
    train_model,
    training_matrix,
)
from qualcode.models import Codebook
from qualcode.parallel import sigterm_held_while_forking


def training_examples(
    codebook: Codebook,
    options,
    training: Sequence[TrainingExample] = (),
    weak: Sequence[TrainingExample] = (),
) -> list[TrainingExample]:
    """What the classifier learns from: human labels, codebook examples, the seed set, and weak rule labels if asked.

    ``options`` is the run's ``coding.CodingOptions``.
    """
    examples = list(training) + examples_from_codebook(codebook)
    if options.seed:
        examples += seed_examples(codebook)
    if options.weak_labels:
        examples += list(weak)
    return examples


def cached_model(
    codebook: Codebook, options, examples: Sequence[TrainingExample]
) -> tuple[ClassifierModel | None, str | None]:
    """The model trained on exactly these examples before, if the cache has it, and its cache key.

    Both are None when the run does not use the model cache.
    """
    if not options.model_cache:
        return None, None
    from qualcode.model_cache import default_cache_dir, load_model, model_key

    key = model_key(codebook.code_ids, examples, options.spacy_model)
    return load_model(default_cache_dir(), key), key


def remember(model: ClassifierModel, key: str | None) -> str:
    """Keep a freshly trained model in the cache; say so for the Run sheet."""
    if key is None:
        return "trained"
    from qualcode.model_cache import default_cache_dir, store_model

    store_model(default_cache_dir(), key, model)
    return f"trained (cached as {key[:12]})"


def loaded(key: str) -> str:
    return f"loaded from the model cache ({key[:12]})"


def classifier_model(
    codebook: Codebook, options, examples: Sequence[TrainingExample], nlp
) -> tuple[ClassifierModel, str]:
    """The classifier for these examples, from the model cache when it was trained on the same data before."""
    model, key = cached_model(codebook, options, examples)
    pending = PendingClassifier(
        codebook.code_ids, examples, options.spacy_model, key=key, model=model, nlp=nlp
    )
    return pending.result(), pending.description


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (to be raised in the run as it is), else a RuntimeError saying what it was."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"training the classifier failed: {error!r}")


def _serve_one_fit(connection, parents_end) -> None:
    """The training process: import scikit-learn, wait for (code ids, ``TrainingMatrix``), send back the outcome.

    The outcome is ("model", ClassifierModel) or ("error", exception).
    """
    import importlib

    from qualcode.parallel import die_with_parent

    parents_end.close()  # so that the parent closing its end, or dying, reads here as the end of input
    die_with_parent()
    outcome = None
    try:
        for module in (
            "sklearn.feature_extraction.text",
            "sklearn.linear_model",
            "sklearn.model_selection",
        ):
            importlib.import_module(module)
    except BaseException as error:  # reported when a model is asked for, raised there
        outcome = ("error", _portable(error))
    try:
        code_ids, data = connection.recv()
    except EOFError:  # no training asked for: the model was in the cache, or the run has ended
        return
    if outcome is None:
        try:
            outcome = ("model", fit_model(code_ids, data))
        except BaseException as error:
            outcome = ("error", _portable(error))
    try:
        connection.send(outcome)
    finally:
        connection.close()


class TrainingProcess:
    """A process that imports scikit-learn as soon as it starts, then fits one model when asked.

    Importing scikit-learn takes about a second. Started before the training data is known (the
    command line starts it first thing), the process has that behind it by the time ``fit`` is
    called; meanwhile this process imports spaCy, reads the codebook and tokenizes the examples
    (``classify.training_matrix``), so the two halves of training overlap. A run whose model comes
    from the cache stops it unused.
    """

    def __init__(self):
        context = multiprocessing.get_context("fork")
        self._connection, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve_one_fit,
            args=(theirs, self._connection),
            name="qualcode-training",
            daemon=True,
        )
        with sigterm_held_while_forking():
            self._process.start()
        theirs.close()
        self._sending: threading.Thread | None = None

    def fit(self, code_ids: Sequence[str], data: TrainingMatrix) -> None:
        from multiprocessing.reduction import ForkingPickler

        payload = ForkingPickler.dumps(
            (tuple(code_ids), data)
        )  # here, so that a failure is raised here
        # The data (a few MB) fills the pipe, and the process reads it only once its imports are
        # done: sending from a thread keeps this process from waiting on the pipe meanwhile.
        self._sending = threading.Thread(target=self._send, args=(payload,), daemon=True)
        self._sending.start()

    def _send(self, payload) -> None:
        with contextlib.suppress(OSError):  # the process was stopped: no one needs the data now
            self._connection.send_bytes(payload)

    def result(self) -> ClassifierModel:
        if self._process is None:
            raise RuntimeError(
                "the classifier's training process was stopped before it sent a model"
            )
        try:
            kind, value = self._connection.recv()
        except EOFError:
            raise RuntimeError(
                f"the classifier's training process ended with exit code {self._process.exitcode} "
                "and sent no model"
            ) from None
        finally:
            self.stop()
        if kind == "error":
            raise value
        return value

    def stop(self) -> None:
        """End the process, whether or not it trained (a failed run, or a model from the cache)."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.terminate()
            self._process.join()
            if self._sending is not None:
                self._sending.join()
            self._connection.close()
            self._process = None


class PendingClassifier:
    """A run's classifier while it is loaded or trained; ``result`` waits for it.

    ``description`` says for the Run sheet where the model came from once ``result`` has returned.
    With a ``trainer``, the examples are tokenized here and fitted there.
    """

    def __init__(
        self,
        code_ids: Sequence[str],
        examples: list[TrainingExample],
        spacy_model: str,
        *,
        key: str | None = None,
        model: ClassifierModel | None = None,
        trainer: TrainingProcess | None = None,
        nlp=None,
    ):
        self.code_ids = tuple(code_ids)
        self._examples, self._spacy_model, self._key, self._nlp = examples, spacy_model, key, nlp
        self._model = model
        self.description = loaded(key) if model is not None else None
        self._trainer = trainer if model is None else None
        self.in_background = self._trainer is not None
        if self._trainer is not None:
            self._trainer.fit(self.code_ids, training_matrix(examples, self._pipeline()))

    def _pipeline(self):
        """The pipeline the examples are tokenized with: the run's, else one built from ``spacy_model``."""
        if self._nlp is None:
            from qualcode.segment import build_pipeline

            self._nlp = build_pipeline(self._spacy_model)
        return self._nlp

    def result(self) -> ClassifierModel:
        if self._model is None:
            if self._trainer is not None:
                self._model = self._trainer.result()
            else:
                self._model = train_model(self.code_ids, self._examples, self._pipeline())
            self.description = remember(self._model, self._key)
        return self._model


def background_training_available() -> bool:
    """Whether training can run in a process of its own: the platform can fork and there is a core to spare."""
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


@contextlib.contextmanager
def start_classifier(
    codebook: Codebook,
    options,
    training: Sequence[TrainingExample] = (),
    *,
    background: bool = True,
    trainer: TrainingProcess | None = None,
    nlp=None,
) -> Iterator[PendingClassifier]:
    """The classifier of a run with these ``options`` (``coding.CodingOptions``) and human labels.

    From the model cache when it has the model; otherwise trained from now on in ``trainer`` (a
    ``TrainingProcess`` started earlier) or, when ``background`` and ``background_training_available``,
    in a new one; else here when ``result`` is first asked. ``nlp`` is the pipeline to tokenize with
    (built from ``options.spacy_model`` if not given). ``trainer`` is stopped on leaving.
    Weak labels and human decisions are not known before the documents are coded, so a run that
    uses them trains its classifier itself (``coding.run_coding``).
    """
    try:
        examples = training_examples(codebook, options, training)
        model, key = cached_model(codebook, options, examples)
        if trainer is not None and model is not None:
            trainer.stop()  # not needed: the cache had the model
            trainer = None
        if model is None and trainer is None and background and background_training_available():
            trainer = TrainingProcess()
        yield PendingClassifier(
            codebook.code_ids,
            examples,
            options.spacy_model,
            key=key,
            model=model,
            trainer=trainer,
            nlp=nlp,
        )
    finally:
        if trainer is not None:
            trainer.stop()


@contextlib.contextmanager
def training_process(wanted: bool = True) -> Iterator[TrainingProcess | None]:
    """A ``TrainingProcess`` started now when ``wanted`` and ``background_training_available``; stopped on leaving."""
    trainer = TrainingProcess() if wanted and background_training_available() else None
    try:
        yield trainer
    finally:
        if trainer is not None:
            trainer.stop()
