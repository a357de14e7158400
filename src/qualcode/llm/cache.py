"""Language-model answers kept on disk, each written the moment it arrives.

An answer is keyed by the SHA-256 of the model's name, the prompt template (version and hash) and
the two messages sent, which hold the codebook text and the segment (with its speaker and
context). A re-run with the same model, prompt, codebook and text sends nothing and codes the
same way; a run that stops half-way (a network error, Ctrl-C, ``kill``) keeps every answer it
had, and the next run asks only for the rest. Each answer is its own committed SQLite
transaction (WAL mode), so a process killed outright loses at most the answers still in flight.

The cache holds the keys, the model's raw answers and token counts; not the API key, and not the
prompts (the answers quote the segments they code, so keep the file where the study is kept).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from qualcode.errors import OutputError

logger = logging.getLogger(__name__)

CACHE_NAME = "llm-answers.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, template TEXT NOT NULL, content TEXT NOT NULL,
    prompt_tokens INTEGER, completion_tokens INTEGER, structured TEXT NOT NULL, answered_at TEXT NOT NULL)
"""


def request_key(model: str, template: str, messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(
        json.dumps([model, template, messages], ensure_ascii=False).encode("utf-8")
    ).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    content: str
    prompt_tokens: int | None
    completion_tokens: int | None
    structured: str


class ResponseCache:
    """An SQLite file of answers by request key. Use from one thread; close it, or use it as a context."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise OutputError(
                f"{self.path}: cannot open the language-model answer cache ({error}); "
                "check the folder can be written"
            ) from error

    def get(self, key: str) -> CachedAnswer | None:
        row = self._db.execute(
            "SELECT content, prompt_tokens, completion_tokens, structured FROM answers WHERE key = ?",
            (key,),
        ).fetchone()
        return CachedAnswer(*row) if row else None

    def holds(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            found.update(
                row[0]
                for row in self._db.execute(
                    f"SELECT key FROM answers WHERE key IN ({', '.join('?' * len(batch))})", batch
                )
            )
        return found

    def put(self, key: str, model: str, template: str, answer: CachedAnswer) -> None:
        """Store one answer, committed at once."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    template,
                    answer.content,
                    answer.prompt_tokens,
                    answer.completion_tokens,
                    answer.structured,
                    dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                ),
            )
        except sqlite3.Error as error:
            raise OutputError(
                f"{self.path}: cannot store a language-model answer ({error})"
            ) from error

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
