"""`deconv detect`: goldens of every style, the weight saved in each of the four readings, found among the top
matches; the printed lines run as pasted; the search is bounded and reports what it tried."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_goldens import GOLDEN, _cases, _options

import deconv_cli
from deconv_cli.checks.detect import LAYOUTS, MAX_DILATION, MAX_STRIDE, READINGS, detect
from deconv_cli.cli import cli, parse_set
from deconv_cli.conventions import STYLES

PER_STYLE = 3
# Candidates per reading: tiny 3-D goldens (3x3x3 inputs) allow ~500k configs per reading; the true one comes
# within the first few hundred (uniform stride/dilation and plain crops first), so a lower limit keeps this fast.
LIMIT = 20_000


def _effective(config, input_spatial):
    """What a config computes: stride is moot on a length-1 input, dilation on a size-1 kernel."""
    return (
        tuple(1 if n == 1 else s for s, n in zip(config.stride, input_spatial)),
        tuple(1 if k == 1 else d for d, k in zip(config.dilation, config.kernel)),
        config.crops, config.groups,
    )


def _picked():
    """Per style, one float32 case per spatial rank whose weight is in the plain (C_in, C_out/g, *k) layout,
    batched and channels-first (what detect searches), preferring strided and padded ones."""
    chosen = {style: [] for style in STYLES}
    for param in _cases():
        framework, case = param.values
        if case["expect"] != "ok" or case["dtype"] != "float32" or case.get("quirks"):
            continue
        record = deconv_cli.derive(case["input_shape"], case["weight_shape"], style=case["style"],
                                   bias_shape=case["bias_shape"], **_options(case))
        c = record.config
        if (c.weight_perm is not None or len(case["weight_shape"]) != c.rank + 2 or c.channels_last or not c.batched
                or max(c.stride) > MAX_STRIDE or max(c.dilation) > MAX_DILATION or not _in_bounds(c)):
            continue
        interesting = max(c.stride) > 1 and any(lo or hi for lo, hi in c.crops)
        chosen[case["style"]].append((c.rank, not interesting, case["name"], framework, case))
    for style, found in chosen.items():  # one case per spatial rank, the first interesting one
        ranks = {}
        for rank, _, _, framework, case in sorted(found, key=lambda f: f[:3]):
            ranks.setdefault(rank, (framework, case))
        for framework, case in list(ranks.values())[:PER_STYLE]:
            yield pytest.param(framework, case, id=f"{style}-{case['name']}")


def _in_bounds(c) -> bool:
    """Inside detect's documented search: crops within the dilated kernel, extensions below max(s, d)."""
    for k, s, d, (lo, hi) in zip(c.kernel, c.stride, c.dilation, c.crops):
        extent = d * (k - 1) + 1
        if not (0 <= lo <= extent - 1 and -(max(s, d) - 1) <= hi <= extent - 1):
            return False
    return True


def _save_in_reading(w, reading, config):
    """The file a user would have: the canonical weight saved in the given (wrong) reading."""
    if reading.endswith("flip"):
        w = np.flip(w, axis=tuple(range(2, w.ndim)))
    if reading.startswith("swap"):
        g = config.groups
        ci, co = config.in_channels // g, config.out_channels // g
        w = w.reshape(g, ci, co, *config.kernel).swapaxes(1, 2).reshape(g * co, ci, *config.kernel)
    return np.ascontiguousarray(w)


@pytest.mark.parametrize("framework, case", list(_picked()))
def test_detect_finds_the_golden_configuration_in_every_reading(framework, case, tmp_path):
    with np.load(GOLDEN / f"{framework}.npz") as arrays:
        x, w, y = (arrays[f"{case['name']}__{k}"] for k in "xwy")
        b = arrays.get(f"{case['name']}__b")
    style = case["style"]
    truth = deconv_cli.derive(x.shape, w.shape, style=style, bias_shape=None if b is None else b.shape,
                              **_options(case)).config
    want = _effective(truth, x.shape[2:])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    if b is not None:
        np.save(tmp_path / "b.npy", b)
    for reading in READINGS:
        saved = _save_in_reading(w, reading, truth)
        np.save(tmp_path / "w.npy", saved)
        # a depthwise weight reads the same swapped: detect names the first reading that fits the file
        fits = [r for r in READINGS if np.array_equal(_save_in_reading(w, r, truth), saved)]
        found = detect(str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), str(tmp_path / "y.npy"),
                       bias=None if b is None else str(tmp_path / "b.npy"), styles=(style,), limit=LIMIT)
        assert found.tried >= 1 and found.matches
        hits = []
        for m in found.matches:
            assert m.style == style
            weight_shape = w.shape if m.weight == "as saved" else truth.weight_shape
            got = deconv_cli.derive(x.shape, weight_shape, style=style, bias_shape=None if b is None else b.shape,
                                    **parse_set(m.set)).config
            hits.append((m.weight, _effective(got, x.shape[2:])))
        assert (fits[0], want) in hits, f"{reading}: {want} not among {hits}"


