"""The docs stay true: every command has help, every style keyword is documented, the quick start is two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from deconv_cli import conventions
from deconv_cli.cli import cli

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("style", sorted(conventions.STYLES))
def test_every_keyword_is_in_the_readme_and_styles_command(style):
    module = conventions.get(style)
    listed = CliRunner().invoke(cli, ["styles", style]).stdout
    row = next(line for line in README.splitlines() if line.startswith(f"| `{style}`"))
    for keyword in module.KEYWORDS:
        assert f"`{keyword}`" in row or style == "oneflow", f"{style}: {keyword} missing from the README table"
        assert re.search(rf"^  {keyword}\s", listed, re.M), f"{style}: {keyword} missing from `deconv styles`"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_is_documented(name):
    assert cli.commands[name].help
    assert f"deconv {name}" in README


def test_quick_start_is_make_demo_then_make_test():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert re.findall(r"^make \w+", quick, re.M) == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "demo: install" in makefile and "test: install" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
