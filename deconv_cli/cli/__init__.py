"""The ``deconv`` command line: argv -> Job -> run_job -> report, no shape math, no numpy. May import every layer.

Errors: a DeconvError becomes one line on stderr (``Error: <problem>. <fix>``) and its exit code
(2: the configuration would be rejected, 1: a runtime failure such as a bad file). Click's own usage
errors exit 2 too.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..conventions import STYLES
from ..core.config import FLOAT_DTYPES
from ..core.errors import ConfigError, DeconvError
from ..core.options import parse_set
from ..tensor_io import formats_help

STYLE_NAMES = tuple(STYLES)
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    cleaned = text.strip().strip("()[]")
    try:
        return tuple(int(v) for v in cleaned.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"shape {text!r} is not a list of integers", "write e.g. 1,16,10,32,32") from None


def _verdict(result, as_json: bool, print_text, ok: bool) -> None:
    """Print a check's result (JSON or text to stdout) and exit 0 when it passed, 1 when not."""
    from ..render.report import print_json

    if as_json:
        print_json(result.as_dict())
    else:
        print_text(result, sys.stdout)
    sys.exit(0 if ok else 1)


def _fail(error: DeconvError) -> None:
    from ..render.report import fold, terminal_width

    click.echo("\n".join(fold(f"Error: {error}", terminal_width(sys.stderr))), err=True)  # whole in a pipe
    sys.exit(error.exit_code)


def tensors(*, stdio: bool, label: str = "Tensors"):
    """Name every tensor reference the command accepts in its help (before its example), from tensor_io's
    one table; ``stdio``: whether ``-`` (stdin/stdout) is one of them."""

    def decorate(fn):
        doc = fn.__doc__ or ""
        example = doc.find("\n    \b\n    Example:")
        paragraph = f"\n\n    {label}: {formats_help(stdio=stdio)}.\n"
        fn.__doc__ = doc + paragraph if example < 0 else doc[:example] + paragraph + doc[example:]
        return fn

    return decorate


def style_options(fn=None, *, json_help: str = "Print one JSON object to stdout."):
    if fn is None:  # @style_options(json_help=...): a command whose --json prints something else
        return lambda f: style_options(f, json_help=json_help)
    for decorator in reversed([
        # the choices go in the help text, which wraps: as a metavar they outgrow an 80-column line
        click.option("--style", default="torch", show_default=True, type=click.Choice(STYLE_NAMES), metavar="STYLE",
                     help=f"Whose keyword names, padding rules and tensor layouts to use: {', '.join(STYLE_NAMES)}."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="One option in the style's own keyword name; VALUE is a Python literal. Repeatable."),
        click.option("--quirks", is_flag=True,
                     help="Reproduce a released framework's known defect instead of its documented semantics."),
        click.option("--json", "as_json", is_flag=True, help=json_help),
    ]):
        fn = decorator(fn)
    return fn


TOLERANCE_HELP = (
    "Default tolerances (atol, rtol) by dtype, the looser of the two sides: float16 (1e-2, 1e-2), "
    "float32 (1e-4, 1e-4), float64 (1e-9, 1e-9), integers and bool exact. An element mismatches when "
    "|actual - expected| > atol + rtol * |expected| (in float64); NaN matches NaN at the same position."
)


def tolerance_options(fn):
    for decorator in reversed([
        click.option("--atol", type=float, default=None, help="Absolute tolerance (default: by dtype, see above)."),
        click.option("--rtol", type=float, default=None, help="Relative tolerance (default: by dtype, see above)."),
    ]):
        fn = decorator(fn)
    return fn


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="deconv")
@tensors(stdio=True)
def cli() -> None:
    """Transposed convolution on saved tensors, in any framework's own keywords.

    Styles: mindspore, megengine, oneflow, dragon, torch (default), onnx.

    \b
    Example:
      deconv run samples/torch_x.npy samples/torch_w.npy \\
          --set stride=2 --set padding=1 -o up.npy
      deconv shape --input-shape 1,16,10,32,32 --weight-shape 16,33,3,5,2 \\
          --set "stride=(2,1,1)"
    """


@cli.command()
@click.argument("input")
@click.argument("weight")
@click.option("--bias", metavar="TENSOR", help="Optional bias tensor (C_out,) (or the style's bias shape).")
@click.option("-o", "--output", metavar="OUT",
              help=f"Where to write the result: {formats_help(stdio=True, written=True)}. Optional with --expect.")
