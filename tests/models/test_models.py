"""Layers straight from model files (issue 21): MODEL.onnx#NODE as a layer source, and `deconv layers`.

The fixtures (tests/fixtures/models, made by make_onnx_models.py) are a PyTorch model with six different
transposed convolutions exported with torch.onnx.export, one node's pads made asymmetric, and every node's
output recorded by onnxruntime; the same model with its initializers in an external data file.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from deconv_cli import models
from deconv_cli.cli import cli

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "models")
MODEL = os.path.join(HERE, "deconvs.onnx")
EXTERNAL = os.path.join(HERE, "deconvs_external.onnx")
RECORDED = os.path.join(HERE, "deconvs_recorded.npz")
# node -> (its input, its output) in RECORDED
NODES = {
    "/up1d/ConvTranspose": ("x1", "a"), "/grouped/ConvTranspose": ("x2", "b"), "/dilated/ConvTranspose": ("b", "c"),
    "/asym/ConvTranspose": ("c", "d"), "/up3d/ConvTranspose": ("x3", "e"), "/depthwise1d/ConvTranspose": ("a", "f"),
}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def recorded(name):
    return np.load(RECORDED)[name]


def one_error_line(result, code=2):
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# ---------------------------------------------------------------- the reader


def test_reader_lists_every_conv_transpose_with_its_attributes_and_shapes():
    found = models.layers(MODEL)
    assert [layer.name for layer in found] == list(NODES)
    assert [layer.index for layer in found] == list(range(6))
    asym = found[3]
    assert (asym.op, asym.style, asym.rank) == ("ConvTranspose", "onnx", 2)
    assert asym.options == {"dilations": [1, 1], "group": 1, "kernel_shape": [4, 4], "pads": [1, 0, 2, 1], "strides": [2, 2]}
    assert (asym.weight_shape, asym.bias_shape, asym.input_shape) == ((3, 2, 4, 4), (2,), (1, 3, 18, 14))
    assert found[4].bias is None and found[4].bias_shape is None
    assert found[5].options["group"] == 3 and found[5].input_shape == (2, 6, 14)  # inferred: a node's output


def test_layers_read_headers_only(monkeypatch):
    """Listing and planning never convert an initializer; loading one does."""
    calls = []
    real = numpy_helper.to_array
    monkeypatch.setattr(numpy_helper, "to_array", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = invoke("layers", EXTERNAL, "--json")
    assert result.exit_code == 0 and calls == []
    assert invoke("shape", f"{MODEL}#2").exit_code == 0 and calls == []
    assert models.layer(f"{EXTERNAL}#2").load_weight().shape == (6, 3, 3, 3) and calls == [1]


def test_external_data_gives_the_same_weights_as_the_embedded_model():
    for inside, outside in zip(models.layers(MODEL), models.layers(EXTERNAL)):
        np.testing.assert_array_equal(inside.load_weight(), outside.load_weight())
        if inside.bias is not None:
            np.testing.assert_array_equal(inside.load_bias(), outside.load_bias())
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(MODEL).graph.initializer}
    np.testing.assert_array_equal(models.layer(f"{EXTERNAL}#/up3d/ConvTranspose").load_weight(), weights["up3d.weight"])


def test_a_layer_by_name_or_by_index():
    assert models.layer(f"{MODEL}#3").name == "/asym/ConvTranspose"
    assert models.layer(f"{MODEL}#/asym/ConvTranspose").index == 3
    assert models.split("dir#1/m.onnx#/a#b") == ("dir#1/m.onnx", "/a#b")
    assert models.split("w.npy") is None


# ---------------------------------------------------------------- checked against onnxruntime


@pytest.mark.parametrize("model", [MODEL, EXTERNAL], ids=["embedded", "external"])
@pytest.mark.parametrize("node", list(NODES))
def test_run_reproduces_every_node_that_onnxruntime_ran(tmp_path, model, node):
    source, output = NODES[node]
    out = tmp_path / "y.npy"
    result = invoke("run", f"{RECORDED}:{source}", f"{model}#{node}", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    expected = recorded(output)
    assert json.loads(result.stdout)["output_shape"] == list(expected.shape)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-5)


def test_run_by_index_with_expect(tmp_path):
    assert invoke("run", f"{RECORDED}:c", f"{MODEL}#3", "--expect", f"{RECORDED}:d", "-q").exit_code == 0
    # the same input through another layer does not match: --expect would catch a wrong layer
    assert invoke("run", f"{RECORDED}:x2", f"{MODEL}#1", "--expect", f"{RECORDED}:d", "-q").exit_code == 1


def test_shape_from_the_models_record_and_from_input_shape():
    result = invoke("shape", f"{MODEL}#/asym/ConvTranspose", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["style"] == "onnx" and data["output_shape"] == list(recorded("d").shape)
    result = invoke("shape", f"{MODEL}#3", "--input-shape", "2,3,5,6", "--json")
    assert json.loads(result.stdout)["output_shape"] == [2, 2, 9, 13]  # (5-1)*2+4-1-2, (6-1)*2+4-0-1
    result = invoke("shape", f"{RECORDED}:x3", f"{MODEL}#4", "--json")
    assert json.loads(result.stdout)["output_shape"] == list(recorded("e").shape)


def test_explain_code_computes_the_recorded_output():
    result = invoke("explain", f"{RECORDED}:c", f"{MODEL}#/asym/ConvTranspose", "--to", "onnx", "--code")
    assert result.exit_code == 0, result.output
    scope = {}
    exec(compile(result.stdout, "snippet", "exec"), scope)
    np.testing.assert_allclose(scope["y"], recorded("d"), rtol=1e-5, atol=1e-5)
    result = invoke("explain", f"{MODEL}#3", "--to", "torch", "--json")
    data = json.loads(result.stdout)
    assert data["style"] == "torch" and data["expressible"] is False and data["crop"] == [[0, 1], [0, 1]]


def test_explain_code_to_torch_computes_the_recorded_output():
    pytest.importorskip("torch")
    result = invoke("explain", f"{RECORDED}:b", f"{EXTERNAL}#2", "--to", "torch", "--code")
    scope = {}
    with warnings.catch_warnings():  # quiet: onnx gives read-only arrays, which torch.from_numpy warns about
        warnings.simplefilter("error")
        exec(compile(result.stdout, "snippet", "exec"), scope)
    np.testing.assert_allclose(scope["y"], recorded("c"), rtol=1e-5, atol=1e-5)


def test_detect_with_the_models_weight_finds_the_models_keywords():
    result = invoke("detect", f"{RECORDED}:x1", f"{MODEL}#0", f"{RECORDED}:a", "--json")
    assert result.exit_code == 0, result.output
    matches = json.loads(result.stdout)["matches"]
    assert matches and all(m["style"] == "onnx" for m in matches)
    assert any(m["weight"] == "as saved" and "strides=[2]" in m["set"] for m in matches)


def test_batch_manifest_layer_field(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    shutil.copy(EXTERNAL, tmp_path)
    shutil.copy(os.path.join(HERE, "deconvs_external.data"), tmp_path)
    jobs = [{"input": f"{RECORDED}:{NODES[n][0]}", "layer": f"deconvs_external.onnx#{n}", "output": f"{i}.npy"}
            for i, n in enumerate(NODES)]
    manifest.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    result = invoke("batch", manifest, "-j", "1", "--json", "--set", "stride=3")  # a default the layers ignore
    assert result.exit_code == 0, result.output
    for i, node in enumerate(NODES):
        np.testing.assert_allclose(np.load(tmp_path / f"{i}.npy"), recorded(NODES[node][1]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra, named", [({"weight": "w.npy"}, "weight"), ({"set": {"group": 1}}, "set"),
                                           ({"style": "onnx"}, "style"), ({"bias": "b.npy"}, "bias")])
def test_batch_layer_with_its_own_fields_is_a_manifest_error(tmp_path, extra, named):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"input": "x.npy", "layer": f"{MODEL}#0", "output": "y.npy", **extra}) + "\n")
    line = one_error_line(invoke("batch", manifest))
    assert line.startswith(f"Error: line 1: 'layer' gives the weight, bias, style and set; {named} cannot be given too")


def test_batch_missing_layer_is_a_manifest_error(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"input": "x.npy", "layer": f"{MODEL}#nope", "output": "y.npy"}) + "\n")
    assert "line 1:" in one_error_line(invoke("batch", manifest)) and not (tmp_path / "y.npy").exists()


# ---------------------------------------------------------------- deconv layers


def test_layers_text_report():
    result = invoke("layers", MODEL)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith("6 transposed convolutions")
    assert lines[7] == ("#3 /asym/ConvTranspose  ConvTranspose 2-D  input (1, 3, 18, 14)  weight (3, 2, 4, 4)  "
                        "bias (2,)  -> output (1, 2, 35, 29)")
    assert lines[8] == "    onnx: dilations=[1,1] group=1 kernel_shape=[4,4] pads=[1,0,2,1] strides=[2,2]"


def test_layers_json_fields_and_output_shapes():
    data = json.loads(invoke("layers", MODEL, "--json").stdout)
    assert [d["name"] for d in data] == list(NODES)
    for entry, (_, output) in zip(data, NODES.values()):
        assert {"name", "index", "style", "set", "weight_shape", "bias_shape", "output_shape"} <= set(entry)
        assert entry["output_shape"] == list(recorded(output).shape)
    assert data[4]["bias_shape"] is None and data[0]["set"][-1] == "strides=[2]"


def test_layers_to_torch_and_the_code_is_one_runnable_script():
    result = invoke("layers", MODEL, "--to", "torch")
    assert result.exit_code == 0, result.output
    assert "    torch: stride=2 padding=1 output_padding=1" in result.stdout.splitlines()
    assert "not expressible exactly" in result.stdout  # the asymmetric pads
    pytest.importorskip("torch")
    code = invoke("layers", MODEL, "--to", "torch", "--code").stdout
    assert code.count("# ---- #") == 6
    scope = {}
    exec(compile(code, "ported", "exec"), scope)  # each snippet runs; the last one leaves its y
    assert scope["y"].shape == recorded("f").shape


def test_layers_without_a_recorded_input_shape(tmp_path):
    path = tmp_path / "m.onnx"
    _save_model(path, input_shape=["N", 2, "H", "W"])
    data = json.loads(invoke("layers", path, "--json", "--to", "torch").stdout)
    assert data[0]["input_shape"] == [None, 2, None, None] and data[0]["output_shape"] is None
    assert data[0]["to"]["set"] == ["stride=2"]
    _save_model(path, input_shape=["N", 2, 5, 5])
    assert json.loads(invoke("layers", path, "--json").stdout)[0]["output_shape"] == [None, 3, 11, 11]
    assert json.loads(invoke("shape", f"{path}#up", "--json").stdout)["output_shape"] == [1, 3, 11, 11]
    _save_model(path, input_shape=["N", 2, "H", "W"], attributes={"strides": [2, 2], "output_padding": [2, 0]})
    assert "output_padding[0] (2) must be" in one_error_line(invoke("layers", path))  # not a matter of size
    _save_model(path, input_shape=["N", 2, "H", "W"])
    line = one_error_line(invoke("shape", f"{tmp_path}/m.onnx#0"))
    assert "give --input-shape" in line.lower()


# ---------------------------------------------------------------- bad models and bad calls


def _save_model(path, *, attributes=None, initializers=("W", "B"), nodes=(), input_shape=(1, 2, 5, 5)):
    """A one-ConvTranspose model (weight (2, 3, 3, 3), stride 2) with optional other nodes before it."""
    attributes = {"strides": [2, 2]} if attributes is None else attributes
    tensors = {"W": np.ones((2, 3, 3, 3), np.float32), "B": np.zeros(3, np.float32)}
    deconv = helper.make_node("ConvTranspose", ["X", "W", "B"], ["Y"], name="up", **attributes)
    graph = helper.make_graph(
        [*nodes, deconv], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(tensors[name], name) for name in initializers])
    onnx.save(helper.make_model(graph), str(path))


def test_not_a_model(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_text("this is not a protobuf\n")
    assert "is not an ONNX model" in one_error_line(invoke("layers", path))
    assert "is not an ONNX model" in one_error_line(invoke("shape", f"{path}#0", "--input-shape", "1,2,5,5"))


def test_a_node_that_is_not_a_conv_transpose(tmp_path):
    path = tmp_path / "m.onnx"
    _save_model(path, nodes=[helper.make_node("Relu", ["X0"], ["X"], name="act")])
    line = one_error_line(invoke("shape", f"{path}#act", "--input-shape", "1,2,5,5"))
    assert "'act' is a Relu node, not a transposed convolution" in line and "#0 up" in line


def test_missing_initializer(tmp_path):
    path = tmp_path / "m.onnx"
    _save_model(path, initializers=("B",))
    assert "its W initializer 'W' is missing" in one_error_line(invoke("layers", path))


def test_missing_external_data_file(tmp_path):
    shutil.copy(EXTERNAL, tmp_path)
    line = one_error_line(invoke("layers", tmp_path / "deconvs_external.onnx"))
    assert "external data file deconvs_external.data, which is missing" in line
    out = tmp_path / "y.npy"
    one_error_line(invoke("run", f"{RECORDED}:x1", f"{tmp_path}/deconvs_external.onnx#0", "-o", out))
    assert not out.exists()


@pytest.mark.parametrize("attributes, message", [
    ({"strides": [2, 2], "padding": [1, 1]}, "the attribute 'padding', which the ONNX spec does not allow"),
    ({"strides": 2}, "attribute 'strides' is INT; the ONNX spec makes it INTS"),
    ({"strides": [2, 2], "output_padding": [2, 0]}, "output_padding[0] (2) must be at least 0 and less than the stride"),
])
def test_attributes_the_spec_does_not_allow(tmp_path, attributes, message):
    path = tmp_path / "m.onnx"
    _save_model(path, attributes=attributes)
    assert message in one_error_line(invoke("layers", path))


def test_a_layer_that_does_not_exist_lists_the_ones_that_do():
    line = one_error_line(invoke("shape", f"{MODEL}#/nope", "--json"))
    assert "no transposed convolution '/nope'" in line and "#5 /depthwise1d/ConvTranspose" in line
    assert "only 6 transposed convolutions" in one_error_line(invoke("shape", f"{MODEL}#6"))


@pytest.mark.parametrize("extra, named", [
    (["--bias", "b.npy"], "--bias"), (["--set", "stride=2"], "--set"), (["--style", "onnx"], "--style"),
])
def test_a_layer_source_excludes_weight_bias_style_and_set(tmp_path, extra, named):
    out = tmp_path / "y.npy"
    line = one_error_line(invoke("run", f"{RECORDED}:x1", f"{MODEL}#0", "-o", out, *extra))
    assert f"{named} cannot be given too" in line and not out.exists()
    line = one_error_line(invoke("shape", f"{MODEL}#0", "--weight-shape", "4,6,3"))
    assert "--weight-shape cannot be given too" in line
    assert "--style cannot be given too" in one_error_line(
        invoke("detect", f"{RECORDED}:x1", f"{MODEL}#0", f"{RECORDED}:a", "--style", "onnx"))


def test_code_needs_to():
    assert "--code needs --to" in one_error_line(invoke("layers", MODEL, "--code"))


def test_info_lists_a_models_initializers():
    result = invoke("info", MODEL, "--json")
    names = {entry["name"]: entry["shape"] for entry in json.loads(result.stdout)[MODEL]}
    assert names["asym.weight"] == [3, 2, 4, 4] and names["up1d.bias"] == [6]


# ---------------------------------------------------------------- Keras 3 .keras (make_keras_models.py recorded
# the weights as Keras holds them, and each layer's input and output as Keras 3.15.1 computed them)

KERAS = os.path.join(HERE, "deconvs.keras")
SEQUENTIAL = os.path.join(HERE, "sequential.keras")
KERAS_RECORDED = os.path.join(HERE, "deconvs_keras_recorded.npz")


def test_keras_reader_names_keywords_and_shapes():
    found = models.layers(KERAS)
    assert [(x.name, x.op, x.rank) for x in found] == [
        ("up1d", "Conv1DTranspose", 1), ("valid2d", "Conv2DTranspose", 2), ("dilated2d", "Conv2DTranspose", 2),
        ("up3d_cf", "Conv3DTranspose", 3)]
    assert all(x.style == "keras" for x in found)
    assert found[1].options == {"filters": 4, "kernel_size": [3, 2], "strides": [2, 1], "padding": "valid",
                                "output_padding": [1, 0], "data_format": "channels_last", "dilation_rate": [1, 1],
                                "use_bias": True}
    assert "output_padding" not in found[0].options  # Keras's None: its default
    assert found[2].options["use_bias"] is False and found[2].bias is None
    assert found[3].options["data_format"] == "channels_first" and found[3].input_shape == (None, 2, 3, 4, 5)
    assert found[0].input_shape == (None, 7, 4) and found[0].weight_shape == (3, 6, 4)


def test_keras_reader_reads_the_weights_keras_held():
    saved = np.load(KERAS_RECORDED)
    for layer in models.layers(KERAS):
        np.testing.assert_array_equal(layer.load_weight(), saved[f"{layer.name}_kernel"])
        if layer.bias is not None:
            np.testing.assert_array_equal(layer.load_bias(), saved[f"{layer.name}_bias"])
    # two layers of one class: the second's weights are conv2d_transpose_1 in the weights file
    assert models.layer(f"{KERAS}#dilated2d").weight.endswith(":layers/conv2d_transpose_1/vars/0")


def test_keras_sequential_and_nested_models():
    saved = np.load(KERAS_RECORDED)
    found = models.layers(SEQUENTIAL)
    assert [(x.name, x.input_shape) for x in found] == [
        ("first", (None, 4, 4, 3)), ("second", (None, 8, 8, 5)), ("inner", (None, 9, 9, 3))]
    for layer in found:
        np.testing.assert_array_equal(layer.load_weight(), saved[f"{layer.name}_kernel"])
    line = one_error_line(invoke("shape", f"{SEQUENTIAL}#act", "--input-shape", "1,4,4,3"))
    assert "'act' is a ReLU layer, not a transposed convolution" in line and "#2 inner" in line


def test_keras_headers_only_and_info():
    result = invoke("info", KERAS, "--json")
    shapes = {e["name"]: e["shape"] for e in json.loads(result.stdout)[KERAS]}
    assert shapes["layers/conv3d_transpose/vars/0"] == [2, 3, 2, 3, 2]


def test_a_zip_that_is_not_a_keras_model(tmp_path):
    import zipfile

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert "is not a Keras 3 model (no model.weights.h5 in the zip)" in one_error_line(invoke("layers", path))
    path.write_text("not a zip")
    assert "is not a Keras 3 model (not a zip file)" in one_error_line(invoke("layers", path))


def _size_keyword_model(path, spatial):
    """Two ConvTranspose nodes whose output size comes from auto_pad=SAME_UPPER and from output_shape."""
    rng = np.random.default_rng(5)
    tensors = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("W1", (2, 3, 3, 3)), ("B1", (3,)), ("W2", (3, 2, 4, 4)))]
    nodes = [helper.make_node("ConvTranspose", ["X", "W1", "B1"], ["H"], name="same", strides=[2, 2], auto_pad="SAME_UPPER"),
             helper.make_node("ConvTranspose", ["H", "W2"], ["Y"], name="sized", strides=[2, 2], output_shape=[21, 20])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, *spatial])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("H", "Y")], tensors)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_size_keywords_reproduce_onnxruntime(tmp_path):
    import onnxruntime

    path = tmp_path / "m.onnx"
    recorded_io = tmp_path / "io.npz"
    _size_keyword_model(path, (5, 5))
    x = np.random.default_rng(6).standard_normal((1, 2, 5, 5)).astype(np.float32)
    h, y = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["H", "Y"], {"X": x})
    np.savez(recorded_io, x=x, h=h, y=y)
    assert invoke("run", f"{recorded_io}:x", f"{path}#same", "--expect", f"{recorded_io}:h", "-q").exit_code == 0
    assert invoke("run", f"{recorded_io}:h", f"{path}#sized", "--expect", f"{recorded_io}:y", "-q").exit_code == 0


def test_layers_to_says_when_keywords_need_the_unrecorded_input_size(tmp_path):
    path = tmp_path / "m.onnx"
    _size_keyword_model(path, ("H", "W"))
    data = json.loads(invoke("layers", path, "--json", "--to", "torch").stdout)
    assert "depend on the input size" in data[0]["to"]["note"] and data[0]["output_shape"] is None
    assert "depend on the input size" in data[1]["to"]["note"]


@pytest.mark.parametrize("layer", ["up1d", "valid2d", "dilated2d", "up3d_cf"])
def test_run_reproduces_every_keras_layer_as_keras_ran_it(tmp_path, layer):
    """The .keras model's layers (both paddings, output_padding, dilation, channels first and last) through
    the keras style give the outputs Keras 3 recorded when the fixture was made."""
    out = tmp_path / "y.npy"
    result = invoke("run", f"{KERAS_RECORDED}:{layer}_x", f"{KERAS}#{layer}", "-o", out, "--expect",
                    f"{KERAS_RECORDED}:{layer}_y", "-q")
    assert result.exit_code == 0, result.output
    with np.load(KERAS_RECORDED) as recorded_tensors:
        np.testing.assert_allclose(np.load(out), recorded_tensors[f"{layer}_y"], rtol=1e-5, atol=1e-5)


def test_layers_of_a_keras_model_derive_every_output_shape():
    result = invoke("layers", KERAS, "--json")
    assert result.exit_code == 0, result.output
    with np.load(KERAS_RECORDED) as recorded_tensors:
        shapes = {layer["name"]: layer["output_shape"] for layer in json.loads(result.stdout)}
        assert {name: shape[1:] for name, shape in shapes.items()} == {
            name: list(recorded_tensors[f"{name}_y"].shape[1:]) for name in ("up1d", "valid2d", "dilated2d", "up3d_cf")}


def test_weights_kept_in_constant_nodes_and_shared_through_identity(tmp_path):
    """Some exporters keep a weight in a Constant node, or share one under a second name with Identity: both
    are tensors the model stores, read like initializers; a weight the graph computes is still refused."""
    import onnxruntime

    rng = np.random.default_rng(8)
    w, b = rng.standard_normal((2, 3, 3, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["Wc"], value=numpy_helper.from_array(w, "ignored")),
             helper.make_node("Identity", ["B0"], ["Bshared"]),
             helper.make_node("ConvTranspose", ["X", "Wc", "Bshared"], ["Y"], name="up", strides=[2, 2], pads=[1, 1, 0, 0]),
             helper.make_node("Mul", ["Wc", "Wc"], ["Wsq"]),
             helper.make_node("ConvTranspose", ["X", "Wsq"], ["Z"], name="computed")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 4, 5])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Z")],
                              [numpy_helper.from_array(b, "B0")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    (y,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["Y"], {"X": x})
    np.savez(tmp_path / "io.npz", x=x, y=y)
    result = invoke("run", f"{tmp_path / 'io.npz'}:x", f"{path}#up", "--expect", f"{tmp_path / 'io.npz'}:y", "-q")
    assert result.exit_code == 0, result.output
    line = one_error_line(invoke("shape", f"{path}#computed", "--input-shape", "1,2,4,5"))
    assert "its W 'Wsq' is computed in the graph, not stored in the model" in line
    result = invoke("layers", path, "--json")  # every layer listed; exit 2 and the first problem's line
    assert "its W 'Wsq' is computed in the graph" in one_error_line(result)
    listed = json.loads(result.stdout)
    assert listed[0]["weight_shape"] == [2, 3, 3, 3] and "is computed in the graph" in listed[1]["error"]
    text = invoke("layers", path).stdout
    assert "#1 computed  ConvTranspose\n    note: cannot be read: " in text
    names = {e["name"] for e in json.loads(invoke("info", path, "--json").stdout)[str(path)]}
    assert {"Wc", "B0", "Bshared"} <= names


def test_a_layer_whose_keywords_do_not_plan_is_listed_with_its_error_beside_the_others(tmp_path):
    """One layer whose attributes contradict its weight (group 3 on 2 input channels) does not hide the rest of
    the report: every layer is listed, that one with its shapes and the planning error, in text, JSON and
    --code; the exit status is 2 with that error's one line."""
    rng = np.random.default_rng(9)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["X", "W"], ["Y"], name="good", strides=[2, 2]),
             helper.make_node("ConvTranspose", ["X", "W"], ["Z"], name="bad", group=3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 4, 5])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Z")],
                              [numpy_helper.from_array(w, "W")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    planned = one_error_line(invoke("shape", f"{path}#bad"))
    result = invoke("layers", path, "--json")
    line = one_error_line(result)
    assert line == planned.replace("Error: ", f"Error: {path}#bad: ", 1)
    good, bad = json.loads(result.stdout)
    assert good["output_shape"] == [1, 3, 9, 11] and "error" not in good
    assert bad["weight_shape"] == [2, 3, 3, 3] and bad["output_shape"] is None and "group" in bad["error"]
    result = invoke("layers", path, "--to", "torch")
    assert result.exit_code == 2 and "torch: stride=2" in result.stdout
    assert "#1 bad  ConvTranspose 2-D  input (1, 2, 4, 5)  weight (2, 3, 3, 3)\n    onnx: group=3" in result.stdout
    assert "    note: cannot be planned: " in result.stdout
    result = invoke("layers", path, "--to", "torch", "--code")
    assert result.exit_code == 2 and "# no code: cannot be planned: " in result.stdout
    assert "F.conv_transpose2d(" in result.stdout
