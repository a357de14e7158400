"""The language model's part in a coding run or an evaluation: which segments to ask about, and asking."""

from __future__ import annotations

from collections.abc import Collection, MutableMapping, Sequence

from qualcode.assistants import Verdicts
from qualcode.llm.cache import CACHE_NAME, ResponseCache
from qualcode.llm.coder import LlmCoder
from qualcode.llm.parse import Answer
from qualcode.llm.prompt import SegmentPrompt, with_context
from qualcode.llm.settings import LlmSettings
from qualcode.models import Codebook, Segment


def default_answer_cache() -> ResponseCache:
    """The answer cache beside the model cache ($QUALCODE_CACHE_DIR, else ~/.cache/qualcode)."""
    from qualcode.model_cache import default_cache_dir

    return ResponseCache(default_cache_dir() / CACHE_NAME)


def prompts_for(
    segments: Sequence[Segment],
    codable: Sequence[Segment],
    codebook: Codebook,
    decided: Collection[tuple[str, str]] = (),
) -> list[SegmentPrompt]:
    """A prompt for each coded segment, except those a human has decided for every code (decisions are final)."""
    decided = set(decided)
    asked = [
        segment
        for segment in codable
        if not all((segment.segment_id, code_id) in decided for code_id in codebook.code_ids)
    ]
    return with_context(segments, asked)


def ask_model(
    settings: LlmSettings,
    coder: LlmCoder | None,
    codebook: Codebook,
    segments: Sequence[Segment],
    codable: Sequence[Segment],
    record: MutableMapping[str, object],
    decided: Collection[tuple[str, str]] = (),
) -> dict[str, Answer]:
    """The model's answers on ``codable`` (of ``segments``, in document order), by segment id; its record added to ``record``.

    ``coder`` is the caller's (with its API key, cache and progress); without one, a coder with
    no key and the user's answer cache is used.
    """
    owned = coder is None
    if owned:
        coder = LlmCoder(settings, cache=default_answer_cache())
    try:
        answers = coder.judge(prompts_for(segments, codable, codebook, decided), codebook)
        record.update(coder.as_record())
    finally:
        if owned and coder.cache is not None:
            coder.cache.close()
    return answers


class LanguageModelAssistant:
    """The language model as an assistant: asked about segments, with their neighbours as context.

    ``context`` is every segment of the run in document order; ``decided`` are the (segment,
    code) pairs a human decided, not asked about; the model's record is added to ``record``.
    ``coder`` as for ``ask_model``.
    """

    name = "llm"

    def __init__(
        self,
        settings: LlmSettings,
        coder: LlmCoder | None,
        codebook: Codebook,
        *,
        context: Sequence[Segment],
        record: MutableMapping[str, object],
        decided: Collection[tuple[str, str]] = (),
    ):
        self.settings, self.coder, self.codebook = settings, coder, codebook
        self.context, self.record, self.decided = context, record, decided

    def suggest(self, segments: Sequence[Segment]) -> Verdicts:
        answers = ask_model(
            self.settings,
            self.coder,
            self.codebook,
            self.context,
            segments,
            self.record,
            decided=self.decided,
        )
        return Verdicts(answers, self.settings.model)