@click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print no derivation, no --expect report and no over-budget note (the exit code tells).")
@click.option("--cast", type=click.Choice(FLOAT_DTYPES), help="Cast every tensor to this dtype before planning.")
@click.option("--expect", metavar="REF", help="Compare the output with this tensor (a framework's saved output); exit 1 on mismatch.")
@click.option("--scheduler", metavar="ADDRESS", help="Compute the tiles as tasks on this Dask scheduler (tcp://host:port; workers must see the same paths).")
@tolerance_options
@style_options
@tensors(stdio=True)
@click.pass_context
def run(ctx, input, weight, bias, output, device, force, quiet, cast, expect, atol, rtol, style, sets, quirks, as_json, scheduler):
    """Run a transposed convolution and write the output.

    WEIGHT may be a model's layer, MODEL.onnx#NODE (or #N, the N-th transposed convolution): its weight, bias,
    style and keywords then come from the model (see `deconv layers`).

    Prints how every output dimension was derived to stderr (unless -q); with --json, a summary with
    shapes, dtype, device, engine and timings to stdout. With --expect REF, compares the output with REF
    (see `deconv compare --help` for the tolerances): the report goes to stderr (a `compare` object in
    --json) and the exit code is 1 on a mismatch; OUT, when given, is written either way.

    \b
    Example:
      deconv run samples/torch_x.npy samples/torch_w.npy \\
          --bias samples/torch_b.npy --set stride=2 --set padding=1 \\
          --set output_padding=1 -o run_y.npy
      deconv run samples/torch_x.npy samples/torch_w.npy \\
          --bias samples/torch_b.npy --set stride=2 --set padding=1 \\
          --set output_padding=1 --expect run_y.npy
    """
    from ..execution.job import OVER_BUDGET, Job, nbytes, run_job
    from ..render.report import (
        TileProgress,
        emit,
        print_comparison,
        print_derivation,
        print_json,
        print_warnings,
        sizes_line,
    )
    from ..tensor_io import removing_temps_on_signals

    try:
        if expect is None and (atol is not None or rtol is not None):
            raise ConfigError("--atol and --rtol need --expect REF", "add --expect or drop them")
        if output == "-" and as_json:
            raise ConfigError("-o - writes the output's .npy bytes to stdout, where --json would print too",
                              "drop --json, or give -o a file name")
        options = parse_set(sets)
        if _is_layer(weight):
            layer = _layer_source(ctx, weight, bias=bias, sets=sets)
            weight, bias, style, options = layer.weight, layer.bias, layer.style, layer.options
        job = Job(input=input, weight=weight, output=output, bias=bias, style=style, options=options,
                  device=device, force=force, quirks=quirks, cast=cast, expect=expect, atol=atol, rtol=rtol,
                  scheduler=scheduler)
        with removing_temps_on_signals(), TileProgress(sys.stderr, show=not quiet) as progress:
            result = run_job(job, progress=progress)
    except DeconvError as error:
        _fail(error)
    warnings = result.derivation.warnings + result.warnings
    print_warnings([w for w in warnings if not (quiet and w.startswith(OVER_BUDGET))], sys.stderr)
    if not quiet:
        print_derivation(result.derivation, sys.stderr)
        emit([sizes_line(nbytes(result.derivation, result.dtype), result.dtype)], sys.stderr)
    if result.compare is not None and not as_json and not quiet:
        print_comparison(result.compare, sys.stderr)
    if as_json:
        print_json(result.as_dict())
    if result.compare is not None and not result.compare.match:
        sys.exit(1)


def shape_sources(fn):
    for decorator in reversed([
        click.argument("input", required=False),
        click.argument("weight", required=False),
        click.option("--bias", metavar="TENSOR", help="Bias tensor (only its header is read)."),
        click.option("--input-shape", metavar="N,C,...", help="Input shape, instead of an INPUT file."),
        click.option("--weight-shape", metavar="C_in,...", help="Weight shape, instead of a WEIGHT file."),
        click.option("--bias-shape", metavar="C_out", help="Bias shape, instead of --bias."),
    ]):
        fn = decorator(fn)
    return fn


