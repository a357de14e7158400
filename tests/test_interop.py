"""REFI-QDA exchange: schema-valid output, lenient input, round trips, and hostile files refused."""

import codecs
import io
import zipfile

import pandas as pd
import pytest

from conftest import REPO, SAMPLE, SHARED, run
from qualcode.codebook import dump_codebook, load_codebook, parse_codebook
from qualcode.errors import InputDataError
from qualcode.interop.qdc import code_guid, export_qdc, import_qdc
from qualcode.interop.qdpx import covered_codes, read_qdpx
from qualcode.segment import segment_documents

REFI = SHARED / "refi-qda"
needs_schemas = pytest.mark.skipif(
    not (REFI / "Project.xsd").is_file(),
    reason="../shared/refi-qda schemas are not on this machine",
)
needs_samples = pytest.mark.skipif(
    not (REFI / "samples").is_dir(), reason="../shared/refi-qda/samples are not on this machine"
)


def _schema(name):
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(REFI / name)))


def _valid(schema_name, data):
    from lxml import etree

    schema = _schema(schema_name)
    ok = schema.validate(etree.fromstring(data))
    return ok, str(schema.error_log)


@needs_schemas
def test_default_codebook_exports_schema_valid_qdc():
    data = export_qdc(load_codebook())
    assert _valid("Codebook.xsd", data) == (True, "")
    assert not data.startswith(codecs.BOM_UTF8)
    assert data.count(b'isCodable="true"') == 6 and code_guid("trust").encode() in data


def test_codebook_round_trip_keeps_rules_with_a_base(tmp_path):
    original = load_codebook()
    qdc = tmp_path / "book.qdc"
    qdc.write_bytes(export_qdc(original))
    back = import_qdc(qdc, base=original)
    assert dump_codebook(back) == dump_codebook(original)
    bare = import_qdc(qdc)
    assert [code.name for code in bare.codes] == [code.name for code in original.codes]
    assert [code.definition for code in bare.codes] == [code.definition for code in original.codes]
    assert all(len(code.rules) == 0 for code in bare.codes)
    assert parse_codebook(dump_codebook(bare), "bare.yaml")[1] == []


def test_a_qdc_from_another_tool_becomes_a_valid_codebook(tmp_path):
    qdc = tmp_path / "other.qdc"
    qdc.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<CodeBook xmlns="urn:QDA-XML:codebook:0:4" origin="ATLAS.ti 8"><Codes>'
        '<Code guid="{6f1c2b9e-3d4a-4b5c-8e7f-0a1b2c3d4e5f}" name="Relationship" isCodable="false" color="#36c">'
        '<Code guid="0B6E5C3A-1F2D-4E5A-9B7C-8D9E0F1A2B3C" name="trust" isCodable="true" color="rgb(1,2,3)">'
        "<Description>Relying on the worker</Description></Code>"
        '<Code guid="7A8B9C0D-1E2F-4A3B-8C4D-5E6F7A8B9C0D" name="Trust" isCodable="true"/>'
        "</Code></Codes></CodeBook>",
        encoding="utf-8",
    )
    codebook = import_qdc(qdc)
    assert [(c.code_id, c.name, c.parent, c.color) for c in codebook.codes] == [
        ("relationship", "Relationship", None, "#3366CC"),
        ("relationship_trust", "Relationship › trust", "relationship", None),
        ("relationship_trust_2", "Relationship › Trust (2)", "relationship", None),
    ]
    assert codebook.codes[1].definition == "Relying on the worker"
    assert parse_codebook(dump_codebook(codebook), "x.yaml")[1] == []


@pytest.fixture(scope="module")
def coded_sample_project(coded_sample, tmp_path_factory):
    workbook, _ = coded_sample
    project = tmp_path_factory.mktemp("qdpx") / "study.qdpx"
    result = run("export", "qdpx", workbook, "-o", project)
    assert result.exit_code == 0, result.output
    return workbook, project


