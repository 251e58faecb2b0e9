"""Batch manifests: read a whole JSONL or CSV manifest, merge the command-line defaults, check it all.

One job per JSONL line (a JSON object; blank lines allowed) or per CSV row (a header row names the
columns), UTF-8 with or without a byte-order mark (a spreadsheet's "CSV UTF-8"), CRLF or LF line ends.
Fields: ``input``, ``weight`` (required), ``output`` (required unless ``expect``), ``bias``, ``style``, ``set``,
``quirks``, ``expect``, ``atol``, ``rtol``, ``id`` (default: the line number), ``layer`` (``MODEL.onnx#NODE``:
a model's layer in place of weight, bias, style and set, which it excludes).
``set`` is a JSON object (lists stand for tuples) or a list of ``"KEY=VALUE"`` strings; in CSV,
space-separated ``KEY=VALUE`` items (shell quoting allowed). The command line's ``--style/--set/--quirks``
are defaults; a job's own fields override them, ``set`` key by key. Relative paths resolve against the
manifest's folder (the working directory for stdin).

Every problem in the manifest itself (bad JSON, an unknown or mistyped field, a missing required field,
two jobs writing one output file, a job's output being another job's input, a repeated id) is a
ConfigError naming the line, raised before any job runs. Problems of one job's own plan (a bad option,
a missing file) are that job's failure, found when it runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import tensor_io
from ..core.errors import ConfigError
from ..core.options import parse_set

FIELDS = ("input", "weight", "output", "bias", "style", "set", "quirks", "expect", "atol", "rtol", "id", "layer")
LAYER_GIVES = ("weight", "bias", "style", "set")  # what a job's ``layer`` (MODEL.onnx#NODE) stands for
TENSOR_FIELDS = ("input", "weight", "bias", "expect")  # read by a job


@dataclass(frozen=True)
class Defaults:
    """The command line's share of every job."""

    style: str = "torch"
    options: Mapping[str, object] = field(default_factory=dict)
    quirks: bool = False


@dataclass(frozen=True)
class Entry:
    """One job of a manifest, with defaults merged and paths resolved (``raw``: the fields as written)."""

    line: int
    id: str | int
    input: str
    weight: str
    output: str | None
    bias: str | None = None
    style: str = "torch"
    options: tuple[tuple[str, object], ...] = ()
    quirks: bool = False
    expect: str | None = None
    atol: float | None = None
    rtol: float | None = None
    raw_output: str | None = None
    written: tuple[tuple[str, str], ...] = ()  # (resolved file, file as the manifest wrote it), for messages

    @functools.cached_property
    def key(self) -> str:
        """A digest of everything that decides this job's result (for the resume journal)."""
        fields = [self.input, self.weight, self.output, self.bias, self.style, [list(kv) for kv in self.options],
                  self.quirks, self.expect, self.atol, self.rtol]
        return hashlib.sha256(json.dumps(fields, default=repr).encode()).hexdigest()[:32]

    def tensors(self) -> dict[str, str]:
        """The files this job reads, by role (absolute paths, array names dropped)."""
        return {role: file_of(getattr(self, role)) for role in TENSOR_FIELDS if getattr(self, role) is not None}


def file_of(reference: str) -> str:
    """The file (or Zarr folder) part of a tensor reference (``x.npz:name`` -> ``x.npz``), as
    ``tensor_io.parse_ref`` splits it. A reference it rejects is kept whole: that job fails when it runs."""
    try:
        return tensor_io.parse_ref(reference).path
    except tensor_io.BadReference:
        return reference


def _resolve(reference: str, folder: str) -> str:
    """Make the file part of a reference absolute against ``folder``; keep the array name."""
    path = file_of(reference)
    rest = reference[len(path):]
    return os.path.normpath(os.path.join(folder, os.path.expanduser(path))) + rest


# ---------------------------------------------------------------- reading