@cli.command()
@shape_sources
@style_options
@click.option("--target-shape", metavar="H,W,...", help="Solve the style's size option for these spatial output sizes.")
@click.option("--all-styles", is_flag=True, help="Show the same deconvolution written in every style.")
@click.option("--cast", type=click.Choice(FLOAT_DTYPES),
              help="The dtype run --cast would use (sizes; default: the files' dtype, else float32).")
@tensors(stdio=False)
@click.pass_context
def shape(ctx, input, weight, bias, input_shape, weight_shape, bias_shape, style, sets, quirks, as_json, target_shape, all_styles,
          cast):
    """Derive the output shape without reading any tensor data.

    Shapes come from file headers or from --input-shape/--weight-shape; MODEL.onnx#NODE (as INPUT, or as WEIGHT
    after an input file) gives the weight, bias, style and keywords, and the input shape where the model
    records it. Also lists, per dimension, the
    output sizes the style's size options (output_padding, output_shape, input_size, ...) can reach.

    \b
    Example:
      deconv shape --style onnx --input-shape 1,1,3,3 --weight-shape 1,2,3,3 \\
          --set "strides=(3,2)" --set auto_pad=SAME_UPPER --json
      deconv shape --input-shape 1,8,16,16 --weight-shape 8,4,4,4 \\
          --set stride=2 --target-shape 35,34
    """
    from ..conventions.plan import reachable
    from ..execution.job import shape_record
    from ..render.explain import set_item
    from ..render.report import (
        emit,
        print_all_styles,
        print_derivation,
        print_json,
        print_paste,
        print_reachable,
        print_warnings,
        sizes_line,
    )

    try:
        input, weight, bias, input_shape, style, sets = _shape_layer(ctx, input, weight, bias, input_shape, weight_shape,
                                                                     bias_shape, style, sets)
        shapes = _shapes_from_args(input, weight, bias, input_shape, weight_shape, bias_shape)
        dtypes = _dtypes_from_args(input, weight, bias)
        target = None if target_shape is None else parse_shape(target_shape)
        record = shape_record(style, sets, *shapes, quirks=quirks, dtypes=dtypes, cast=cast, target=target)
        sizes = None if as_json else reachable(record)  # JSON: record.as_dict() holds them
        others = _all_styles(record) if all_styles else None
    except DeconvError as error:
        _fail(error)
    print_warnings(record.warnings, sys.stderr)
    if as_json:
        data = record.as_dict()
        if target is not None:
            data["set"] = [set_item(k, v) for k, v in record.options]
        if others is not None:
            data["all_styles"] = [e.as_dict() for e in others]
        print_json(data)
        return
    print_derivation(record, sys.stdout)
    emit([sizes_line(dict(record.nbytes), record.dtype, assumed=not dtypes and cast is None)], sys.stdout)
    print_reachable(sizes, sys.stdout)
    if target is not None:
        print_paste(f"options for output {tuple(target)}, to paste:", record.options, sys.stdout)
    if others is not None:
        print_all_styles(others, sys.stdout)


def _all_styles(record):
    from ..render.explain import explain

    return [explain(record, name) for name in STYLE_NAMES]


@cli.command(name="explain")
@shape_sources
@style_options
@click.option("--to", "target", required=True, type=click.Choice(STYLE_NAMES), metavar="STYLE",
              help=f"The style to write the call in: {', '.join(STYLE_NAMES)}.")
@click.option("--code", is_flag=True,
              help="Print a runnable Python snippet for the target framework (its op, the re-layouts, the crop).")
