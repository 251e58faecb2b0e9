"""Every help text names every tensor format its command accepts, from tensor_io's one table (issue 22)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deconv_cli import tensor_io
from deconv_cli.cli import cli
from deconv_cli.tensor_io._common import FORMATS, STDIO

NO_TENSORS = {"styles", "bench", "layers"}  # the commands that take no tensor reference (layers: a model file)
READS_STDIN = {"run", "compare"}  # where `-` is a tensor (stdin, or stdout for run -o)


def help_text(*argv: str) -> str:
    result = CliRunner().invoke(cli, [*argv, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    return " ".join(result.stdout.split())  # help wraps at spaces: compare as one line


def test_the_table_has_one_reference_per_format_and_each_parses():
    assert {tensor_io.Ref(f"x{ext}").kind for ext in FORMATS} == set(tensor_io.REFERENCES)
    for ext, form in tensor_io.REFERENCES.items():
        ref = tensor_io.parse_ref(form.replace("[", "").replace("]", ""))
        assert (ref.path, ref.kind) == (f"x{ext}", ext)


def test_the_group_help_names_every_format_and_stdin():
    text = help_text()
    assert all(form in text for form in tensor_io.REFERENCES.values()), text
    assert STDIO in text


@pytest.mark.parametrize("command", sorted(set(cli.commands) - NO_TENSORS))
def test_every_command_help_names_every_format(command):
    text = help_text(command)
    missing = [form for form in tensor_io.REFERENCES.values() if form not in text]
    assert missing == [], f"`deconv {command} --help` does not name {missing}"
    assert (STDIO in text) == (command in READS_STDIN)


def test_the_commands_without_tensors_exist():
    assert NO_TENSORS <= set(cli.commands)  # a renamed command must not drop out of the check above


def test_run_output_option_names_every_writable_format():
    text = help_text("run")
    option = text[text.index("-o, --output OUT"):text.index("--device")]
    written = {ext: form for ext, form in tensor_io.REFERENCES.items() if ext in tensor_io.WRITABLE}
    assert all(form in option for form in written.values()) and STDIO in option
    assert not any(form in option for ext, form in tensor_io.REFERENCES.items() if ext not in written)
    assert set(tensor_io.WRITABLE) <= set(tensor_io.REFERENCES)


def test_the_unknown_extension_error_names_every_format():
    with pytest.raises(tensor_io.BadReference) as caught:
        tensor_io.parse_ref("w.txt")
    assert all(ext in caught.value.hint for ext in tensor_io.REFERENCES), caught.value.hint
