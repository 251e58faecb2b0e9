"""The repository stands on its own: every file a comment, message, test or document names is in it, and no
code is left that nothing uses."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
SCANNED = ("*.py", "*.md", "*.sh", "*.toml", "Makefile")
# docs/ holds the design documents as written (their verification inventory names scripts that were run
# outside the repository); this file names missing files on purpose
NOT_SCANNED = ("docs/*", "tests/test_hygiene.py")

# "DESIGN.md", "CONVENTIONS section 3", "STYLE rule 6", "DESIGN's memory target": the project's documents
DOCUMENT = re.compile(r"\b(DESIGN|CONVENTIONS|STYLE)(?:\.md\b|(?=(?: section| rule| E?\d)\b))|\b(DESIGN|CONVENTIONS)(?='s\b)")
# a repository path (engines/_ort.py, tests/golden/dragon.json) or a bare module or document name (tiles.py)
PATH = re.compile(r"(?<![\w./:*<>-])((?:[\w.-]+/)+[\w.-]+\.(?:py|md|json|sh|toml|txt)|[\w-]+(?:\.[\w-]+)*\.(?:py|md))\b")
URL = re.compile(r"\w+://\S+")
# files a run makes, not files the repository has: a path joined in code (tmp_path / "user.py") or the
# target of a shell redirection in an example (deconv explain --code > snippet.py)
# and the name a compiled snippet is given (compile(code, "snippet.py", "exec"))
EXAMPLES = {"snippet.py"}
MADE = re.compile(r"/\s*[\"'][^\"'\n]*[\"']|(?<![=-])>\s*[\w./-]+")


def repository_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        if path.is_file() and not SKIP & set(path.relative_to(ROOT).parts) and ".egg-info" not in str(path):
            found.append(path.relative_to(ROOT))
    return found


FILES = repository_files()
NAMES = {path.as_posix() for path in FILES}


def exists(reference: str) -> bool:
    """A path from the root, or the tail of one (``golden/dragon.json``, ``tiles.py``)."""
    reference = reference.removeprefix("./")
    return reference in NAMES or any(name.endswith("/" + reference) for name in NAMES)


def references(text: str) -> set[str]:
    text = MADE.sub(" ", URL.sub(" ", text))
    found = {f"{a or b}.md" for a, b in DOCUMENT.findall(text)}
    return found | set(PATH.findall(text)) - EXAMPLES


def scanned() -> list[Path]:
    return sorted(path for path in FILES if any(path.match(pattern) for pattern in SCANNED)
                  and not any(path.match(pattern) for pattern in NOT_SCANNED))


@pytest.mark.parametrize("path", scanned(), ids=str)
def test_every_file_a_text_names_is_in_the_repository(path):
    missing = sorted(ref for ref in references((ROOT / path).read_text(encoding="utf-8")) if not exists(ref))
    assert missing == [], f"{path} names files the repository does not have: {', '.join(missing)}"


@pytest.mark.parametrize("text, found", [
    ("rules (CONVENTIONS.md section 4)", {"CONVENTIONS.md"}),
    ("torch rules (CONVENTIONS 3); (CONVENTIONS E5)", {"CONVENTIONS.md"}),
    ("no RawKernel yet (STYLE rule 6), within DESIGN's 25%", {"STYLE.md", "DESIGN.md"}),
    ("--to STYLE, deconv styles STYLE, in STYLE's framework, DESIGN_NOTES", set()),
    ("the make_*_goldens.py and make_<framework>_goldens.py scripts, --code > snippet.py", set()),
    ("see engines/_ort.py and tests/golden/dragon.json; tiles.py", {"engines/_ort.py", "tests/golden/dragon.json", "tiles.py"}),
    ("write x.npy and jobs.jsonl; https://example.org/a/b.md", set()),
])
def test_references_are_found(text, found):
    assert references(text) == found


def test_a_missing_file_is_a_missing_reference():
    assert exists("docs/DESIGN.md") and exists("DESIGN.md") and exists("execution/tiles.py")
    assert not exists("STYLE.md") and not exists("jax.md") and not exists("execution/tile.py")


@pytest.mark.skipif(shutil.which("vulture", path=str(Path(sys.executable).parent)) is None,
                    reason="vulture is in the dev extra")
def test_no_code_that_nothing_uses():
    done = subprocess.run([str(Path(sys.executable).parent / "vulture")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