@tensors(stdio=False)
@click.pass_context
def explain_command(ctx, input, weight, bias, input_shape, weight_shape, bias_shape, style, sets, quirks, as_json, target, code):
    """Print the equivalent call in another style, with the weight re-layout.

    Where the target style cannot express the configuration (asymmetric padding in torch, say), it
    prints the nearest call and the crop to apply to its output. MODEL.onnx#NODE stands for the weight, bias,
    style and keywords as in `deconv shape`.

    With --code, a Python snippet that loads the tensors (random ones for --input-shape), re-lays them,
    calls the target framework and crops: its y equals what deconv run computes.

    \b
    Example:
      deconv explain --style onnx --input-shape 1,4,5,5 --weight-shape 4,2,3,3 \\
          --set "strides=[2,2]" --set "pads=[1,1,0,0]" --to torch
      deconv explain samples/torch_x.npy samples/torch_w.npy \\
          --bias samples/torch_b.npy --set stride=2 --set padding=1 \\
          --to onnx --code > onnx_snippet.py
    """
    from ..conventions.plan import plan
    from ..render.explain import explain
    from ..render.report import print_explanation, print_json, print_warnings

    try:
        input, weight, bias, input_shape, style, sets = _shape_layer(ctx, input, weight, bias, input_shape, weight_shape,
                                                                     bias_shape, style, sets)
        shapes = _shapes_from_args(input, weight, bias, input_shape, weight_shape, bias_shape)
        record = plan(style, sets, *shapes, quirks=quirks)
        explanation = explain(record, target)
        if code:
            from ..render.snippets import snippet

            text = snippet(record, explanation, {"input": input, "weight": weight, "bias": bias})
    except DeconvError as error:
        _fail(error)
    print_warnings(record.warnings, sys.stderr)
    if code:
        sys.stdout.write(text)
        return
    if as_json:
        print_json(explanation.as_dict())
    else:
        print_explanation(explanation, sys.stdout)


@cli.command(name="layers")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per layer, to stdout.")
@click.option("--to", "target", type=click.Choice(STYLE_NAMES), metavar="STYLE",
              help=f"Also write each layer in this style, with the weight re-layout: {', '.join(STYLE_NAMES)}.")
@click.option("--code", is_flag=True, help="With --to: a runnable Python snippet per layer (the output is one script).")
def layers_command(model, as_json, target, code):
    """List a model's transposed convolutions: the porting report.

    One line per layer (its name and index for MODEL#NAME or MODEL#N, op, rank, input, weight and bias
    shapes, and the output shape where the model records the input's), then its keywords in the model's
    own style, and with --to STYLE the same layer in STYLE's keywords. Reads headers only.

    \b
    Example:
      deconv layers samples/deconvs.onnx
      deconv layers samples/deconvs.onnx --to torch --code > ported.py
    """
    from .. import models
    from ..render.layers import entries, print_code, print_layers
    from ..render.report import print_json

    try:
        if code and target is None:
            raise ConfigError("--code needs --to STYLE", "add e.g. --to torch")
        if code and as_json:
            raise ConfigError("--code prints Python; --json would print JSON to the same stdout", "drop one of them")
        found = entries(models.layers(model), target, code)
    except DeconvError as error:
        _fail(error)
    if as_json:
        print_json([entry.as_dict() for entry in found])
    elif code:
        print_code(found, sys.stdout)
    else:
        print_layers(model, found, sys.stdout)
    failed = next((entry.error for entry in found if entry.error is not None), None)
    if failed is not None:  # every other layer is listed; the exit status says the report is not whole
        _fail(failed)


def _is_layer(text: str | None) -> bool:
    if text is None or "#" not in text:  # a tensor file: the models package is not imported for it
        return False
    from .. import models

    return models.is_layer_source(text)


def _layer_source(ctx, source: str, *, bias=None, sets=(), weight=None, weight_shape=None, bias_shape=None):
    """The model layer ``source`` names; exit 2 when a weight, bias, style or keyword is given beside it."""
    from click.core import ParameterSource

    from .. import models

    given = [name for name, value in (("WEIGHT", weight), ("--weight-shape", weight_shape), ("--bias", bias),
                                      ("--bias-shape", bias_shape), ("--set", sets)) if value]
    if "style" in ctx.params and ctx.get_parameter_source("style") is not ParameterSource.DEFAULT:
        given.append("--style")
    if given:
        raise ConfigError(f"{source} gives the weight, bias, style and keywords; {', '.join(given)} cannot be given too",
                          f"drop {', '.join(given)}")
    return models.layer(source)


def _shape_layer(ctx, input, weight, bias, input_shape, weight_shape, bias_shape, style, sets):
    """shape/explain: a layer source as INPUT (shapes from --input-shape or the model) or as WEIGHT (after an
    input file) becomes its weight and bias references, style and keywords; else the arguments as given."""
    if not (_is_layer(input) or _is_layer(weight)):
        return input, weight, bias, input_shape, style, parse_set(sets)
    if _is_layer(input):
        layer = _layer_source(ctx, input, bias=bias, sets=sets, weight=weight, weight_shape=weight_shape,
                              bias_shape=bias_shape)
        input = None
        if input_shape is None:
            recorded = layer.input_shape or (None,)
            if any(d is None for d in recorded[1:]):
                raise ConfigError(f"the model does not record the input shape of {layer.name} "
                                  f"({', '.join('?' if d is None else str(d) for d in recorded)})",
                                  "give --input-shape N,C,...")
            input_shape = ",".join(map(str, (recorded[0] or 1, *recorded[1:])))  # a symbolic batch size: 1
    else:
        layer = _layer_source(ctx, weight, bias=bias, sets=sets, weight_shape=weight_shape, bias_shape=bias_shape)
    return input, layer.weight, layer.bias, input_shape, layer.style, layer.options


