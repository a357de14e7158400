"""What a run asks of a language model: plain settings, read from options or a study's ``qualcode.toml``.

Nothing here talks to a server or reads the environment. The API key is not a setting: the
command line reads it from ``QUALCODE_LLM_API_KEY`` and hands it to the coder, so it is never in
an options record, a Run sheet, a study or a log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from qualcode.errors import ConfigurationError

DEFAULT_URL = "http://127.0.0.1:11434/v1"  # Ollama's OpenAI-compatible endpoint
API_KEY_VARIABLE = "QUALCODE_LLM_API_KEY"
DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 4
DEFAULT_SEED = 0


@dataclass(frozen=True)
class LlmSettings:
    """A language model as a coder: which model, where, and how hard to push the server.

    ``temperature`` is 0 and ``seed`` fixed so that a server that honours them answers the same
    way twice; the response cache makes a re-run give the same coding whether it does or not.
    ``backoff`` is the first wait before a retry (doubled each time, or the server's Retry-After).
    """

    model: str
    url: str = DEFAULT_URL
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    temperature: float = 0.0
    seed: int | None = DEFAULT_SEED
    backoff: float = 1.0

    def __post_init__(self):
        if not self.model.strip():
            raise ConfigurationError("--llm: name a model (e.g. --llm llama3.1:8b)")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"--llm-url {redact_url(self.url)}: not an http(s) URL; "
                f"give the endpoint's base, e.g. {DEFAULT_URL}"
            )
        if self.concurrency < 1 or self.timeout <= 0 or self.retries < 0:
            raise ConfigurationError(
                "llm: concurrency must be at least 1, timeout above 0 and retries 0 or more"
            )

    @property
    def endpoint(self) -> str:
        """The URL as it may be shown and recorded: without a user, password or query."""
        return redact_url(self.url)

    @property
    def is_local(self) -> bool:
        host = (urlsplit(self.url).hostname or "").lower()
        return host in ("localhost", "::1") or host.startswith("127.")

    def as_record(self) -> dict[str, object]:
        return {
            "llm model": self.model,
            "llm endpoint": self.endpoint,
            "llm temperature": self.temperature,
            "llm seed": "none" if self.seed is None else self.seed,
            "llm concurrency": self.concurrency,
            "llm timeout seconds": self.timeout,
            "llm retries": self.retries,
        }


def redact_url(url: str) -> str:
    """``url`` without credentials: user and password, query and fragment are dropped."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_TABLE_KEYS = {"model", "url", "concurrency", "timeout", "retries", "seed"}


def settings_from_table(table: Mapping[str, object], where: str) -> dict[str, object]:
    """The ``[llm]`` table of a study's ``qualcode.toml`` as keyword arguments for ``LlmSettings`` (model may be empty).

    A key in the file is refused: it would be copied with the study and shown to whoever opens it.
    """
    if not isinstance(table, Mapping):
        raise ConfigurationError(f'{where}: llm must be a table ([llm] with model = "...")')
    if "api_key" in table or "key" in table:
        raise ConfigurationError(
            f"{where}: [llm] holds an API key; remove it and set the environment variable "
            f"{API_KEY_VARIABLE} instead (a key in the study would travel with it)"
        )
    unknown = sorted(set(table) - _TABLE_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: [llm] has no setting '{unknown[0]}' (known: {', '.join(sorted(_TABLE_KEYS))})"
        )
    found: dict[str, object] = {}
    try:
        if table.get("model"):
            found["model"] = str(table["model"])
        if table.get("url"):
            found["url"] = str(table["url"])
        if "concurrency" in table:
            found["concurrency"] = int(table["concurrency"])
        if "timeout" in table:
            found["timeout"] = float(table["timeout"])
        if "retries" in table:
            found["retries"] = int(table["retries"])
        if "seed" in table:
            seed = table["seed"]
            found["seed"] = None if seed in ("", "none", None) else int(seed)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"{where}: [llm] {error}") from error
    return found