@needs_schemas
def test_sample_project_export_is_schema_valid(coded_sample_project):
    _, project = coded_sample_project
    with zipfile.ZipFile(project) as archive:
        names = archive.namelist()
        assert names[0] == "project.qde" and all(
            n == "project.qde" or n.startswith("sources/") for n in names
        )
        assert _valid("Project.xsd", archive.read("project.qde")) == (True, "")
        texts = [archive.read(n) for n in names if n.endswith(".txt")]
    assert len(texts) == 85 and not any(text.startswith(codecs.BOM_UTF8) for text in texts)


def test_project_round_trip_gives_back_every_coding(coded_sample_project, tmp_path):
    workbook, project = coded_sample_project
    codings = pd.read_excel(workbook, sheet_name="Codings")
    counted = codings[codings["status"].isin(["suggested", "accepted"])]
    expected = {(row.segment_id, row.code) for row in counted.itertuples()}
    imported = read_qdpx(project)
    assert imported.offset_convention == "code points"
    assert {user for user in imported.users.values()} >= {"qualcode (machine suggestions)"}
    segments = segment_documents(imported.documents)
    labels = covered_codes(imported, segments)
    assert {
        (segment_id, code) for segment_id, codes in labels.items() for code in codes
    } == expected
    labels_csv = tmp_path / "labels.csv"
    texts = tmp_path / "texts"
    refused = run("import", "qdpx", project, "-o", labels_csv)
    assert refused.exit_code == 65 and not labels_csv.exists()
    assert (
        "every coded selection is by qualcode (machine suggestions), qualcode's own suggestions"
        in refused.output
    )
    result = run(
        "import",
        "qdpx",
        project,
        "-o",
        labels_csv,
        "--codebook",
        REPO / "codebooks" / "relationship-themes.yaml",
        "--texts",
        texts,
        "--include-machine",
    )
    assert result.exit_code == 0, result.output
    assert (
        f"users taken: qualcode (machine suggestions) ({len(expected)} selections)" in result.output
    )
    written = sorted(texts.iterdir())
    assert len(written) == 85
    assert {path.read_text(encoding="utf-8") for path in written} == {
        document.text for document in imported.documents
    }
    assert "positions read as code points" in result.output
    table = pd.read_csv(labels_csv)
    assert int(table[list(load_codebook().code_ids)].to_numpy().sum()) == len(expected)