def _shapes_from_args(input, weight, bias, input_shape, weight_shape, bias_shape):
    from .. import tensor_io

    def pick(role, path, text):
        if (path is None) == (text is None):
            raise ConfigError(f"give either a {role.upper()} file or --{role}-shape", "see deconv shape --help")
        return parse_shape(text) if text is not None else tensor_io.peek(tensor_io.parse_ref(path)).shape

    if bias is not None and bias_shape is not None:
        raise ConfigError("give either --bias or --bias-shape, not both")
    bias_dims = parse_shape(bias_shape) if bias is None else tensor_io.peek(tensor_io.parse_ref(bias)).shape
    return pick("input", input, input_shape), pick("weight", weight, weight_shape), bias_dims


def _dtypes_from_args(input, weight, bias) -> dict[str, str]:
    """The dtype of each tensor given as a file (headers only)."""
    from .. import tensor_io

    files = {"input": input, "weight": weight, "bias": bias}
    return {role: tensor_io.peek(tensor_io.parse_ref(path)).dtype for role, path in files.items() if path is not None}


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
@tensors(stdio=False)
def info(files, as_json):
    """List the arrays in tensor files: name, shape, dtype (headers only).

    \b
    Example:
      deconv info samples/onnx.npz samples/torch_x.npy
    """
    from .. import tensor_io
    from ..render.report import print_info, print_json

    try:
        found = {path: tensor_io.describe(tensor_io.parse_ref(path)) for path in files}
    except DeconvError as error:
        _fail(error)
    if as_json:
        print_json({p: [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in infos] for p, infos in found.items()})
    else:
        for path, infos in found.items():
            print_info(path, infos, sys.stdout)


@cli.command()
@click.argument("names", nargs=-1, type=click.Choice(STYLE_NAMES), metavar="[STYLE]...")
def styles(names):
    """List each style's keywords (its framework's own names) with a line of help.

    \b
    Example:
      deconv styles onnx dragon
    """
    from .. import conventions

    for name in names or STYLE_NAMES:
        module = conventions.get(name)
        click.echo(f"{name} ({module.FRAMEWORK}; dtypes {', '.join(module.DTYPES)})")
        width = max(len(k) for k in module.KEYWORDS)
        for keyword, text in module.KEYWORDS.items():
            click.echo(f"  {keyword:<{width}}  {text}")


