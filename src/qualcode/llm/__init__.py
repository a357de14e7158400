"""A language model as a third coder beside rules and classifier (issue 19).

``settings`` (what to ask), ``prompt`` (the codebook and a segment, versioned), ``coder`` (the
requests, through the ``openai`` client), ``parse`` (reading answers), ``cache`` (answers on
disk) and ``policy`` (how answers combine with rules and classifier). Nothing is sent unless a
model is named.
"""

from qualcode.llm.settings import API_KEY_VARIABLE, DEFAULT_URL, LlmSettings

__all__ = ["API_KEY_VARIABLE", "DEFAULT_URL", "LlmSettings"]
