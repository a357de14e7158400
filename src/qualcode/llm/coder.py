"""A language model as a coder, through any OpenAI-compatible chat-completions endpoint.

``LlmCoder.judge`` asks the model about each segment (``prompt``), several requests in flight,
and reads each answer (``parse``). Answers come from the response cache when it holds them and go
into it the moment they arrive, so a re-run sends nothing and a stopped run resumes. Requests
that meet a busy or failing server (429, 408, 409, 5xx, a timeout, a dropped connection) are
retried with exponential backoff, or after the server's Retry-After; if one still fails, the run
stops with one line saying how many answers are safe in the cache, and the same command resumes.
A server that refuses structured output (``response_format`` with a JSON schema) is asked for a
JSON object, then for plain text, which is parsed leniently; the Run sheet says which was used.

The client is the ``openai`` package (``pip install 'qualcode[llm]'``). It is given the endpoint
and key explicitly, never reading ``OPENAI_*`` variables, and retries nothing itself.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from qualcode.errors import ConfigurationError, LlmUnavailableError
from qualcode.llm.cache import CachedAnswer, ResponseCache, request_key
from qualcode.llm.parse import Answer, parse_answer
from qualcode.llm.prompt import (
    TEMPLATE_VERSION,
    SegmentPrompt,
    messages,
    response_schema,
    system_message,
    template_sha256,
)
from qualcode.llm.settings import LlmSettings
from qualcode.models import Codebook

logger = logging.getLogger(__name__)

STRUCTURED_MODES = ("json_schema", "json_object", "text")
RETRYABLE_STATUS = frozenset({408, 409, 429})
MAX_WAIT = 60.0
CHARS_PER_TOKEN = 4
ANSWER_TOKENS_PER_CODE = 30
# progress(done, total, tokens so far, estimated tokens left)
LlmProgress = Callable[[int, int, int, int], None]


def load_openai():
    """The ``openai`` module, or a one-line error saying how to install it."""
    try:
        import openai
    except ImportError:
        raise ConfigurationError(
            "--llm needs the openai package, which is not installed; "
            "install it with: pip install 'qualcode[llm]'"
        ) from None
    return openai


@dataclass(frozen=True)
class RequestPlan:
    """What a run would send: segments asked about, answered already, and a rough token count."""

    segments: int
    cached: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def to_send(self) -> int:
        return self.segments - self.cached


class _Stopped(Exception):
    """Another request failed for good, or the run was interrupted: give up quietly."""


@dataclass
class _Tally:
    sent: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    repaired: int = 0
    unusable: int = 0
    quotes_not_found: int = 0
    repairs: dict[str, int] = field(default_factory=dict)


class LlmCoder:
    """Asks a model about segments. ``settings`` say which and where; ``api_key`` is sent as a bearer token only.

    ``cache`` (a ``ResponseCache``) keeps answers; ``progress`` is told of every answer. ``client``
    replaces the ``openai.OpenAI`` client.
    """

    def __init__(
        self,
        settings: LlmSettings,
        *,
        api_key: str | None = None,
        cache: ResponseCache | None = None,
        progress: LlmProgress | None = None,
        client=None,
    ):
        self.settings = settings
        self.cache = cache
        self.progress = progress
        self._api_key = api_key
        self._client = client
        self._mode = STRUCTURED_MODES[0]
        self._mode_note = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.tally = _Tally()
        self.template = f"{TEMPLATE_VERSION} sha256:{template_sha256()}"

    def __repr__(self) -> str:  # never show the key
        return f"LlmCoder({self.settings.model!r} at {self.settings.endpoint})"

    # --- requests ----------------------------------------------------------------------------

    def _requests(
        self, prompts: Sequence[SegmentPrompt], codebook: Codebook
    ) -> list[tuple[SegmentPrompt, list, str]]:
        system = system_message(codebook)
        result = []
        for prompt in prompts:
            sent = messages(system, prompt)
            result.append((prompt, sent, request_key(self.settings.model, self.template, sent)))
        return result

    def plan(self, prompts: Sequence[SegmentPrompt], codebook: Codebook) -> RequestPlan:
        """What ``judge`` would send for ``prompts``, without sending anything (``--llm-dry-run``)."""
        requests = self._requests(prompts, codebook)
        cached = (
            self.cache.holds([key for _, _, key in requests]) if self.cache is not None else set()
        )
        return _estimate(
            [sent for _, sent, key in requests if key not in cached],
            len(requests),
            len(codebook.codes),
        )

    def _openai_client(self):
        if self._client is None:
            openai = load_openai()
            client = openai.OpenAI(
                api_key=self._api_key or "no-key",
                base_url=self.settings.url,
                timeout=self.settings.timeout,
                max_retries=0,
            )
            # The client fills these from OPENAI_ORG_ID and OPENAI_PROJECT_ID; they are not for another endpoint.
            client.organization = None
            client.project = None
            self._client = client
        return self._client

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(min(seconds, MAX_WAIT)):
            raise _Stopped()

    def _ask(self, sent: list[dict[str, str]], code_ids: Sequence[str]) -> CachedAnswer:
        """One request, retried while the server is busy or failing; a refusal of structured output steps down."""
        openai = load_openai()
        client = self._openai_client()
        attempt = 0
        while True:
            if self._stop.is_set():
                raise _Stopped()
            mode = self._mode
            extra: dict[str, object] = {}
            if mode == "json_schema":
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "qualcode_coding",
                        "strict": True,
                        "schema": response_schema(code_ids),
                    },
                }
            elif mode == "json_object":
                extra["response_format"] = {"type": "json_object"}
            if self.settings.seed is not None:
                extra["seed"] = self.settings.seed
            try:
                response = client.chat.completions.create(
                    model=self.settings.model,
                    messages=sent,
                    temperature=self.settings.temperature,
                    max_tokens=200 + 2 * ANSWER_TOKENS_PER_CODE * len(code_ids),
                    timeout=self.settings.timeout,
                    **extra,
                )
            except openai.APIStatusError as error:
                status = error.status_code
                if status in (400, 422) and mode != "text":
                    self._step_down(mode, error)
                    continue
                if status in RETRYABLE_STATUS or status >= 500:
                    attempt = self._retry(
                        attempt, f"HTTP {status}: {_message(error)}", _retry_after(error)
                    )
                    continue
                raise self._refused(status, error) from None
            except openai.APIConnectionError as error:  # includes timeouts
                reason = (
                    f"no answer within {self.settings.timeout:g} s"
                    if isinstance(error, openai.APITimeoutError)
                    else f"cannot connect ({_cause(error)})"
                )
                attempt = self._retry(attempt, reason, None)
                continue
            except openai.APIError as error:  # a response that is not a chat completion
                attempt = self._retry(attempt, f"an unreadable response ({_message(error)})", None)
                continue
            choices = getattr(response, "choices", None) or []
            message = getattr(choices[0], "message", None) if choices else None
            usage = getattr(response, "usage", None)
            return CachedAnswer(
                getattr(message, "content", None) or "",
                getattr(usage, "prompt_tokens", None),
                getattr(usage, "completion_tokens", None),
                mode,
            )

    def _retry(self, attempt: int, reason: str, after: float | None) -> int:
        if attempt >= self.settings.retries:
            raise LlmUnavailableError(f"{self.settings.endpoint}: {reason}, {attempt + 1} tries")
        with self._lock:
            self.tally.retries += 1
        delay = after if after is not None else self.settings.backoff * 2**attempt
        logger.info("%s: %s; trying again in %.1f s", self.settings.endpoint, reason, delay)
        self._wait(delay)
        return attempt + 1

    def _step_down(self, mode: str, error) -> None:
        with self._lock:
            if self._mode == mode:
                self._mode = STRUCTURED_MODES[STRUCTURED_MODES.index(mode) + 1]
                self._mode_note = f"the server refused {mode} ({_message(error)})"
                logger.info(
                    "%s: %s; asking for %s instead",
                    self.settings.endpoint,
                    self._mode_note,
                    self._mode,
                )

    def _refused(self, status: int, error) -> LlmUnavailableError:
        where = self.settings.endpoint
        if status in (401, 403):
            return LlmUnavailableError(
                f"{where}: the server refused the request (HTTP {status}: {_message(error)}); "
                "set the API key in the environment variable QUALCODE_LLM_API_KEY"
            )
        if status == 404:
            return LlmUnavailableError(
                f"{where}: model '{self.settings.model}' not found (HTTP 404: {_message(error)}); "
                "check the name (for Ollama: ollama pull MODEL) and --llm-url"
            )
        return LlmUnavailableError(
            f"{where}: the server refused the request (HTTP {status}: {_message(error)})"
        )

    # --- a run ---------------------------------------------------------------------------------

    def judge(self, prompts: Sequence[SegmentPrompt], codebook: Codebook) -> dict[str, Answer]:
        """The model's answer on each prompt's segment, by segment id: from the cache, else asked now.

        Raises ``LlmUnavailableError`` when a request fails for good; every answer received before
        that is in the cache.
        """
        code_ids = codebook.code_ids
        self.tally = (
            _Tally()
        )  # the record describes this call (evaluate --representation all makes several)
        requests = self._requests(prompts, codebook)
        answers: dict[str, Answer] = {}
        waiting = []
        for prompt, sent, key in requests:
            cached = self.cache.get(key) if self.cache is not None else None
            if cached is None:
                waiting.append((prompt, sent, key))
                continue
            self.tally.cached += 1
            answers[prompt.segment.segment_id] = self._read(cached, code_ids, prompt)
        if waiting and not self.settings.is_local:
            logger.warning(
                "sending %d segments and the codebook to %s, which is not this machine",
                len(waiting),
                self.settings.endpoint,
            )
        estimate = _estimate([sent for _, sent, _ in waiting], len(waiting), len(code_ids))
        per_request = (estimate.prompt_tokens + estimate.completion_tokens) / max(1, len(waiting))
        total, done = len(waiting), 0
        self._report(0, total, per_request)
        if not waiting:
            return answers
        failure: BaseException | None = None
        executor = ThreadPoolExecutor(
            max_workers=min(self.settings.concurrency, total), thread_name_prefix="qualcode-llm"
        )
        pending: dict[Future, tuple] = {}
        queue = iter(waiting)
        try:
            # Only a few requests more than the concurrency are queued, so a stop leaves little unsent work behind.
            for item in queue:
                pending[executor.submit(self._ask, item[1], code_ids)] = item
                if len(pending) >= 2 * self.settings.concurrency:
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    prompt, sent, key = pending.pop(future)
                    try:
                        cached = future.result()
                    except _Stopped:
                        continue
                    except LlmUnavailableError as error:
                        if failure is None:
                            failure = error
                            self._stop.set()
                        continue
                    if self.cache is not None:
                        self.cache.put(key, self.settings.model, self.template, cached)
                    self.tally.sent += 1
                    self.tally.prompt_tokens += cached.prompt_tokens or 0
                    self.tally.completion_tokens += cached.completion_tokens or 0
                    answers[prompt.segment.segment_id] = self._read(cached, code_ids, prompt)
                    done += 1
                    self._report(done, total, per_request)
                    if failure is None:
                        for item in queue:
                            pending[executor.submit(self._ask, item[1], code_ids)] = item
                            break
        except BaseException:
            # Ctrl-C: waits end at once, queued requests are never sent, and closing the client
            # ends those in flight; every answer already received is in the cache.
            self._stop.set()
            executor.shutdown(wait=False, cancel_futures=True)
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
            raise
        executor.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            held = (
                f"; {done} of {total} new answers are in the cache"
                if self.cache is not None
                else ""
            )
            raise LlmUnavailableError(
                f"{failure}{held}; run the same command again to go on from there"
            ) from None
        return answers

    def _read(self, cached: CachedAnswer, code_ids: Sequence[str], prompt: SegmentPrompt) -> Answer:
        answer = parse_answer(cached.content, code_ids, prompt.segment.text)
        tally = self.tally
        if not answer.usable:
            tally.unusable += 1
        elif answer.repairs:
            tally.repaired += 1
        for repair in answer.repairs:
            tally.repairs[repair] = tally.repairs.get(repair, 0) + 1
        tally.quotes_not_found += sum(
            1
            for code in answer.codes.values()
            if code.applies and code.quote.strip() and code.span is None
        )
        return answer

    def _report(self, done: int, total: int, per_request: float) -> None:
        if self.progress is None or not total:
            return
        used = self.tally.prompt_tokens + self.tally.completion_tokens
        average = used / self.tally.sent if self.tally.sent and used else per_request
        self.progress(done, total, used, round(average * (total - done)))

    def as_record(self) -> dict[str, object]:
        """What the Run sheet says about the model's part in the run (no key, no credentials)."""
        tally = self.tally
        mode = {
            "json_schema": "json_schema (the answer's JSON schema enforced by the server)",
            "json_object": "json_object (JSON, schema not enforced)",
            "text": "none (plain text, parsed leniently)",
        }[self._mode]
        repairs = ", ".join(f"{name}: {count}" for name, count in sorted(tally.repairs.items()))
        return {
            "llm prompt template": self.template,
            "llm structured output": mode + (f"; {self._mode_note}" if self._mode_note else ""),
            "llm answers": (
                f"{tally.sent + tally.cached} segments: {tally.sent} asked in this run, "
                f"{tally.cached} from the answer cache; {tally.repaired} repaired, {tally.unusable} unusable "
                f"(rules and classifier used there), {tally.quotes_not_found} quotes not found verbatim "
                "(not shown)"
            ),
            "llm repairs": repairs or "none",
            "llm tokens in this run": (
                f"{tally.prompt_tokens} prompt, {tally.completion_tokens} completion; "
                f"{tally.retries} retries"
            ),
            "llm answer cache": str(self.cache.path) if self.cache is not None else "none",
            "llm api key": "given (not recorded)" if self._api_key else "none",
        }


def _estimate(waiting: Sequence[list[dict[str, str]]], segments: int, codes: int) -> RequestPlan:
    """A rough token count of the requests in ``waiting``, of ``segments`` asked about in all."""
    characters = sum(len(message["content"]) for sent in waiting for message in sent)
    return RequestPlan(
        segments,
        segments - len(waiting),
        math.ceil(characters / CHARS_PER_TOKEN),
        len(waiting) * ANSWER_TOKENS_PER_CODE * codes,
    )


def _message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, dict) else inner
        if text:
            return " ".join(str(text).split())[:200]
    return " ".join(str(getattr(error, "message", "") or error).split())[:200]


def _cause(error) -> str:
    cause = error.__cause__ or error.__context__
    return " ".join(str(cause or error).split())[:200] or type(error).__name__


def _retry_after(error) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) / divisor
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None