@pytest.fixture
def layer(tmp_path, rng):
    """A realistic decoder layer saved with its kernel flipped, as a framework that correlates would."""
    x = rng.standard_normal((1, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 4, 4)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    y = deconv_cli.deconvolve(x, w, b, stride=2, padding=1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w_flipped.npy", np.ascontiguousarray(w[:, :, ::-1, ::-1]))
    np.save(tmp_path / "b.npy", b)
    np.save(tmp_path / "y.npy", y)
    os.chdir(tmp_path)
    return x, w, b, y


def test_detect_cli_prints_lines_that_run_as_pasted(layer, tmp_path):
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w_flipped.npy", "y.npy", "--bias", "b.npy",
                                      "--style", "torch", "--top", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1 matching configuration, best first (") and "candidates tried" in lines[0]
    assert lines[1].startswith("1. weight flip, max abs error ") and lines[1].endswith(": torch")
    assert lines[2] == ("   deconv detect x.npy w_flipped.npy y.npy --bias b.npy --style torch --top 1 "
                        "--save-weight w_flipped.flip.npy")
    assert lines[3] == ("   deconv run x.npy w_flipped.flip.npy --bias b.npy --style torch --set stride=2 --set padding=1 "
                        "--expect y.npy")
    assert "python" not in result.stdout and "deconv_cli" not in result.stdout  # runs wherever deconv is installed
    script = "\n".join(line.strip() for line in lines[2:4])
    venv = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{venv}:{os.environ['PATH']}")
    out = subprocess.run(["bash", "-e", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MATCH: all 4608 elements" in out.stderr


def test_save_weight_writes_the_best_matchs_weight_and_its_lines_read_it(layer, tmp_path):
    x, w, b, y = layer
    args = ["detect", "x.npy", "w_flipped.npy", "y.npy", "--bias", "b.npy", "--top", "1", "--save-weight", "fixed.npz:w"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["saved_weight"] == "fixed.npz:w"
    np.testing.assert_array_equal(np.load("fixed.npz")["w"], w)  # the flip undone
    # styles with their own weight layout (Keras, TensorFlow) read a re-laid copy, which a comment describes
    own = [m for m in found["matches"] if not m["command"].startswith("# save the weight")]
    assert own and all(m["command"].startswith("deconv run x.npy fixed.npz:w ") for m in own)
    for match in own:
        assert CliRunner().invoke(cli, [*shlex.split(match["command"])[1:], "-q"]).exit_code == 0
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and again.stderr == "Error: fixed.npz already holds an array 'w'. Pass --force to replace it.\n"
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0


def test_save_weight_without_a_match_writes_nothing(layer, tmp_path, rng):
    np.save(tmp_path / "noise.npy", rng.standard_normal((1, 8, 24, 24)).astype(np.float32))
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w_flipped.npy", "noise.npy", "--style", "torch",
                                      "--save-weight", "fixed.npy"])
    assert result.exit_code == 1 and not (tmp_path / "fixed.npy").exists()


@pytest.mark.parametrize("flipped", [False, True])
def test_a_depthwise_weight_is_printed_once(tmp_path, rng, flipped):
    """(C, 1, *k) with groups=C reads the same swapped: one configuration, not the same one twice."""
    x = rng.standard_normal((1, 6, 7, 7)).astype(np.float32)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", np.ascontiguousarray(w[:, :, ::-1, ::-1]) if flipped else w)
    np.save(tmp_path / "y.npy", deconv_cli.deconvolve(x, w, stride=2, groups=6))
    found = detect(str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), str(tmp_path / "y.npy"), styles=("torch",), top=2)
    readings = [(m.weight, m.set) for m in found.matches]
    assert len(readings) == len(set(readings)) and all("swap" not in r for r, _ in readings)
    assert readings[0] == ("flip" if flipped else "as saved", ("stride=2", "groups=6"))
    result = CliRunner().invoke(cli, ["detect", str(tmp_path / "x.npy"), str(tmp_path / "w.npy"),
                                      str(tmp_path / "y.npy"), "--style", "torch", "--top", "1"])
    assert result.stdout.count("deconv run ") == 1 and result.stdout.splitlines()[0].startswith("1 matching configuration")


def test_detect_prints_a_relayout_for_a_style_with_its_own_weight_layout(layer, tmp_path):
    """Keras wants the kernel as (k..., filters, C_in): the match re-saves the weight in that layout, and the
    printed lines run as pasted."""
    np.save(tmp_path / "w.npy", layer[1])
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w.npy", "y.npy", "--bias", "b.npy", "--style", "keras",
                                      "--top", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("1. weight as saved, max abs error ") and lines[1].endswith(": keras")
    assert lines[2].strip() == "# save the weight w re-laid as w.transpose((2, 3, 1, 0)) to w.keras.npy"
    assert lines[3] == ("   deconv run x.npy w.keras.npy --bias b.npy --style keras --set strides=2 "
                        "--set data_format=channels_first --set padding=same --expect y.npy")
    np.save(tmp_path / "w.keras.npy", np.ascontiguousarray(layer[1].transpose((2, 3, 1, 0))))  # as the comment says
    venv = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{venv}:{os.environ['PATH']}")
    out = subprocess.run(["bash", "-e", "-c", lines[3].strip()], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MATCH: all 4608 elements" in out.stderr


def test_detect_finds_tensorflow_without_a_bias(layer, tmp_path):
    """tf.nn.conv*_transpose has no bias: a bias-free output is found, with output_shape and the filters re-laid."""
    x, w, _, _ = layer
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "y0.npy", deconv_cli.deconvolve(x, w, stride=2, padding=1))
    found = detect("x.npy", "w.npy", "y0.npy", styles=("tensorflow",), top=1)
    assert [(m.style, m.set) for m in found.matches] == [
        ("tensorflow", ("output_shape=[1,8,24,24]", "strides=2", "data_format=NCHW"))]
    assert "w.transpose((2, 3, 1, 0))" in found.matches[0].command


def test_detect_json_every_style_and_quoting(layer, tmp_path):
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w_flipped.npy", "y.npy", "--bias", "b.npy", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["tried"] > 0
    first = [m for m in record["matches"] if m["weight"] == "flip"]
    assert {m["style"] for m in first} >= {"torch", "onnx", "oneflow", "dragon"}
    for m in record["matches"]:
        assert set(m) >= {"style", "set", "weight", "max_abs"} and m["max_abs"] < 1e-4
    # a tuple value is quoted for bash: --set 'strides=[2,2]'
    onnx = next(m for m in first if m["style"] == "onnx")
    assert "--set 'strides=[2,2]'" in onnx["command"]


def test_detect_no_match_exit_1_and_tried(layer, tmp_path, rng):
    np.save(tmp_path / "noise.npy", rng.standard_normal((1, 8, 24, 24)).astype(np.float32))
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w_flipped.npy", "noise.npy", "--json"])
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["matches"] == [] and record["tried"] > 100
    text = CliRunner().invoke(cli, ["detect", "x.npy", "w_flipped.npy", "noise.npy", "--limit", "10"])
    assert text.exit_code == 1
    # 10 per reading; 4 readings fit the shapes: as saved and flipped, channels first and (a, *k, b) as 2 groups
    assert text.stdout.startswith("no match (40 candidates tried, 0 computed in full, ")
    assert text.stdout.splitlines()[0].endswith(" s; stopped at --limit, raise it to search further)")
    assert text.stdout.splitlines()[1] == ("  not searched: a bias (pass --bias if the framework added one), "
                                           "channels-last input and output (pass --channels-last), negative paddings, "
                                           "stride > 16, dilation > 4")


def test_detect_rejects_impossible_shapes_with_one_line(layer, tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((1, 8, 24), np.float32))
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w_flipped.npy", "flat.npy"])
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: input (1, 16, 12, 12), weight (16, 8, 4, 4) and expected (1, 8, 24) are not one transposed "
        "convolution. Give INPUT (N, C, *spatial), WEIGHT (C_in, C_out/groups, *kernel) and EXPECTED "
        "(N, C_out, *spatial).\n")


def _grouped_golden():
    for param in _cases():
        framework, case = param.values
        if (framework == "megengine" and case["expect"] == "ok" and not case.get("quirks")
                and len(case["weight_shape"]) == len(case["input_shape"]) + 1 and case["dtype"] == "float32"):
            return framework, case
    raise AssertionError("no grouped MegEngine golden")


@pytest.mark.parametrize("reading", ["as saved", "swap in/out + flip"])
def test_detect_reads_a_grouped_megengine_weight(reading, tmp_path):
    """A (groups, C_in/g, C_out/g, *k) weight file (or its (groups, C_out/g, C_in/g, *k) mistake, flipped)."""
    framework, case = _grouped_golden()
    with np.load(GOLDEN / f"{framework}.npz") as arrays:
        x, w, y = (arrays[f"{case['name']}__{k}"] for k in "xwy")
        b = arrays.get(f"{case['name']}__b")
    truth = deconv_cli.derive(x.shape, w.shape, style="megengine", bias_shape=None if b is None else b.shape,
                              **_options(case)).config
    saved = w
    if reading != "as saved":
        saved = np.ascontiguousarray(np.flip(w, axis=tuple(range(3, w.ndim))).swapaxes(1, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", saved)
    np.save(tmp_path / "y.npy", y)
    args = [str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), str(tmp_path / "y.npy")]
    if b is not None:
        np.save(tmp_path / "b.npy", b.reshape(-1))
    found = detect(*args, bias=None if b is None else str(tmp_path / "b.npy"), limit=LIMIT)
    mine = [m for m in found.matches if m.weight == reading]
    assert mine, found
    assert {m.style for m in mine} >= ({"megengine"} if reading == "as saved" else {"torch"})
    for m in mine:
        if m.style in ("megengine", "torch"):  # the file as saved, or the canonical weight re-saved
            reads_the_file = shlex.split(m.command.splitlines()[-1])[3] == args[1]
            assert reads_the_file == (reading == "as saved" and m.style == "megengine")
            shape = saved.shape if reads_the_file else truth.weight_shape
            got = deconv_cli.derive(x.shape, shape, style=m.style, **parse_set(m.set)).config
            assert _effective(got, x.shape[2:]) == _effective(truth, x.shape[2:])


def test_the_search_reports_each_weight_reading_to_its_progress_callback(layer):
    seen = []
    found = detect("x.npy", "w_flipped.npy", "y.npy", bias="b.npy", styles=("torch",), top=1,
                   progress=lambda done, total: seen.append((done, total)))
    total = len(READINGS) * len(LAYOUTS)  # each reading of the weight with its channel axes first, then last
    assert found.matches and seen == [(i, total) for i in range(1, total + 1)]


def test_detect_draws_a_bar_on_a_terminal_and_none_in_a_pipe(layer, tmp_path):
    from processes import on_a_terminal

    argv = ["detect", "x.npy", "w_flipped.npy", "y.npy", "--bias", "b.npy", "--style", "torch"]
    code, drawn = on_a_terminal(argv, tmp_path)
    assert code == 0, drawn
    total = len(READINGS) * len(LAYOUTS)
    assert "weight readings searched" in drawn and f"{total}/{total}" in drawn, drawn
    piped = subprocess.run([sys.executable, "-m", "deconv_cli", *argv], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""


def _picked_channels_last():
    """Per style, one float32 case per spatial rank (two at most) recorded channels last and batched: the
    files TensorFlow, Keras, JAX, Flax, Paddle and Dragon users have, weights in their own layouts."""
    chosen: dict = {}
    for param in _cases():
        framework, case = param.values
        if case["expect"] != "ok" or case["dtype"] != "float32" or case.get("quirks"):
            continue
        c = deconv_cli.derive(case["input_shape"], case["weight_shape"], style=case["style"],
                              bias_shape=case["bias_shape"], **_options(case)).config
        if not (c.channels_last and c.batched) or max(c.stride) > MAX_STRIDE or max(c.dilation) > MAX_DILATION \
                or not _in_bounds(c) or len(case["weight_shape"]) != c.rank + 2:
            continue
        chosen.setdefault(case["style"], {}).setdefault(c.rank, (framework, case))
    for style, ranks in sorted(chosen.items()):
        for framework, case in list(ranks.values())[:2]:
            yield pytest.param(framework, case, id=f"{style}-{case['name']}")


def _follow(command: str) -> None:
    """Do what a match's lines say: the re-save comment (its NumPy code on the loaded weight ``w``), a detect
    line with --save-weight, then the run line, whose --expect must pass."""
    for line in command.splitlines():
        if line.startswith("# save the weight w re-laid as "):
            code, path = line.removeprefix("# save the weight w re-laid as ").rsplit(" to ", 1)
            source = shlex.split(command.splitlines()[-1])[3]  # not the run line's file: the original's
            np.save(path, eval(code, {"np": np, "w": np.load(_ORIGINAL[source])}))  # noqa: S307 (our own output)
            continue
        result = CliRunner().invoke(cli, shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.output)


_ORIGINAL: dict = {}  # the run line's weight path -> the weight file the recipe re-lays


@pytest.mark.parametrize("framework, case", list(_picked_channels_last()))
def test_detect_channels_last_finds_the_golden_configuration_and_its_lines_run(framework, case, tmp_path):
    """With --channels-last, the input and output are read (N, *spatial, C) and the weight in every reading,
    its channel axes first or last: each recorded channels-last golden is found in its own style, and every
    printed recipe (re-save, then run with --expect) runs and matches. Keras's, TensorFlow's, Paddle's and
    Dragon's weights are read as saved, in their own layouts ((k..., filters, C_in), (C_in, *k, C_out))."""
    with np.load(GOLDEN / f"{framework}.npz") as arrays:
        x, w, y = (arrays[f"{case['name']}__{k}"] for k in "xwy")
        b = arrays.get(f"{case['name']}__b")
    style = case["style"]
    files = {name: str(tmp_path / f"{name}.npy") for name in ("x", "w", "y", "b")}
    for name, array in (("x", x), ("w", w), ("y", y), ("b", b)):
        if array is not None:
            np.save(files[name], array)
    found = detect(files["x"], files["w"], files["y"], bias=None if b is None else files["b"], styles=(style,),
                   limit=LIMIT, channels_last=True)
    mine = [m for m in found.matches if m.style == style]
    assert mine, found
    if style not in ("jax", "flax"):  # their goldens' forward kernels take a flipped re-save (transpose_kernel=True)
        assert any(m.command.count("\n") == 0 and shlex.split(m.command)[3] == files["w"] for m in mine), mine
    for m in mine:
        run_line = shlex.split(m.command.splitlines()[-1])
        _ORIGINAL[run_line[3]] = files["w"]
        _follow(m.command)


def test_without_channels_last_a_channels_last_file_is_not_misread(tmp_path, rng):
    """The same files without --channels-last: no spelling claims them (the search reads channels first)."""
    x = rng.standard_normal((1, 5, 6, 3)).astype(np.float32)  # (N, H, W, C)
    k = rng.standard_normal((3, 3, 4, 3)).astype(np.float32)  # Keras's (k, k, filters, C_in)
    y = deconv_cli.deconvolve(x, k, style="keras", strides=2, padding="same")
    for name, array in (("x", x), ("k", k), ("y", y)):
        np.save(tmp_path / f"{name}.npy", array)
    args = [str(tmp_path / f"{n}.npy") for n in "xky"]
    assert not detect(*args, limit=LIMIT).matches
    found = detect(*args, limit=LIMIT, channels_last=True)
    keras = next(m for m in found.matches if m.style == "keras")
    assert (keras.weight, keras.layout, keras.set) == ("swap in/out", "kernel first", ("strides=2", "padding=same"))
    assert keras.as_dict()["layout"] == "kernel first" and keras.command.count("\n") == 0
    text = CliRunner().invoke(cli, ["detect", *args, "--channels-last", "--style", "keras"])
    assert text.exit_code == 0 and "1. weight kernel first, swap in/out, max abs error " in text.stdout
