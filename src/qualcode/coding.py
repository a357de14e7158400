"""One coding run: segment the corpus and apply the codebook's rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from qualcode.models import Codebook, CodingResult, Corpus
from qualcode.rules import compile_rules
from qualcode.segment import DEFAULT_PIPELINE, build_pipeline, segment_documents

# progress(stage, advance, total): ``advance`` more items of ``total`` are done in ``stage``.
Progress = Callable[[str, int, int], None]
_PROGRESS_CHUNK = 256


@dataclass(frozen=True)
class CodingOptions:
    """Everything that shapes a coding run; recorded in the workbook's Run sheet."""

    unit: str | None = None
    code_interviewer: bool = False
    interviewer_labels: tuple[str, ...] = ()
    spacy_model: str = DEFAULT_PIPELINE
    extra: dict[str, object] = field(default_factory=dict)

    def as_record(self) -> dict[str, object]:
        record = asdict(self)
        extra = record.pop("extra")
        record["unit"] = self.unit or "default (turn / paragraph / document by kind)"
        record["interviewer_labels"] = ", ".join(self.interviewer_labels)
        return {**record, **extra}


def code_corpus(corpus: Corpus, codebook: Codebook, options: CodingOptions = CodingOptions(), *,
                nlp=None, progress: Progress | None = None) -> CodingResult:
    """Segment every document and suggest codes by rule, with evidence for each suggestion.

    Interviewer turns are segmented (they are exported) but coded only with ``code_interviewer``.
    """
    nlp = nlp if nlp is not None else build_pipeline(options.spacy_model)
    matcher = compile_rules(codebook, nlp)
    documents = corpus.documents
    segment_progress = (lambda _: progress("segment", 1, len(documents))) if progress else None
    segments = segment_documents(documents, unit=options.unit, nlp=nlp, interviewer_labels=options.interviewer_labels,
                                 progress=segment_progress)
    codable = [segment for segment in segments if options.code_interviewer or not segment.is_interviewer]
    assignments = []
    for offset in range(0, len(codable), _PROGRESS_CHUNK):
        chunk = codable[offset:offset + _PROGRESS_CHUNK]
        assignments.extend(matcher.match(chunk))
        if progress:
            progress("code", len(chunk), len(codable))
    return CodingResult(corpus=corpus, segments=tuple(segments), assignments=tuple(assignments), codebook=codebook,
                        options=options.as_record())
