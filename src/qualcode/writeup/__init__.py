"""Tables, charts and a report for writing up: what a results section, thesis chapter or funder report prints."""

from qualcode.writeup.analysis import Analysis, WriteupTable, analyse, writeup_tables
from qualcode.writeup.formats import TABLE_FORMATS, write_tables
from qualcode.writeup.report import render_report, write_report
from qualcode.writeup.source import CodedData, load_coded

__all__ = [
    "Analysis",
    "CodedData",
    "TABLE_FORMATS",
    "WriteupTable",
    "analyse",
    "load_coded",
    "render_report",
    "write_report",
    "write_tables",
    "writeup_tables",
]