def _qdpx(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


NVIVO_WIN_TEXT = (
    "Interviewer: How was it?\r\nP1: I trust her. \U0001f60a She listens.\r\nP1: Bye.\r\n"
)


def _project_xml(
    selections, origin="NVivo 12 (Windows)", source='plainTextPath="internal://a1.txt"'
):
    body = "".join(
        f'<PlainTextSelection guid="{i:08x}-0000-4000-8000-000000000000" name="{name}" startPosition="{s}" '
        f'endPosition="{e}"><Coding guid="{i:08x}-1111-4000-8000-000000000000">'
        f'<CodeRef targetGUID="{{0b6e5c3a-1f2d-4e5a-9b7c-8d9e0f1a2b3c}}"/></Coding></PlainTextSelection>'
        for i, (s, e, name) in enumerate(selections)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Project xmlns="urn:QDA-XML:project:1.0" name="t" origin="{origin}">'
        '<CodeBook><Codes><Code guid="0B6E5C3A-1F2D-4E5A-9B7C-8D9E0F1A2B3C" name="trust" isCodable="true"/>'
        f'</Codes></CodeBook><Sources><TextSource guid="A1A1A1A1-0000-4000-8000-000000000000" name="p1.txt" {source}>'
        f"{body}</TextSource></Sources></Project>"
    ).encode()


def test_nvivo_windows_positions_in_utf16_units_with_crlf_are_detected(tmp_path):
    text = NVIVO_WIN_TEXT
    units = lambda s: len(s.encode("utf-16-le")) // 2  # noqa: E731
    start = units(text[: text.index("She listens.")])
    selections = [
        (
            units(text[: text.index("I trust her.")]),
            units(text[: text.index("I trust her.") + 12]),
            "I trust her.",
        ),
        (start, start + 12, "She listens."),
        (start, start + 12, ""),
    ]  # NVivo repeats ranges
    path = tmp_path / "nvivo.qdpx"
    path.write_bytes(
        _qdpx(
            {
                "Sources/a1.txt": codecs.BOM_UTF8 + text.encode("utf-8"),
                "Trial.qde": _project_xml(selections),
            }
        )
    )
    project = read_qdpx(path)
    assert project.offset_convention == "UTF-16 code units"
    (document,) = project.documents
    assert document.text == text.replace("\r\n", "\n") and document.kind == "transcript"
    assert [document.text[s.start_char : s.end_char] for s in project.selections] == [
        "I trust her.",
        "She listens.",
        "She listens.",
    ]
    segments = segment_documents(project.documents)
    labels = covered_codes(project, segments)
    # 24 of the turn's 27 characters are coded: more than half, so the turn carries the code.
    assert [sorted(labels.get(s.segment_id, ())) for s in segments] == [[], ["trust"], []]


def test_atlas_positions_with_crlf_counted_once_are_detected(tmp_path):
    text = NVIVO_WIN_TEXT.replace("\U0001f60a ", "")
    flat = text.replace("\r\n", "\n")
    start = flat.index("She listens.")
    path = tmp_path / "atlas.qdpx"
    path.write_bytes(
        _qdpx(
            {
                "sources/a1.txt": text.encode("utf-8"),
                "project.qde": _project_xml(
                    [(start, start + 12, "She listens.")], origin="ATLAS.ti"
                ),
            }
        )
    )
    project = read_qdpx(path)
    assert project.offset_convention == "code points, CRLF counted as one"
    (selection,) = project.selections
    assert project.documents[0].text[selection.start_char : selection.end_char] == "She listens."


@needs_samples
@pytest.mark.parametrize(
    "sample,codes,sources",
    [
        ("atlasti-win-23.2.3_target-atlas-project.qdpx", 3, 0),
        ("nvivo-mac-15.0.0_nvivo_project.qdpx", 262, 2),
    ],
)
def test_real_tool_exports_are_read(sample, codes, sources, tmp_path):
    project = read_qdpx(REFI / "samples" / sample)
    assert len(project.codes) == codes and len(project.documents) == sources
    assert len({code.code_id for code in project.codes}) == codes
    book = tmp_path / "book.yaml"
    result = run(
        "import",
        "qdpx",
        REFI / "samples" / sample,
        "-o",
        tmp_path / "labels.csv",
        "--save-codebook",
        book,
    )
    assert result.exit_code == 0, result.output
    assert parse_codebook(book.read_text(encoding="utf-8"), str(book))[1] == []


@needs_samples
def test_taguette_codebook_with_its_empty_sets_is_read(tmp_path):
    book = tmp_path / "taguette.yaml"
    result = run("codebook", "import", REFI / "samples" / "taguette-1.4.1_codebook.qdc", "-o", book)
    assert result.exit_code == 0, result.output
    assert "empty <Sets/>" in result.output
    assert [code.name for code in load_codebook(book).codes] == [
        "xsd:element name",
        "CodeBook",
        "Variables",
    ]


@needs_schemas
@needs_samples
def test_taguette_sample_is_schema_invalid_as_documented():
    ok, log = _valid(
        "Codebook.xsd", (REFI / "samples" / "taguette-1.4.1_codebook.qdc").read_bytes()
    )
    assert not ok and "Sets" in log


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><CodeBook xmlns="urn:QDA-XML:codebook:1.0"><Codes>'
    '<Code guid="0B6E5C3A-1F2D-4E5A-9B7C-8D9E0F1A2B3C" name="&lol3;" isCodable="true"/></Codes></CodeBook>'
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
    '<CodeBook xmlns="urn:QDA-XML:codebook:1.0"><Codes><Code guid="0B6E5C3A-1F2D-4E5A-9B7C-8D9E0F1A2B3C" '
    'name="&secret;" isCodable="true"/></Codes></CodeBook>'
)


