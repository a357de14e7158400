"""One exception hierarchy for everything a user can get wrong.

Each class carries a sysexits-style exit code; the CLI maps any ``QualcodeError`` to a one-line
``Error: ...`` message and that code. Anything else is a bug and stays a traceback.
"""

from __future__ import annotations

import os


class QualcodeError(Exception):
    """Base class: a problem with the user's input, configuration or output location."""

    exit_code = 1


class InputMissingError(QualcodeError):
    """A named input does not exist, or nothing readable was found (EX_NOINPUT)."""

    exit_code = 66


class InputDataError(QualcodeError):
    """An input file exists but its content cannot be used (EX_DATAERR)."""

    exit_code = 65


class CodebookError(QualcodeError):
    """The codebook fails validation (EX_CONFIG). ``problems`` lists every finding."""

    exit_code = 78

    def __init__(self, path: str | os.PathLike[str] | None, problems: list[str]):
        self.path = str(path) if path is not None else "<codebook>"
        self.problems = problems
        first = problems[0] if problems else "invalid codebook"
        more = (
            f" (and {len(problems) - 1} more; run `qualcode codebook validate`)"
            if len(problems) > 1
            else ""
        )
        super().__init__(f"{self.path}: {first}{more}")


class OutputError(QualcodeError):
    """The output cannot be written where asked (EX_CANTCREAT)."""

    exit_code = 73


class ReviewWorkProtectedError(OutputError):
    """Writing would replace a workbook that holds a researcher's review decisions."""


class ConfigurationError(QualcodeError):
    """An option or environment requirement is wrong (EX_CONFIG), e.g. a spaCy model not installed."""

    exit_code = 78


class RuleTimeoutError(ConfigurationError):
    """A codebook regex ran past its time limit on one segment: it backtracks catastrophically."""


class StudyDatabaseError(QualcodeError):
    """A study's database is missing, empty or damaged (EX_DATAERR): restore a backup."""

    exit_code = 65


class OptionValueError(QualcodeError):
    """An option names something the input does not have, e.g. a document attribute (exit 2, as click's)."""

    exit_code = 2


class LlmUnavailableError(QualcodeError):
    """A language-model endpoint cannot be reached, keeps failing or refuses the request (EX_UNAVAILABLE)."""

    exit_code = 69
