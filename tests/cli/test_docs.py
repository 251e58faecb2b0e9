"""The docs stay true: every command has help, every style keyword is documented, the quick start is two
commands, every example runs when pasted into bash, and nothing user-facing points outside the repository."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from deconv_cli import conventions
from deconv_cli.cli import cli

ROOT = Path(__file__).parent.parent.parent
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


# ------------------------------------------------------------------ every example runs, pasted into bash
#
# Examples come from three places, found afresh on every run so that a new command or README block is
# covered without touching this file: the "Example:"/"Examples:" block of every command's help (walking
# the click group), every ```sh/```bash/```shell/```console block and every ```python block of the
# README, and samples/demo.sh together with the command lines it prints. Each command's help examples run
# in a fresh temporary folder that holds a copy of samples/; the README's run in one such folder, block
# after block, as a person pastes them (a later one may use an earlier one's output, and no two write one
# file unless the second says --force); each command under `bash -O failglob` so that an unquoted [..]
# fails as it does in zsh. A
# command that is meant to fail says so with a trailing comment "# exits N". `make ...` lines are not run
# here (CI runs make itself; test_quick_start_is_make_demo_then_make_test checks them).


BIN = Path(sys.executable).parent
SHELL_BLOCKS = ("sh", "bash", "shell", "console")
MAKE = re.compile(r"^(env( -u \w+| \w+=\S*)* )?make ")  # `make bench`, `env -u VAR make bench`
EXITS = re.compile(r"#\s*exits\s+(\d+)\s*$")


def _commands(lines) -> list[str]:
    """Shell lines -> commands: comments and blank lines dropped, '\\' continuations joined, '$ ' prompts cut."""
    commands, current = [], ""
    for raw in lines:
        line = raw.rstrip()
        if not current:
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if not line or line.startswith("#"):
                continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        commands.append(current + line.strip() if current else line)
        current = ""
    assert not current, f"a continuation line ends the block: {current!r}"
    return commands


def _walk(command: click.Command, path: tuple[str, ...]):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


def help_examples() -> dict[str, list[str]]:
    """'deconv CMD --help' -> the commands in its Example(s) block."""
    found = {}
    for path, command in _walk(cli, ("deconv",)):
        lines = (command.help or "").splitlines()
        block: list[str] = []
        for i, line in enumerate(lines):
            if re.match(r"^\s*Examples?:\s*$", line):
                for following in lines[i + 1:]:
                    if not following.strip():
                        break
                    block.append(following)
        if block:
            found[" ".join(path) + " --help"] = _commands(block)
    return found


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)


def readme_examples() -> dict[str, list[str]]:
    found = {}
    for n, (kind, body) in enumerate(readme_blocks(README)):
        if kind in SHELL_BLOCKS:
            commands = [c for c in _commands(body.splitlines()) if not MAKE.match(c)]
            if commands:
                found[f"README block {n} ({kind})"] = commands
        elif kind == "python":
            found[f"README block {n} (python)"] = [f"{shlex.quote(sys.executable)} - <<'PYTHON'\n{body}PYTHON"]
    return found


HELP_EXAMPLES, README_EXAMPLES = help_examples(), readme_examples()
EXAMPLES = {**HELP_EXAMPLES, **README_EXAMPLES}


@pytest.fixture
def sandbox(tmp_path):
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECONV_") and k != "NO_COLOR"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_in_bash(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-O", "failglob", "-c", command], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=600)


def test_examples_are_found_everywhere():
    """The finder sees every command's help example and the README's usage block: a sanity check on it."""
    for name in cli.commands:
        assert f"deconv {name} --help" in EXAMPLES, f"deconv {name} --help has no Example: block"
    assert sum(len(c) for c in EXAMPLES.values()) >= 20


def _run_examples(source: str, commands: list[str], folder: Path) -> None:
    for command in commands:
        expected = int(m.group(1)) if (m := EXITS.search(command.splitlines()[0])) else 0
        result = run_in_bash(command, folder)
        assert result.returncode == expected, (
            f"{source}: `{command}` exited {result.returncode} (expected {expected})\n{result.stderr[-2000:]}"
        )


@pytest.mark.parametrize("source", sorted(HELP_EXAMPLES))
def test_every_help_example_runs_in_bash(source, sandbox):
    _run_examples(source, HELP_EXAMPLES[source], sandbox)


def test_the_readme_runs_in_order_in_one_folder(sandbox):
    """As a person pastes the README top to bottom into one shell, in one folder."""
    for source, commands in README_EXAMPLES.items():  # in the README's order
        _run_examples(source, commands, sandbox)


TARGET = re.compile(r"(?:\s(?:-o|--output|--save-weight)\s+|>\s*)([^\s|;&]+)")


def test_no_two_examples_write_one_file():
    """Pasted in one folder, README and help examples alike, no example overwrites (or trips over) another's
    output: each writes its own name, unless it says --force or that it fails (# exits N)."""
    written: dict[str, str] = {}
    for source, commands in EXAMPLES.items():
        for command in commands:
            if "--force" in command or EXITS.search(command.splitlines()[0]):
                continue
            for target in TARGET.findall(command):
                if target.startswith("/dev/"):
                    continue
                assert target not in written, f"{source}: `{command}` writes {target}, as {written[target]} does"
                written[target] = source


def test_demo_runs_and_every_line_it_prints_pastes(sandbox):
    result = subprocess.run(["bash", str(sandbox / "samples" / "demo.sh")], cwd=sandbox, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    printed = [line[2:] for line in result.stdout.splitlines() if line.startswith("$ ")]
    assert len(printed) >= 10
    for command in printed:
        pasted = run_in_bash(command, sandbox)
        assert pasted.returncode == 0, f"`{command}` exited {pasted.returncode}\n{pasted.stderr[-2000:]}"


def test_readme_shows_what_run_prints(sandbox):
    """The README's two renderings of the first usage example are what `run` prints, piped and on an 80-column terminal."""
    from deconv_cli.execution.job import Job, nbytes, run_job
    from deconv_cli.render import report

    texts = [body for kind, body in readme_blocks(README) if kind == "text"]
    piped = run_in_bash("deconv run samples/torch_x.npy samples/torch_w.npy --bias samples/torch_b.npy "
                        "--set stride=2 --set padding=1 --set output_padding=1 -o y.npy", sandbox)
    assert piped.returncode == 0 and piped.stderr in texts
    os.chdir(sandbox)
    result = run_job(Job("samples/torch_x.npy", "samples/torch_w.npy", "y2.npy", "samples/torch_b.npy",
                         options={"stride": 2, "padding": 1, "output_padding": 1}))
    import io

    out = io.StringIO()
    console = report.make_console(out, width=80, force_terminal=True)
    report.print_derivation(result.derivation, out, console)
    report.emit([report.sizes_line(nbytes(result.derivation, result.dtype), result.dtype)], out, console)
    assert re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()) in texts


def test_readme_shows_what_target_shape_prints(sandbox):
    shown = next(body for kind, body in readme_blocks(README) if kind == "text" and "to paste" in body)
    result = run_in_bash("deconv shape --input-shape 1,8,16,16 --weight-shape 8,4,4,4 --set stride=2 "
                         "--target-shape 35,34", sandbox)
    assert result.stdout.endswith(shown)


# ------------------------------------------------------------------ nothing user-facing points outside the repository

OUTSIDE = re.compile(r"(?<!docs/)(?:DESIGN|CONVENTIONS)\.md|STYLE\.md|/work/|/home/|/root/|venvs/")  # docs/: in the repository


def user_facing_texts() -> dict[str, str]:
    texts = {path: (ROOT / path).read_text() for path in ("README.md", "Makefile", "samples/demo.sh",
                                                            "tests/golden/README.md")}
    for script in sorted((ROOT / "tests" / "golden").glob("make_*.py")):
        texts[str(script.relative_to(ROOT))] = script.read_text().split('"""')[1]  # the docstring users follow
    runner = CliRunner()
    for path, _ in _walk(cli, ("deconv",)):
        texts[" ".join(path) + " --help"] = runner.invoke(cli, [*path[1:], "--help"], terminal_width=200).stdout
    texts["deconv bench --list"] = runner.invoke(cli, ["bench", "--list"]).stdout
    return texts


@pytest.mark.parametrize("name, text", sorted(user_facing_texts().items()))
def test_nothing_user_facing_names_files_outside_the_repository(name, text):
    assert text.strip()
    assert not OUTSIDE.search(text), f"{name} mentions {OUTSIDE.search(text).group(0)}"


@pytest.mark.parametrize("path", [p for p, _ in _walk(cli, ("deconv",))], ids=" ".join)
def test_help_reads_at_80_columns(path):
    text = CliRunner().invoke(cli, [*path[1:], "--help"], terminal_width=80).stdout
    assert [line for line in text.splitlines() if len(line) > 80] == []


def test_readme_shows_what_the_onnx_snippet_prints(sandbox):
    pytest.importorskip("onnx")
    shown = re.search(r"^python snippet\.py .*\n# (y .*)$", README, re.M).group(1)
    made = run_in_bash("deconv explain samples/torch_x.npy samples/torch_w.npy --bias samples/torch_b.npy "
                       "--set stride=2 --set padding=1 --to onnx --code > snippet.py && python snippet.py", sandbox)
    assert made.returncode == 0, made.stderr
    # the last digits of the error depend on onnxruntime's kernels for the machine
    number = r"(\d\.\de-\d\d)"
    pattern = re.escape(shown).replace(re.escape(re.search(number, shown).group(1)), number)
    assert float(re.fullmatch(pattern + "\n", made.stdout).group(1)) < 1e-5
