"""How long `qualcode report` and `qualcode tables` take on a 10,000-document coded workbook, and how long
headless Chromium takes to load the report.

    python benchmarks/report_bench.py [--documents 10000] [--keep DIR]

The corpus is the sample corpus cycled: survey answers (one document each, with their role, age
group and site) make up 90% of the documents, copies of the transcripts and essays the rest. It is
coded once with `qualcode code` (not timed as part of the report), then each command runs once,
timed from the shell's point of view (start-up and imports included).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "corpora" / "sample"


PROBE = """<script>
window.__gaps = []; (function () { var last = performance.now(); function frame() { var now = performance.now();
window.__gaps.push(now - last); last = now; requestAnimationFrame(frame); } requestAnimationFrame(frame); })();
window.addEventListener("DOMContentLoaded", function () { window.__parsed = performance.now(); });
window.addEventListener("load", function () { var gaps = window.__gaps; var p = document.createElement("pre");
p.id = "probe"; p.textContent = "parsed at " + Math.round(window.__parsed) + ", loaded at " +
Math.round(performance.now()) + ", longest pause between frames " + Math.round(Math.max.apply(null, gaps)) +
", pauses over 200 " + gaps.filter(function (g) { return g > 200; }).length; document.body.prepend(p); });
</script>"""


def make_corpus(folder: Path, documents: int) -> None:
    answers = list(
        csv.DictReader((SAMPLE / "survey" / "open_responses.csv").open(encoding="utf-8"))
    )
    texts = sorted(
        [
            *SAMPLE.glob("transcripts/*.txt"),
            *SAMPLE.glob("essays/*.txt"),
            *SAMPLE.glob("essays/*.md"),
        ]
    )
    survey = documents * 9 // 10
    (folder / "survey").mkdir(parents=True)
    with (folder / "survey" / "answers.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(answers[0]))
        writer.writeheader()
        for number, answer in zip(range(survey), itertools.cycle(answers)):
            writer.writerow({**answer, "respondent_id": f"R{number + 1:05d}"})
    for number, source in zip(range(documents - survey), itertools.cycle(texts)):
        target = folder / source.parent.name / f"{source.stem}_{number:04d}{source.suffix}"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, target)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument(
        "--keep", type=Path, help="Work in this folder and keep it (default: a temporary one)."
    )
    options = parser.parse_args()
    work = options.keep or Path(tempfile.mkdtemp(prefix="qualcode-report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        corpus, coded = work / "corpus", work / "coded.xlsx"
        if not coded.exists():
            shutil.rmtree(corpus, ignore_errors=True)
            make_corpus(corpus, options.documents)
            seconds = timed(
                [sys.executable, "-m", "qualcode", "code", str(corpus), "-o", str(coded), "-q"]
            )
            print(f"qualcode code: {options.documents:,} documents in {seconds:.1f} s", flush=True)
        report = work / "report.html"
        seconds = timed(
            [
                sys.executable,
                "-m",
                "qualcode",
                "report",
                str(coded),
                "-o",
                str(report),
                "--by",
                "role",
                "-q",
            ]
        )
        print(f"qualcode report: {seconds:.1f} s, {report.stat().st_size / 1e6:.1f} MB", flush=True)
        seconds = timed(
            [
                sys.executable,
                "-m",
                "qualcode",
                "tables",
                str(coded),
                "-o",
                str(work / "tables.xlsx"),
                "--by",
                "role",
                "-q",
            ]
        )
        print(f"qualcode tables (xlsx): {seconds:.1f} s", flush=True)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser:
            profile = work / "chromium-profile"
            shutil.rmtree(profile, ignore_errors=True)
            command = [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--dump-dom",
                report.as_uri(),
            ]
            # A copy of the report with a probe: when the page was parsed and loaded, and the longest
            # pause between animation frames while it loaded (what a reader feels as a freeze).
            probe = work / "probe.html"
            html = report.read_text(encoding="utf-8")
            probe.write_text(html.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
            start = time.perf_counter()
            done = subprocess.run(
                [*command[:-1], probe.as_uri()], capture_output=True, text=True, timeout=600
            )
            found = re.search(r'<pre id="probe">([^<]*)', done.stdout)
            print(
                f"chromium: {found.group(1) if found else 'no probe result'} (ms); the whole headless run, start-up "
                f"and writing out the DOM included, {time.perf_counter() - start:.1f} s",
                flush=True,
            )
    finally:
        if options.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
