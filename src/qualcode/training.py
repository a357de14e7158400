"""Where a coding run's classifier comes from: the model cache, or training started early in another process.

Training needs the codebook and the labelled examples but not the documents. ``start_classifier``
is called as soon as those are known (the command line calls it right after loading the codebook):
a model trained on the same data before comes from the model cache; otherwise a separate process
trains it while this one reads the documents, builds the pipeline and compiles the rules. Importing
scikit-learn alone takes about a second, which a first run used to spend waiting.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator, Sequence

from qualcode.classify import (ClassifierModel, TrainingExample, examples_from_codebook, seed_examples, train_model)
from qualcode.models import Codebook


def training_examples(codebook: Codebook, options, training: Sequence[TrainingExample] = (),
                      weak: Sequence[TrainingExample] = ()) -> list[TrainingExample]:
    """What the classifier learns from: human labels, codebook examples, the seed set, and weak rule labels if asked.

    ``options`` is the run's ``coding.CodingOptions``.
    """
    examples = list(training) + examples_from_codebook(codebook)
    if options.seed:
        examples += seed_examples(codebook)
    if options.weak_labels:
        examples += list(weak)
    return examples


def cached_model(codebook: Codebook, options,
                 examples: Sequence[TrainingExample]) -> tuple[ClassifierModel | None, str | None]:
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


def classifier_model(codebook: Codebook, options, examples: Sequence[TrainingExample],
                     nlp) -> tuple[ClassifierModel, str]:
    """The classifier for these examples, from the model cache when it was trained on the same data before."""
    model, key = cached_model(codebook, options, examples)
    if model is not None:
        return model, loaded(key)
    model = train_model(codebook.code_ids, examples, nlp)
    return model, remember(model, key)


def _train(code_ids: tuple[str, ...], examples: list[TrainingExample], spacy_model: str, nlp) -> ClassifierModel:
    from qualcode.segment import build_pipeline

    return train_model(code_ids, examples, nlp if nlp is not None else build_pipeline(spacy_model))


def _train_and_send(connection, code_ids, examples, spacy_model, nlp) -> None:
    """The training process: one message back, ("model", model) or ("error", exception)."""
    from qualcode.parallel import die_with_parent

    die_with_parent()
    try:
        outcome = ("model", _train(code_ids, examples, spacy_model, nlp))
    except BaseException as error:  # reported to the run, which raises it
        outcome = ("error", error)
    try:
        connection.send(outcome)
    except Exception as error:  # an exception that cannot be pickled
        connection.send(("error", RuntimeError(f"training failed: {outcome[1]!r} ({error})")))
    finally:
        connection.close()


class PendingClassifier:
    """A run's classifier while it is loaded or trained; ``result`` waits for it.

    ``description`` says for the Run sheet where the model came from once ``result`` has returned.
    """

    def __init__(self, code_ids: Sequence[str], examples: list[TrainingExample], spacy_model: str, *,
                 key: str | None = None, model: ClassifierModel | None = None, background: bool = False, nlp=None):
        self.code_ids = tuple(code_ids)
        self._examples, self._spacy_model, self._key, self._nlp = examples, spacy_model, key, nlp
        self._model = model
        self.description = loaded(key) if model is not None else None
        self._process = self._receive = None
        self.in_background = model is None and background
        if self.in_background:
            # fork: the child inherits the examples and pipeline instead of receiving them pickled.
            context = multiprocessing.get_context("fork")
            self._receive, send = context.Pipe(duplex=False)
            self._process = context.Process(target=_train_and_send, name="qualcode-training", daemon=True,
                                            args=(send, self.code_ids, examples, spacy_model, nlp))
            self._process.start()
            send.close()

    def done(self) -> bool:
        """Whether ``result`` would return without waiting (or training here)."""
        return self._model is not None or (self._receive is not None and self._receive.poll())

    def result(self) -> ClassifierModel:
        if self._model is not None:
            return self._model
        if self._receive is None:
            model = _train(self.code_ids, self._examples, self._spacy_model, self._nlp)
        else:
            try:
                kind, value = self._receive.recv()
            except EOFError:
                raise RuntimeError(f"the classifier's training process ended with exit code "
                                   f"{self._process.exitcode} and sent no model") from None
            finally:
                self.close()
            if kind == "error":
                raise value
            model = value
        self._model = model
        self.description = remember(model, self._key)
        return model

    def close(self) -> None:
        """Stop a training no one will wait for (a failed run); harmless once the model is in."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.terminate()
            self._process.join()
            self._receive.close()
            self._process = None


def background_training_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


@contextlib.contextmanager
def start_classifier(codebook: Codebook, options, training: Sequence[TrainingExample] = (), *,
                     background: bool = True, nlp=None) -> Iterator[PendingClassifier]:
    """The classifier of a run with these ``options`` (``coding.CodingOptions``) and human labels.

    From the model cache when it has the model; otherwise trained in a separate process from now
    on when ``background`` (and the platform can fork), else here when ``result`` is first asked.
    ``nlp`` is the pipeline to tokenize with (built from ``options.spacy_model`` if not given).
    Weak labels and human decisions are not known before the documents are coded, so a run that
    uses them trains its classifier itself (``coding.run_coding``).
    """
    examples = training_examples(codebook, options, training)
    model, key = cached_model(codebook, options, examples)
    pending = PendingClassifier(codebook.code_ids, examples, options.spacy_model, key=key, model=model,
                                background=background and background_training_available(), nlp=nlp)
    try:
        yield pending
    finally:
        pending.close()