def read(source: str, defaults: Defaults = Defaults()) -> list[Entry]:
    """Every job of the manifest at ``source`` (a path, or ``-`` for JSONL on stdin), checked as a whole."""
    if source == "-":
        stream = getattr(sys.stdin, "buffer", None)
        text = sys.stdin.read().lstrip("\ufeff") if stream is None else _decode(stream.read(), "stdin")
        folder, kind = os.getcwd(), ".jsonl"
    else:
        kind = os.path.splitext(source)[1].lower()
        if kind not in (".jsonl", ".ndjson", ".csv"):
            raise ConfigError(f"manifest {source} is neither .jsonl nor .csv", "name it jobs.jsonl or jobs.csv (or pass - for JSONL on stdin)")
        try:
            with open(source, "rb") as f:
                text = _decode(f.read(), source)
        except FileNotFoundError:
            raise ConfigError(f"manifest {source}: no such file", "check the path") from None
        except OSError as exc:
            raise ConfigError(f"cannot read manifest {source}: {exc.strerror or exc}", "check the path and its permissions") from None
        folder = os.path.dirname(os.path.abspath(source))
    rows = _csv_rows(text) if kind == ".csv" else _jsonl_rows(text)
    entries = [_entry(line, fields, defaults, folder) for line, fields in rows]
    if not entries:
        raise ConfigError(f"manifest {source} has no jobs", "write one JSON object per line (or CSV rows under a header)")
    check(entries)
    return entries


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text with an optional byte-order mark (what spreadsheets write for "CSV UTF-8"); CRLF or LF."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"manifest {source}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x})",
                          "save the manifest as UTF-8") from None


MAX_DEPTH = 16  # a manifest's values nest 3 deep ("set": {"stride": [2, 2]}); deeper is a mistake or an attack


def _depth(value) -> int:
    """How deeply lists and objects nest in ``value``, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _jsonl_rows(text: str):
    for line, content in enumerate(text.split("\n"), start=1):  # not splitlines: JSON strings may hold U+2028
        content = content.removesuffix("\r")
        if not content.strip():
            continue
        too_deep = ConfigError(f"line {line}: JSON nested more than {MAX_DEPTH} levels deep",
                               'write one flat object per line, e.g. {"input": "x.npy", "weight": "w.npy", "output": "y.npy"}')
        try:
            fields = json.loads(content)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"line {line}: not valid JSON ({exc.msg} at column {exc.colno})", "write one JSON object per line") from None
        except RecursionError:
            raise too_deep from None
        if _depth(fields) > MAX_DEPTH:
            raise too_deep
        if not isinstance(fields, dict):
            raise ConfigError(f"line {line}: expected a JSON object, got {type(fields).__name__}", 'write e.g. {"input": "x.npy", "weight": "w.npy", "output": "y.npy"}')
        yield line, fields


def _csv_rows(text: str):
    import csv
    import io

    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return
    names = [name.strip() for name in header]
    for name in names:
        if name not in FIELDS:
            raise ConfigError(f"line 1: unknown column '{name}'", f"columns are {', '.join(FIELDS)}")
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(names):
            raise ConfigError(f"line {reader.line_num}: {len(row)} cells under a header of {len(names)} columns", "quote cells that contain commas")
        fields: dict[str, object] = {}
        for name, cell in zip(names, row):
            if cell.strip():
                fields[name] = _csv_value(name, cell.strip(), reader.line_num)
        yield reader.line_num, fields


def _csv_value(name: str, cell: str, line: int):
    if name == "set":
        try:
            return shlex.split(cell)
        except ValueError as exc:
            raise ConfigError(f"line {line}: set {cell!r}: {exc}", "write space-separated KEY=VALUE items") from None
    if name == "quirks":
        lowered = cell.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"line {line}: quirks {cell!r} is not true or false", "write true or false")
        return lowered in ("true", "1", "yes")
    if name in ("atol", "rtol"):
        try:
            return float(cell)
        except ValueError:
            raise ConfigError(f"line {line}: {name} {cell!r} is not a number", f"write e.g. {name}=1e-5") from None
    return cell


def _entry(line: int, fields: dict, defaults: Defaults, folder: str) -> Entry:
    where = f"line {line}"
    for name in fields:
        if name not in FIELDS:
            raise ConfigError(f"{where}: unknown field '{name}'", f"fields are {', '.join(FIELDS)}")
    if "layer" in fields:
        fields = _layer_fields(fields, where, folder)
    for name in ("input", "weight"):
        if name not in fields:
            raise ConfigError(f"{where}: missing required field '{name}'", f"add \"{name}\": \"path\"")
    if "output" not in fields and "expect" not in fields:
        raise ConfigError(f"{where}: missing required field 'output'", "add \"output\": \"path\" (or \"expect\" to only compare)")
    for name in ("input", "weight", "output", "bias", "expect", "style"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: '{name}' must be a non-empty string, got {json.dumps(value)}")
        if value == "-" and name != "style":
            raise ConfigError(f"{where}: '{name}' is '-' (stdin/stdout), which a batch job cannot use", "save the tensor to a file")
    if "expect" in fields or "atol" in fields or "rtol" in fields:
        _check_compare_available(where)
    for name in ("atol", "rtol"):
        value = fields.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ConfigError(f"{where}: '{name}' must be a number >= 0, got {json.dumps(value)}")
    quirks = fields.get("quirks", defaults.quirks)
    if not isinstance(quirks, bool):
        raise ConfigError(f"{where}: 'quirks' must be true or false, got {json.dumps(quirks)}")
    job_id = fields.get("id", line)
    if isinstance(job_id, bool) or not isinstance(job_id, str | int):
        raise ConfigError(f"{where}: 'id' must be a string or a whole number, got {json.dumps(job_id)}")
    options = {} if "layer" in fields else dict(defaults.options)
    options.update(_job_options(fields.get("set"), where))

    def path(name):
        return None if fields.get(name) is None else _resolve(fields[name], folder)

    return Entry(
        line=line, id=job_id, input=path("input"), weight=path("weight"), output=path("output"), bias=path("bias"),
        style=fields.get("style", defaults.style), options=tuple(options.items()), quirks=quirks,
        expect=path("expect"), atol=fields.get("atol"), rtol=fields.get("rtol"), raw_output=fields.get("output"),
        written=tuple((file_of(path(name)), file_of(fields[name])) for name in (*TENSOR_FIELDS, "output")
                      if fields.get(name) is not None),
    )


def _layer_fields(fields: dict, where: str, folder: str) -> dict:
    """A job's ``layer`` (MODEL.onnx#NODE, relative to the manifest) in place of its weight, bias, style and set;
    the model is read (headers only) here, so that a missing model or layer is a manifest error like a bad field."""
    from .. import models
    from ..core.errors import DeconvError

    source = fields["layer"]
    parts = models.split(source) if isinstance(source, str) else None
    if parts is None:
        raise ConfigError(f"{where}: 'layer' must be MODEL.onnx#NODE or MODEL.onnx#N, got {json.dumps(source)}")
    given = [name for name in LAYER_GIVES if name in fields]
    if given:
        raise ConfigError(f"{where}: 'layer' gives the weight, bias, style and set; {', '.join(given)} cannot be given too",
                          f"drop {', '.join(given)}")
    try:
        layer = models.layer(_resolve(parts[0], folder) + "#" + parts[1])
    except DeconvError as error:
        raise ConfigError(f"{where}: {error.message}", error.hint) from None
    extra = {"weight": layer.weight, "style": layer.style, "set": layer.options}
    if layer.bias is not None:
        extra["bias"] = layer.bias
    return {**fields, **extra}


def _job_options(value, where: str) -> dict[str, object]:
    """A job's ``set``: a JSON object (lists become tuples) or a list of KEY=VALUE strings."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(key): _tuples(item) for key, item in value.items()}
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        try:
            return parse_set(value, flag="set")
        except ConfigError as error:
            raise ConfigError(f"{where}: {error.message}", error.hint) from None
    raise ConfigError(f"{where}: 'set' must be an object or a list of \"KEY=VALUE\" strings", 'write e.g. "set": {"stride": [2, 2]}')