@cli.command()
@click.argument("manifest_path", metavar="MANIFEST")
@click.option("--jobs", "-j", type=int, metavar="N", help="Local worker processes (default: one per CPU; 1 runs in this process).")
@click.option("--scheduler", metavar="ADDRESS", help="Run the jobs on a Dask distributed cluster (tcp://host:port; the dask extra).")
@click.option("--shard", metavar="K/N", help="Run only the jobs at positions i with i % N == K-1.")
@click.option("--resume", is_flag=True, help="Skip the jobs an earlier run of this manifest finished (see the journal).")
@click.option("--journal", metavar="PATH", help="The journal file (default: MANIFEST.journal, MANIFEST.journal-K-of-N for a shard).")
@click.option("--dry-run", is_flag=True, help="Plan every job from headers and print its output shape; compute nothing.")
@click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Replace outputs that exist.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed or mismatched job.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary line.")
@style_options(json_help="Print one JSON record per job to stdout, as each job finishes.")
@tensors(stdio=False, label="A job's tensors")
def batch(manifest_path, jobs, scheduler, shard, resume, journal, dry_run, device, force, fail_fast, quiet, style, sets, quirks, as_json):
    """Run the jobs of a manifest (.jsonl, .csv, or - for JSONL on stdin), in parallel.

    One job per line: input, weight, output (required unless expect is given), bias, style, set, quirks, expect,
    atol, rtol, id; or layer (MODEL.onnx#NODE) in place of weight, bias, style and set.
    --style/--set/--quirks are defaults that a job's own fields override (set: key by key); relative paths
    are relative to the manifest; output folders are made as needed. The whole manifest is checked first (exit 2 naming the line). With
    --json, one record per job on stdout as it finishes (id, status ok|failed|mismatch|skipped, output,
    output_shape, timings, error, and compare for a job with expect); on stderr a progress bar (terminal) and a summary line. Exit 0 when every
    job is ok or skipped, 1 otherwise, 130 on Ctrl-C (finished outputs kept, no partial file).

    \b
    Example:
      deconv batch samples/jobs.jsonl --jobs 2 --json
      deconv batch samples/jobs.csv --set groups=1 --shard 1/2 --resume
    """
    from ..execution import batch as batch_module
    from ..execution import manifest
    from ..render.report import BatchProgress, print_json

    progress = BatchProgress(sys.stderr, show=not quiet)
    emit = print_json if as_json else (lambda record: _print_planned(record) if dry_run else None)
    try:
        if scheduler is not None and jobs is not None:
            raise ConfigError("--jobs and --scheduler do not go together", "the cluster's workers set the parallelism; drop --jobs")
        defaults = manifest.Defaults(style=style, options=parse_set(sets), quirks=quirks)
        settings = batch_module.Settings(
            jobs=jobs, scheduler=scheduler, shard=manifest.parse_shard(shard), resume=resume, dry_run=dry_run,
            device=device, force=force, fail_fast=fail_fast, journal=journal,
        )
        summary = batch_module.run(manifest_path, defaults, settings, emit=emit, progress=progress, log=progress.log)
    except DeconvError as error:
        progress.close()
        _fail(error)
    progress.close()
    if summary.interrupted:
        click.echo(f"Interrupted: {summary.not_run} jobs did not run; run again with --resume to run them.", err=True)
    if not quiet:
        click.echo(summary.line(), err=True)
    sys.exit(summary.exit_code)


def _print_planned(record: dict) -> None:
    if record["status"] == "ok":
        target = record["output"] if record["output"] is not None else f"(compare with {record['expect']})"
        click.echo(f"{record['id']}\t{target}\t{tuple(record['output_shape'])}")


@cli.command(name="compare", epilog=TOLERANCE_HELP)
@click.argument("actual")
@click.argument("expected")
@tolerance_options
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True, help="How many worst elements to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
@tensors(stdio=True)
def compare_command(actual, expected, atol, rtol, top, as_json):
    """Compare two tensors element by element: exit 0 when they match, 1 when they do not.

    Prints the verdict, max/mean/median absolute and max/mean relative error, the mismatch count and
    fraction, NaN/Inf counts per side and the worst elements. Any tensor formats and dtypes (compared
    in float64); streams both files in blocks, so files larger than memory compare in bounded memory
    (DECONV_MEMORY_BUDGET).

    \b
    Example:
      deconv run samples/torch_ported.npz:x samples/torch_ported.npz:w \\
          --bias samples/torch_ported.npz:b --set stride=2 --set padding=1 \\
          --set "output_padding=(1,0)" -o ported_y.npy
      deconv compare ported_y.npy samples/torch_ported.npz:y --rtol 1e-3
    """
    from ..checks.compare import ShapeMismatch, compare_refs
    from ..render.report import print_comparison, print_json

    try:
        result = compare_refs(actual, expected, atol=atol, rtol=rtol, top=top)
    except DeconvError as error:
        if as_json and isinstance(error, ShapeMismatch):  # still a verdict: JSON on stdout, the line on stderr
            print_json(error.as_dict())
        _fail(error)
    _verdict(result, as_json, print_comparison, result.match)


@cli.command(name="detect")
@click.argument("input")
@click.argument("weight")
@click.argument("expected")
@click.option("--bias", metavar="TENSOR", help="Bias tensor (C_out,), when the framework added one.")
@click.option("--style", type=click.Choice(STYLE_NAMES), metavar="STYLE",
              help=f"Only this style's spellings (default: every style): {', '.join(STYLE_NAMES)}.")
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many distinct configurations to print (each in every style that can write it).")
@click.option("--limit", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="At most this many candidates per weight reading are checked numerically.")
@click.option("--save-weight", metavar="PATH",
              help="Write the weight as the best match's run lines read it (re-laid for its reading) to PATH.")