@pytest.mark.parametrize("content", [BILLION_LAUGHS, EXTERNAL])
def test_hostile_xml_is_refused_with_a_clear_error(tmp_path, content):
    path = tmp_path / "hostile.qdc"
    path.write_text(content)
    result = run("codebook", "import", path, "-o", tmp_path / "out.yaml")
    assert result.exit_code == 65
    assert result.output.startswith(f"Error: {path}: contains a DTD; refused")
    assert not (tmp_path / "out.yaml").exists()


def test_zip_slip_and_zip_bombs_are_refused(tmp_path):
    slip = tmp_path / "slip.qdpx"
    slip.write_bytes(_qdpx({"project.qde": _project_xml([]), "../../evil.txt": b"x"}))
    with pytest.raises(
        InputDataError,
        match=r"entry '../../evil.txt' points outside the archive's folder \(zip slip\)",
    ):
        read_qdpx(slip)
    bomb = tmp_path / "bomb.qdpx"
    bomb.write_bytes(_qdpx({"project.qde": _project_xml([]), "sources/a1.txt": b"\0" * 20_000_000}))
    result = run("import", "qdpx", bomb, "-o", tmp_path / "labels.csv")
    assert result.exit_code == 65 and "refused as a likely zip bomb" in result.output
    broken = tmp_path / "broken.qdpx"
    broken.write_bytes(b"not a zip")
    assert (
        "not a .qdpx (zip) archive"
        in run("import", "qdpx", broken, "-o", tmp_path / "l.csv").output
    )


def test_malformed_project_xml_names_the_line(tmp_path):
    path = tmp_path / "bad.qdpx"
    path.write_bytes(
        _qdpx(
            {
                "project.qde": b'<?xml version="1.0"?>\n<Project xmlns="urn:QDA-XML:project:1.0" name="x">\n<Sources>'
            }
        )
    )
    with pytest.raises(
        InputDataError, match=r"bad.qdpx:project.qde: line 3, column \d+: not well-formed XML"
    ):
        read_qdpx(path)


def test_a_study_exports_human_decisions_under_their_coder(tmp_path):
    import openpyxl

    study = tmp_path / "study"
    assert run("init", study, "--coder", "Ana").exit_code == 0
    first = tmp_path / "r1.xlsx"
    assert run("code", SAMPLE / "essays", "-o", first, "--study", study, "-q").exit_code == 0
    book = openpyxl.load_workbook(first)
    header = [cell.value for cell in book["Segments"][1]]
    book["Segments"].cell(3, header.index("reviewed") + 1).value = "x"
    book["Segments"].cell(3, header.index("trust") + 1).value = 1
    reviewed_segment = book["Segments"].cell(3, header.index("segment_id") + 1).value
    book.save(first)
    assert run("review", "import", first, "--study", study).exit_code == 0
    assert (
        run("code", SAMPLE / "essays", "-o", tmp_path / "r2.xlsx", "--study", study, "-q").exit_code
        == 0
    )
    project = tmp_path / "study.qdpx"
    result = run("export", "qdpx", study, "-o", project)
    assert result.exit_code == 0, result.output
    imported = read_qdpx(project)
    assert set(imported.users.values()) == {"qualcode (machine suggestions)", "Ana"}
    segments = segment_documents(imported.documents)
    by_ana = covered_codes(imported, segments, user="Ana")
    assert by_ana[reviewed_segment] >= {"trust"}
    assert set(by_ana) == {reviewed_segment}

    # As labels, a qualcode export gives the human coders' selections only, and says what it took.
    labels_csv = tmp_path / "labels.csv"
    result = run("import", "qdpx", project, "-o", labels_csv)
    assert result.exit_code == 0, result.output
    assert (
        "users taken: Ana (" in result.output
        and "left out: qualcode (machine suggestions) (" in result.output
    )
    table = pd.read_csv(labels_csv)
    coded = table[table[list(load_codebook().code_ids)].sum(axis=1) > 0]
    assert list(coded["segment_id"]) == [reviewed_segment]
    assert f"Warning: {labels_csv}: only 1 of {len(table)} segments (" in result.output
    assert "teaches the classifier that almost nothing is coded" in result.output
