"""The ``deconv`` command line: argv -> Job -> run_job -> report. No shape math, no numpy here.

Errors: a DeconvError becomes one line on stderr (``Error: <problem>. <fix>``) and its exit code
(2: the configuration would be rejected, 1: a runtime failure such as a bad file). Click's own usage
errors exit 2 too.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .conventions import STYLES
from .errors import ConfigError, DeconvError
from .options import parse_set

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


def _fail(error: DeconvError) -> None:
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


def style_options(fn):
    for decorator in reversed([
        click.option("--style", default="torch", show_default=True, type=click.Choice(STYLE_NAMES),
                     help="Whose keyword names, padding rules and tensor layouts to use."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="One option in the style's own keyword name; VALUE is a Python literal. Repeatable."),
        click.option("--quirks", is_flag=True,
                     help="Reproduce a released framework's known defect instead of its documented semantics."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout."),
    ]):
        fn = decorator(fn)
    return fn


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="deconv")
def cli() -> None:
    """Transposed convolution on saved tensors, in any framework's own keywords.

    Tensors: x.npy, x.npz:name, x.h5:/group/dataset (or - for .npy on stdin/stdout).
    Styles: mindspore, megengine, oneflow, dragon, torch (default), onnx.

    \b
    Example:
      deconv run x.npy w.npy --set stride=2 --set padding=1 -o y.npy
      deconv shape --input-shape 1,16,10,32,32 --weight-shape 16,33,3,5,2 --set stride=(2,1,1)
    """


@cli.command()
@click.argument("input")
@click.argument("weight")
@click.option("--bias", metavar="TENSOR", help="Optional bias tensor (C_out,) (or the style's bias shape).")
@click.option("-o", "--output", required=True, metavar="OUT", help="Where to write the result (.npy, .npz[:name], .h5[:/path], -).")
@click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the shape derivation.")
@click.option("--scheduler", metavar="ADDRESS", help="Compute the tiles as tasks on this Dask scheduler (tcp://host:port; workers must see the same paths).")
@style_options
def run(input, weight, bias, output, device, force, quiet, style, sets, quirks, as_json, scheduler):
    """Run a transposed convolution and write the output.

    Prints how every output dimension was derived to stderr (unless -q); with --json, a summary with
    shapes, dtype, device, engine and timings to stdout.

    \b
    Example:
      deconv run samples/torch_x.npy samples/torch_w.npy --bias samples/torch_b.npy \\
          --set stride=2 --set padding=1 --set output_padding=1 -o y.npy
    """
    from .job import Job, run_job
    from .report import print_derivation, print_json, print_warnings

    try:
        job = Job(input=input, weight=weight, output=output, bias=bias, style=style, options=parse_set(sets),
                  device=device, force=force, quirks=quirks, scheduler=scheduler)
        result = run_job(job)
    except DeconvError as error:
        _fail(error)
    print_warnings(result.derivation.warnings, sys.stderr)
    if not quiet:
        print_derivation(result.derivation, sys.stderr)
    if as_json:
        print_json(result.as_dict())


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
def shape(input, weight, bias, input_shape, weight_shape, bias_shape, style, sets, quirks, as_json, target_shape, all_styles):
    """Derive the output shape without reading any tensor data.

    Shapes come from file headers or from --input-shape/--weight-shape. Also lists, per dimension, the
    output sizes the style's size options (output_padding, output_shape, input_size, ...) can reach.

    \b
    Example:
      deconv shape --style onnx --input-shape 1,1,3,3 --weight-shape 1,2,3,3 \\
          --set strides=(3,2) --set auto_pad=SAME_UPPER --json
      deconv shape --input-shape 1,8,16,16 --weight-shape 8,4,4,4 --set stride=2 --target-shape 33,33
    """
    from .job import plan
    from .report import print_all_styles, print_derivation, print_json, print_reachable, print_warnings
    from .solve import reachable, solve

    try:
        shapes = _shapes_from_args(input, weight, bias, input_shape, weight_shape, bias_shape)
        record = plan(style, parse_set(sets), *shapes, quirks=quirks)
        if target_shape is not None:
            record = solve(record, parse_shape(target_shape), shapes[2], quirks=quirks)
        sizes = reachable(record, shapes[2], quirks=quirks)
        others = _all_styles(record) if all_styles else None
    except DeconvError as error:
        _fail(error)
    print_warnings(record.warnings, sys.stderr)
    if as_json:
        data = record.as_dict()
        data["reachable"] = [{kw: {str(k): v for k, v in per.items()} for kw, per in dim.items()} for dim in sizes]
        if others is not None:
            data["all_styles"] = [e.as_dict() for e in others]
        print_json(data)
        return
    print_derivation(record, sys.stdout)
    print_reachable(sizes, sys.stdout)
    if others is not None:
        print_all_styles(others, sys.stdout)


def _all_styles(record):
    from .explain import explain

    return [explain(record, name) for name in STYLE_NAMES]


@cli.command(name="explain")
@shape_sources
@style_options
@click.option("--to", "target", required=True, type=click.Choice(STYLE_NAMES), help="The style to write the call in.")
def explain_command(input, weight, bias, input_shape, weight_shape, bias_shape, style, sets, quirks, as_json, target):
    """Print the equivalent call in another style, with the weight re-layout.

    Where the target style cannot express the configuration (asymmetric padding in torch, say), it
    prints the nearest call and the crop to apply to its output.

    \b
    Example:
      deconv explain --style onnx --input-shape 1,4,5,5 --weight-shape 4,2,3,3 \\
          --set strides=[2,2] --set pads=[1,1,0,0] --to torch
    """
    from .explain import explain
    from .job import plan
    from .report import print_explanation, print_json, print_warnings

    try:
        shapes = _shapes_from_args(input, weight, bias, input_shape, weight_shape, bias_shape)
        record = plan(style, parse_set(sets), *shapes, quirks=quirks)
        explanation = explain(record, target)
    except DeconvError as error:
        _fail(error)
    print_warnings(record.warnings, sys.stderr)
    if as_json:
        print_json(explanation.as_dict())
    else:
        print_explanation(explanation, sys.stdout)


def _shapes_from_args(input, weight, bias, input_shape, weight_shape, bias_shape):
    from . import tensor_io

    def pick(role, path, text):
        if (path is None) == (text is None):
            raise ConfigError(f"give either a {role.upper()} file or --{role}-shape", "see deconv shape --help")
        return parse_shape(text) if text is not None else tensor_io.peek(tensor_io.parse_ref(path)).shape

    if bias is not None and bias_shape is not None:
        raise ConfigError("give either --bias or --bias-shape, not both")
    bias_dims = parse_shape(bias_shape) if bias is None else tensor_io.peek(tensor_io.parse_ref(bias)).shape
    return pick("input", input, input_shape), pick("weight", weight, weight_shape), bias_dims


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
def info(files, as_json):
    """List the arrays in tensor files: name, shape, dtype (headers only).

    \b
    Example:
      deconv info samples/onnx.npz samples/torch_x.npy
    """
    from . import tensor_io
    from .report import print_info, print_json

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
    from . import conventions

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
@style_options
def batch(manifest_path, jobs, scheduler, shard, resume, journal, dry_run, device, force, fail_fast, quiet, style, sets, quirks, as_json):
    """Run the jobs of a manifest (.jsonl, .csv, or - for JSONL on stdin), in parallel.

    One job per line: input, weight, output (required), bias, style, set, quirks, expect, atol, rtol, id.
    --style/--set/--quirks are defaults that a job's own fields override (set: key by key); relative paths
    are relative to the manifest. The whole manifest is checked first (exit 2 naming the line). With
    --json, one record per job on stdout as it finishes (id, status ok|failed|mismatch|skipped, output,
    output_shape, timings, error); on stderr a progress bar (terminal) and a summary line. Exit 0 when every
    job is ok or skipped, 1 otherwise, 130 on Ctrl-C (finished outputs kept, no partial file).

    \b
    Example:
      deconv batch samples/jobs.jsonl --jobs 2 --json
      deconv batch jobs.csv --set stride=2 --shard 1/4 --resume
    """
    from . import batch as batch_module
    from . import manifest
    from .report import BatchProgress, print_json

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
        click.echo(f"Interrupted: {summary.not_run} jobs did not finish; run again with --resume to finish them.", err=True)
    if not quiet:
        click.echo(summary.line(), err=True)
    sys.exit(summary.exit_code)


def _print_planned(record: dict) -> None:
    if record["status"] == "ok":
        click.echo(f"{record['id']}\t{record['output']}\t{tuple(record['output_shape'])}")


@cli.command(name="bench")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--threads", type=int, default=2, show_default=True, help="Threads for us and for every peer.")
@click.option("--repeat", type=int, default=7, show_default=True, help="Timed calls per engine (medians).")
@click.option("--only", multiple=True, metavar="NAME", help="One suite configuration (repeatable).")
@click.option("--paths", is_flag=True, help="Also time every applicable engine path.")
@click.option("--no-peers", is_flag=True, help="Skip PyTorch and onnxruntime.")
@click.option("--no-memory", is_flag=True, help="Skip the per-configuration peak-memory subprocesses.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
def bench_command(device, threads, repeat, only, paths, no_peers, no_memory, as_json):
    """Time the DESIGN.md suite against PyTorch and onnxruntime, same threads, same run.

    Prints median ms, GFLOP/s, the fraction of the measured SGEMM peak, ratios to the peers, peak memory
    per configuration and the start-up time of `deconv shape`. Peers come from the bench extra.

    \b
    Example:
      deconv bench --only dcgan_512to256_4x4_k4s2p1 --repeat 5
    """
    from .bench import report

    try:
        report(device, threads, repeat, only, paths, not no_peers, not no_memory, as_json,
               echo=lambda line: click.echo(line))
    except DeconvError as error:
        _fail(error)


def main() -> None:
    cli(prog_name="deconv")