@click.option("--force", is_flag=True, help="Replace the --save-weight file if it exists.")
@click.option("--channels-last", is_flag=True,
              help="INPUT and EXPECTED are (N, *spatial, C), as TensorFlow, Keras, JAX and Flax save them by default.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
@tensors(stdio=False)
@click.pass_context
def detect_command(ctx, input, weight, expected, bias, style, top, limit, save_weight, force, channels_last, as_json):
    """Find the options and the weight reading that turn INPUT and WEIGHT into EXPECTED.

    Tries every stride, dilation, groups, padding and output padding that gives EXPECTED's shape
    (stride <= 16, dilation <= 4), under four readings of the weight: as saved, in/out channel axes
    swapped, kernel flipped, and both, each with the weight's channel axes first (PyTorch), last (Keras,
    TensorFlow, Flax) or around the kernel (Dragon NHWC). Checks each on a few output positions, then the survivors in full
    (default tolerances, see `deconv compare --help`). Prints the matches best first as `deconv run` lines;
    where a style cannot read the weight file as it is, they read a re-laid one, which --save-weight PATH
    writes (for the best match, whose lines then read PATH). INPUT and EXPECTED are read channels first, or
    with --channels-last channels last (then only the spellings that read them so are printed). Exit 0 on a
    match, 1 when none.
    WEIGHT may be a model's layer, MODEL.onnx#NODE: its weight and bias, searched in the model's own style.

    \b
    Example:
      deconv detect samples/torch_ported.npz:x samples/torch_ported.npz:w \\
          samples/torch_ported.npz:y --bias samples/torch_ported.npz:b \\
          --style torch
    """
    from ..checks.detect import detect
    from ..render.report import TileProgress, print_detection

    try:
        if _is_layer(weight):  # the model's weight and bias, read in its own style's layouts
            layer = _layer_source(ctx, weight, bias=bias)
            weight, bias, style = layer.weight, layer.bias, layer.style
        with TileProgress(sys.stderr, show=True, label="weight readings searched") as progress:
            found = detect(input, weight, expected, bias=bias, styles=(style,) if style else None, top=top,
                           limit=limit, save_weight=save_weight, force=force, channels_last=channels_last,
                           progress=progress)
    except DeconvError as error:
        _fail(error)
    _verdict(found, as_json, print_detection, bool(found.matches))


@cli.command(name="bench")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--threads", type=int, default=2, show_default=True, help="Threads for us and for every peer.")
@click.option("--repeat", type=int, default=7, show_default=True, help="Interleaved rounds, at least (medians).")
@click.option("--min-time", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds each runner is timed, at least (back-to-back calls).")
@click.option("--only", multiple=True, metavar="NAME", help="One suite configuration (repeatable).")
@click.option("--paths", is_flag=True, help="Also time every applicable engine path.")
@click.option("--no-peers", is_flag=True, help="Skip PyTorch and onnxruntime.")
@click.option("--no-memory", is_flag=True, help="Skip the per-configuration peak-memory subprocesses.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
@click.option("--list", "list_only", is_flag=True, help="List the suite's configurations and exit (times nothing).")
def bench_command(device, threads, repeat, min_time, only, paths, no_peers, no_memory, as_json, list_only):
    """Time the benchmark suite against PyTorch and onnxruntime, same threads, same run.

    The suite: 16 transposed convolutions from U-Net, DCGAN, FCN, HiFi-GAN and the frameworks' own
    examples (--list shows them). Prints median ms, GFLOP/s, the fraction of the measured SGEMM peak,
    ratios to the peers, peak memory per configuration and the start-up time of `deconv shape`. Peers
    come from the bench extra.

    \b
    Example:
      deconv bench --list
      deconv bench --only tiny_4to4_8x8_k3 --repeat 3 --no-peers
    """
    from ..bench.suite import list_suite, report
    from ..render.report import terminal_width

    if list_only:
        list_suite(as_json, echo=click.echo)
        return
    try:
        report(device, threads, repeat, only, paths, not no_peers, not no_memory, as_json,
               echo=lambda line: click.echo(line), min_time=min_time, width=terminal_width(sys.stdout))
    except DeconvError as error:
        _fail(error)


def main() -> None:
    for stream in (sys.stdout, sys.stderr):  # a file name the terminal's encoding cannot show is escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    cli(prog_name="deconv")
