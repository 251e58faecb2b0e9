"""Recording cases of a framework that may abort the whole process (XLA's CPU compiler does on some 3-D shapes):
the cases run in a worker process, each result written as soon as it is known, and a case that kills the worker
is recorded under ``crashes`` while the next worker goes on after it. Used by make_jax_goldens.py and
make_flax_goldens.py (run from their own environment, outside CI); each gives its CASES and ``run(spec) ->
(arrays, options)``, where arrays holds x, w, (b) and y.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(cases, run, names: list[str], folder: Path) -> None:
    """Run the named cases in order, each result written as soon as it is known (an abort loses only its case)."""
    import numpy as np

    specs = {spec["name"]: spec for spec in cases}
    for name in names:
        spec = specs[name]
        (folder / f"{name}.started").write_text("")
        try:
            arrays, options = run(spec)
        except Exception as err:  # noqa: BLE001 - every rejection of the framework is recorded
            message = " ".join(re.sub(r"\x1b?\[[0-9;]*m", "", f"{type(err).__name__}: {err}").split())
            result = {"expect": "reject", "options": dict(spec["options"]), "framework_error": message[:300]}
        else:
            np.savez(folder / f"{name}.npz", **arrays)
            result = {"expect": "ok", "options": options, "output_shape": list(arrays["y"].shape),
                      "output_dtype": str(arrays["y"].dtype)}
        result["options"] = {k: repr(v) for k, v in result["options"].items()}
        (folder / f"{name}.json").write_text(json.dumps(result))


def record(script: str, style: str, cases, framework: str, version: str) -> None:
    """Run every case through ``script --worker`` processes and write ``<style>.json`` and ``<style>.npz`` beside it."""
    import numpy as np

    here = Path(script).parent
    entries, policy, crashes, arrays = [], [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        todo = [spec["name"] for spec in cases]
        while todo:
            subprocess.run([sys.executable, script, "--worker", folder, *todo], check=False, stderr=subprocess.DEVNULL)
            done = [n for n in todo if (folder / f"{n}.json").exists()]
            started = [n for n in todo if (folder / f"{n}.started").exists() and n not in done]
            todo = [n for n in todo if n not in done and n not in started]
            for name in started:  # the worker died on it
                spec = next(s for s in cases if s["name"] == name)
                crashes.append({"name": name, "style": style, "dtype": spec["dtype"], "input_shape": spec["x"],
                                "weight_shape": spec["w"], "bias_shape": spec["b"],
                                "options": {k: repr(v) for k, v in spec["options"].items()},
                                "framework_error": "the process aborted (XLA CPU compiler check failure)"})
                print(f"{name:40s} CRASH")
        for spec in cases:
            name = spec["name"]
            if not (folder / f"{name}.json").exists():
                continue
            result = json.loads((folder / f"{name}.json").read_text())
            entry = {"name": name, "style": style, "options": result["options"], "dtype": spec["dtype"],
                     "input_shape": spec["x"], "weight_shape": spec["w"], "bias_shape": spec["b"],
                     "expect": result["expect"]}
            if spec["wdtype"] != spec["dtype"]:
                entry["weight_dtype"] = spec["wdtype"]
            if result["expect"] == "ok":
                entry.update(output_shape=result["output_shape"], output_dtype=result["output_dtype"], quirks=False)
                with np.load(folder / f"{name}.npz") as found:
                    arrays.update({f"{name}__{k}": found[k] for k in found.files})
            else:
                entry["framework_error"] = result["framework_error"]
            (policy if spec["policy"] else entries).append(entry)
            print(f"{name:40s} {entry['expect']:6s} {entry.get('output_shape', entry.get('framework_error'))}")
    doc = {"framework": framework, "version": version, "script": Path(script).name, "cases": entries,
           "policy": policy, "crashes": crashes}
    (here / f"{style}.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(here / f"{style}.npz", **arrays)


def main(script: str, style: str, cases, run, framework: str, version) -> None:
    """The script's entry point: a worker (``--worker FOLDER NAMES...``) or the recording run."""
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 stays float64
    if sys.argv[1:2] == ["--worker"]:
        worker(cases, run, sys.argv[3:], Path(sys.argv[2]))
    else:
        record(script, style, cases, framework, version())