def _tuples(value):
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _check_compare_available(where: str) -> None:
    import importlib.util

    if importlib.util.find_spec("deconv_cli.checks.compare") is None:
        raise ConfigError(f"{where}: 'expect', 'atol' and 'rtol' need deconv compare, which this version lacks", "drop those fields")


def check(entries: list[Entry]) -> None:
    """Whole-manifest rules: ids unique, one job per output file, no output read by another job."""
    ids: dict[object, int] = {}
    writers: dict[str, Entry] = {}
    for entry in entries:
        if entry.id in ids:
            raise ConfigError(f"line {entry.line}: id {json.dumps(entry.id)} is also the id of line {ids[entry.id]}", "give every job its own id")
        ids[entry.id] = entry.line
        if entry.output is None:
            continue
        target = file_of(entry.output)
        if target in writers:
            raise ConfigError(f"line {entry.line}: output {entry.raw_output} is also written by line {writers[target].line}", "give every job its own output file")
        writers[target] = entry
    for entry in entries:
        for role, path in entry.tensors().items():
            writer = writers.get(path)
            if writer is not None and writer is not entry:
                raise ConfigError(
                    f"line {entry.line}: {role} {os.path.basename(path)} is the output of line {writer.line}",
                    "a batch's jobs run in any order; run the two steps as two batches",
                )


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` with 1 <= K <= N."""
    if text is None:
        return None
    k, sep, n = text.partition("/")
    if sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n):
        return int(k), int(n)
    raise ConfigError(f"--shard {text!r} is not K/N with 1 <= K <= N", "write e.g. --shard 2/4")


def shard(entries: list[Entry], selection: tuple[int, int] | None) -> list[Entry]:
    """The jobs of shard K of N: 0-based position i with ``i % N == K - 1``."""
    if selection is None:
        return entries
    k, n = selection
    return [entry for i, entry in enumerate(entries) if i % n == k - 1]
