"""Trained classifier models kept on disk by the hash of what they were trained on.

Researchers re-run ``qualcode code`` after every codebook change, and most changes (a phrase, a
pattern, a definition) leave the labelled data alone. Training is quick; importing
scikit-learn to do it is not (about a second), so a re-run with the same data, code ids,
tokenizer and library versions loads the arrays it trained last time instead. The files are
``.npz`` arrays read with ``allow_pickle=False``: loading one runs no code. A cache that cannot
be read or written is skipped with a note, never an error.

Location: ``$QUALCODE_CACHE_DIR``, else ``$XDG_CACHE_HOME/qualcode``, else ``~/.cache/qualcode``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from qualcode.classify import MODEL_VERSION, ClassifierModel, CodeModel, TrainingExample
from qualcode.features import FEATURE_VERSION

logger = logging.getLogger(__name__)

# Enough for an evaluation of every representation (five folds each for embeddings and both) and
# the coding runs around it: fewer, and a re-run of evaluate fits its folds again.
KEEP_MODELS = 20


def default_cache_dir() -> Path:
    if os.environ.get("QUALCODE_CACHE_DIR"):
        return Path(os.environ["QUALCODE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qualcode"


def model_key(
    code_ids: Sequence[str], examples: Sequence[TrainingExample], spacy_model: str
) -> str:
    """SHA-256 of everything that decides the model: data, code ids, tokenizer, feature and library versions."""
    digest = hashlib.sha256()
    versions = {name: metadata.version(name) for name in ("scikit-learn", "spacy", "numpy")}
    digest.update(
        json.dumps([MODEL_VERSION, FEATURE_VERSION, spacy_model, versions, list(code_ids)]).encode()
    )
    for example in examples:
        digest.update(
            json.dumps(
                [
                    example.text,
                    sorted(example.labels.items()),
                    example.weight,
                    example.group,
                    example.origin,
                ]
            ).encode()
        )
        digest.update(b"\x1e")
    return digest.hexdigest()


def embedding_model_key(
    code_ids: Sequence[str], examples: Sequence[TrainingExample], vectors: np.ndarray
) -> str:
    """``model_key`` for a model over embeddings: the examples' labels and their vectors, bit for bit.

    Vectors stand for texts the cache never sees (the shipped corpus has none), so they, not the
    texts, decide the model.
    """
    vectors_digest = hashlib.sha256(
        np.ascontiguousarray(vectors, dtype=np.float32).tobytes()
    ).hexdigest()
    return model_key(code_ids, examples, f"embeddings {vectors.shape} {vectors_digest}")


def _path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "models" / f"{key}.npz"


def read_model(path: Path) -> ClassifierModel:
    """A model written by ``write_model``; raises OSError, ValueError or KeyError if the file is not one."""
    with np.load(path, allow_pickle=False) as arrays:
        layout = json.loads(str(arrays["layout"]))
        return ClassifierModel(
            code_ids=tuple(layout["code_ids"]),
            vocabulary=arrays["vocabulary"],
            idf=arrays["idf"],
            names=arrays["names"],
            content=arrays["content"],
            weights=arrays["weights"],
            intercepts=arrays["intercepts"],
            codes={
                code_id: CodeModel(
                    code["full"],
                    tuple(code["folds"]),
                    tuple(code["platt"]) if code["platt"] is not None else None,
                )
                for code_id, code in layout["codes"].items()
            },
            training_counts={
                code_id: tuple(pair) for code_id, pair in layout["training_counts"].items()
            },
        )


def write_model(path: Path, model: ClassifierModel) -> None:
    """Write ``model`` to ``path`` atomically, as arrays and a JSON layout (no pickles)."""
    layout = {
        "code_ids": list(model.code_ids),
        "codes": {
            code_id: {"full": code.full, "folds": list(code.folds), "platt": code.platt}
            for code_id, code in model.codes.items()
        },
        "training_counts": model.training_counts,
    }
    handle, temporary = tempfile.mkstemp(prefix=".model.", suffix=".npz.tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(
                stream,
                layout=np.array(json.dumps(layout)),
                vocabulary=model.vocabulary,
                idf=model.idf,
                names=model.names,
                content=model.content,
                weights=model.weights,
                intercepts=model.intercepts,
            )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_model(cache_dir: Path, key: str) -> ClassifierModel | None:
    """The cached model for ``key``, or None when there is none or it cannot be read."""
    path = _path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        model = read_model(path)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("model cache %s unreadable (%s); training again", path, error)
        return None
    try:
        os.utime(path)  # most recently used survives pruning
    except OSError:
        pass  # a read-only cache still serves
    return model


def store_model(cache_dir: Path, key: str, model: ClassifierModel) -> None:
    path = _path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_model(path, model)
    except OSError as error:
        logger.info("model cache %s not written (%s)", path.parent, error)
        return
    _prune(path.parent)


def _prune(folder: Path) -> None:
    """Keep the most recently used models; another process may be pruning the same folder."""
    dated = []
    for model in folder.glob("*.npz"):
        try:
            dated.append((model.stat().st_mtime, model))
        except OSError:
            continue
    for _, old in sorted(dated, reverse=True)[KEEP_MODELS:]:
        try:
            old.unlink(missing_ok=True)
        except OSError:
            continue
