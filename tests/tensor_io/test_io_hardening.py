"""Issue 7: hostile files and faults. Nothing lost, nothing wrong, one line, the right exit code.

Every test runs the real command line (CliRunner, or a real subprocess where signals, terminals,
pipes, concurrency or resource limits are involved) and checks the exit code, the whole stderr line
and the files left on disk.
"""

from __future__ import annotations

import json
import os
import pty
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import hooked
from reference import reference_deconv

from deconv_cli import tensor_io
from deconv_cli.cli import cli

FORCE_HINT = "Pass --force to replace it."
# A DECONV_MEMORY_BUDGET that holds one sample of the `tensors` fixture (input + output: 1152 bytes in
# float32) but not both: the job streams batch slices.
STREAM = "2000"


def invoke(*args, env=None, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, input=input)


def deconv(*args, cwd, env=None, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter."""
    if "stdout" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "deconv_cli", *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})},
                          timeout=timeout, **kwargs)


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def temps(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".deconv"))


@pytest.fixture
def tensors(tmp_path, rng, monkeypatch):
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    monkeypatch.chdir(tmp_path)
    return x, w


def expected(x, w, stride=1):
    return reference_deconv(x, w, None, stride=(stride, stride), dilation=(1, 1), crops=((0, 0), (0, 0)), groups=1)


def write_npy_header(path: Path, header: str, data: bytes = b"") -> None:
    """A .npy file with a hand-written (hostile) header."""
    text = header.encode("latin1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data)


# ---------------------------------------------------------------- 1: every path, the same bytes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from(["float16", "float32", "float64"]),
    x_order=st.sampled_from(["<", ">"]), x_fortran=st.booleans(),
    w_order=st.sampled_from(["<", ">"]), w_fortran=st.booleans(),
    batch=st.integers(2, 4), channels=st.integers(2, 4), size=st.integers(8, 12), stride=st.integers(1, 3),
    source=st.sampled_from(["npy", "h5"]),
)
def test_every_path_writes_the_same_bytes(tmp_path, dtype, x_order, x_fortran, w_order, w_fortran, batch, channels, size,
                                          stride, source):
    """Any dtype, byte order and memory order: in memory, streamed, and from native copies, the same .npy bytes."""
    rng = np.random.default_rng(batch * 100 + channels * 10 + size)
    x = rng.standard_normal((batch, channels, size, size + 1)).astype(dtype)
    w = rng.standard_normal((channels, 2, 2, 3)).astype(dtype)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    np.save(folder / "xn.npy", x)
    np.save(folder / "wn.npy", w)
    x_stored = x.astype(np.dtype(dtype).newbyteorder(x_order))
    np.save(folder / "x.npy", np.asfortranarray(x_stored) if x_fortran else x_stored)
    w_stored = w.astype(np.dtype(dtype).newbyteorder(w_order))
    np.save(folder / "w.npy", np.asfortranarray(w_stored) if w_fortran else w_stored)
    with h5py.File(folder / "x.h5", "w") as f:
        f.create_dataset("x", data=x_stored)
    x_ref = f"{folder}/x.npy" if source == "npy" else f"{folder}/x.h5:/x"
    runs = {
        "native": (f"{folder}/xn.npy", f"{folder}/wn.npy", {}),
        "memory": (x_ref, f"{folder}/w.npy", {}),
        "stream": (x_ref, f"{folder}/w.npy", {}),
    }
    for name, (xr, wr, env) in runs.items():
        if name == "stream":  # a budget for exactly one sample of input + output
            out = np.load(folder / "native.npy", mmap_mode="r")
            env = {"DECONV_MEMORY_BUDGET": str((x[0].size + out[0].size) * x.itemsize)}
        result = invoke("run", xr, wr, "--set", f"stride={stride}", "-o", f"{folder}/{name}.npy", "--json", "-q", env=env)
        assert result.exit_code == 0, result.output
        assert ("chunks" in json.loads(result.stdout)["timings"]) == (name == "stream")
    native = (folder / "native.npy").read_bytes()
    assert (folder / "memory.npy").read_bytes() == native
    assert (folder / "stream.npy").read_bytes() == native
    assert np.load(folder / "native.npy").dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_big_endian_input_streams_to_the_right_numbers(tensors, tmp_path, dtype):
    x, w = tensors
    np.save("xb.npy", x.astype(dtype))
    np.save("wb.npy", w.astype(dtype))
    assert invoke("run", "xb.npy", "wb.npy", "-o", "memory.npy", "-q").exit_code == 0
    budget = {">f4": STREAM, ">f8": "4000"}[dtype]
    result = invoke("run", "xb.npy", "wb.npy", "-o", "stream.npy", "-q", env={"DECONV_MEMORY_BUDGET": budget})
    assert result.exit_code == 0, result.output
    assert Path("stream.npy").read_bytes() == Path("memory.npy").read_bytes()
    np.testing.assert_allclose(np.load("stream.npy"), expected(x, w), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 3: containers keep their other arrays


@pytest.mark.parametrize("kind, budget", [("npz", None), ("h5", None), ("h5", STREAM)])  # .npz does not stream
def test_writing_into_a_container_keeps_every_other_array(tensors, tmp_path, kind, budget):
    x, w = tensors
    env = {"DECONV_MEMORY_BUDGET": budget} if budget else None
    if kind == "npz":
        np.savez("io.npz", x=x, w=w)
        sep = ""
    else:
        with h5py.File("io.h5", "w") as f:
            f.create_dataset("x", data=x)
            f.create_dataset("g/w", data=w)
            f["alias"] = h5py.SoftLink("/g/w")
            f.attrs["note"] = "kept"
        sep = "/"
    src = f"io.{kind}"
    wname = "w" if kind == "npz" else "/g/w"
    result = invoke("run", f"{src}:{sep}x", f"{src}:{wname}", "-o", f"{src}:{sep}y", "--force", "-q", env=env)
    assert result.exit_code == 0, result.output
    result = invoke("run", f"{src}:{sep}x", f"{src}:{wname}", "-o", f"{src}:{sep}z", "-q", env=env)  # a new name: no --force needed
    assert result.exit_code == 0, result.output
    before = Path(src).read_bytes()
    result = invoke("run", f"{src}:{sep}x", f"{src}:{wname}", "-o", f"{src}:{sep}y", "-q", env=env)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {src} already holds an array '{sep}y'. {FORCE_HINT}\n"
    assert Path(src).read_bytes() == before
    if kind == "npz":
        with np.load(src) as z:
            arrays = {name: z[name] for name in z.files}
        assert sorted(arrays) == ["w", "x", "y", "z"]
    else:
        with h5py.File(src, "r") as f:
            arrays = {"x": f["x"][()], "w": f["g/w"][()], "y": f["y"][()], "z": f["z"][()]}
            assert f.attrs["note"] == "kept" and f.get("alias", getlink=True).path == "/g/w"
    np.testing.assert_array_equal(arrays["x"], x)
    np.testing.assert_array_equal(arrays["w"], w)
    np.testing.assert_allclose(arrays["y"], expected(x, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(arrays["z"], arrays["y"])
    assert temps(tmp_path) == []


@pytest.mark.parametrize("kind", ["npz", "h5"])
def test_a_failure_while_writing_into_a_container_leaves_the_old_file(tensors, tmp_path, monkeypatch, kind):
    x, w = tensors
    if kind == "npz":
        np.savez("io.npz", x=x, w=w)

        def broken(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(np.lib.format, "write_array", broken)
    else:
        with h5py.File("io.h5", "w") as f:
            f.create_dataset("x", data=x)
            f.create_dataset("w", data=w)
        real = h5py.Group.create_dataset

        def broken(self, name, *args, **kwargs):
            if name == "/y":
                raise OSError(28, "No space left on device")
            return real(self, name, *args, **kwargs)

        monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    before = Path(f"io.{kind}").read_bytes()
    result = invoke("run", f"io.{kind}:x", f"io.{kind}:w", "-o", f"io.{kind}:y", "--force", "-q")
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write io.{kind}: No space left on device. Check free space and permissions.\n"
    assert Path(f"io.{kind}").read_bytes() == before
    assert temps(tmp_path) == []


CHANGE = """
if not os.path.exists("touched"):
    open("touched", "w").close()
    import numpy as np
    np.savez("io.npz", q=np.zeros(1))
"""


def test_a_container_changed_by_another_program_meanwhile_is_not_overwritten(tensors, tmp_path):
    """Another writer saves the .npz while deconv copies its arrays: deconv must not replace that work."""
    x, w = tensors
    np.savez("io.npz", x=x, w=w)
    proc = hooked(CHANGE, "run", "x.npy", "w.npy", "-o", "io.npz:y", "-q", cwd=tmp_path, target="numpy.lib.format.write_array")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.decode() == "Error: io.npz changed while deconv was writing into it. Run again.\n"
    with np.load("io.npz") as z:
        assert z.files == ["q"]
    assert temps(tmp_path) == []


@pytest.mark.parametrize("budget", [None, STREAM])
def test_an_hdf5_group_is_never_replaced_by_an_array(tensors, tmp_path, budget):
    with h5py.File("out.h5", "w") as f:
        f.create_dataset("a/y", data=np.zeros(3))
    before = Path("out.h5").read_bytes()
    env = {"DECONV_MEMORY_BUDGET": budget} if budget else None
    for output, line in [
        ("out.h5:/a", "Error: out.h5:/a is a group of arrays, not an array. Name a dataset inside it.\n"),
        ("out.h5:/a/y/z", "Error: out.h5:/a/y is a dataset, so it cannot hold /a/y/z. Choose another name.\n"),
    ]:
        result = invoke("run", "x.npy", "w.npy", "-o", output, "--force", "-q", env=env)
        assert result.exit_code == 1
        assert result.stderr == line
    assert Path("out.h5").read_bytes() == before
    assert temps(tmp_path) == []


# ---------------------------------------------------------------- 4: no-clobber is atomic


RACE = """
open(f"ready-{os.getpid()}", "w").close()
deadline = time.monotonic() + 30
while len([n for n in os.listdir(".") if n.startswith("ready-")]) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
"""


NO_RENAMEAT2 = "\nfrom deconv_cli.tensor_io import _common\n_common._RENAMEAT2[:] = [None]\n"


@pytest.mark.parametrize("claim", ["renameat2", "link"])  # where the system has no RENAME_NOREPLACE: link + unlink
def test_two_runs_racing_for_one_new_output_cannot_both_win(tensors, tmp_path, claim):
    """Both pass every check and write their data at the same moment: exactly one may create OUT."""
    x, w = tensors
    hook = RACE + (NO_RENAMEAT2 if claim == "link" else "")
    procs = [hooked(hook, "run", "x.npy", "w.npy", "-o", "y.npy", "-q", cwd=tmp_path, target="numpy.save") for _ in range(2)]
    done = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], done
    loser = next(err for p, (_, err) in zip(procs, done) if p.returncode == 1)
    assert loser.decode() == f"Error: output y.npy already exists. {FORCE_HINT}\n"
    np.testing.assert_allclose(np.load("y.npy"), expected(x, w), rtol=1e-5, atol=1e-5)
    assert temps(tmp_path) == []


# ---------------------------------------------------------------- 5: signals remove the temporary file


STALL = """
open("started", "w").close()
time.sleep(60)
"""


@pytest.mark.parametrize(
    "signum, output",
    [(signal.SIGTERM, "y.npy"), (signal.SIGHUP, "y.npy"), (signal.SIGINT, "y.h5:/y"), (signal.SIGTERM, "y.h5:/y")],
)
def test_a_signal_removes_the_temporary_file_and_exits_128_plus_signal(tensors, tmp_path, signum, output):
    Path("y.h5").write_bytes(b"")  # the target exists: a swallowed signal would replace it
    before = Path("y.h5").stat()
    proc = hooked(STALL, "run", "x.npy", "w.npy", "-o", output, "--force", "-q", cwd=tmp_path,
                  env={"DECONV_MEMORY_BUDGET": STREAM})
    wait_for(tmp_path / "started", proc)
    assert temps(tmp_path), "the stream should have its temporary file open"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum
    assert err.decode() == f"Error: stopped by {signal.Signals(signum).name}; no partial output was left.\n"
    assert temps(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["started", "w.npy", "x.npy", "y.h5"]
    assert Path("y.h5").stat().st_ino == before.st_ino and Path("y.h5").read_bytes() == b""


def test_a_killed_runs_temporary_file_is_recognisable_and_cleaned_by_the_next_run(tensors, tmp_path):
    proc = hooked(STALL, "run", "x.npy", "w.npy", "-o", "y.npy", "-q", cwd=tmp_path, env={"DECONV_MEMORY_BUDGET": STREAM})
    wait_for(tmp_path / "started", proc)
    proc.kill()
    proc.communicate(timeout=30)
    [left] = temps(tmp_path)
    match = re.fullmatch(rf"\.deconv-tmp-{proc.pid}-([0-9a-f]{{8}})-[0-9a-f]{{8}}\.npy", left)
    assert match, left
    alive = f".deconv-tmp-{os.getpid()}-{match.group(1)}-00000000.npy"  # a live run's file is never touched
    Path(alive).write_bytes(b"in progress")
    result = deconv("run", "x.npy", "w.npy", "-o", "y.npy", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert temps(tmp_path) == [alive]


# ---------------------------------------------------------------- 6: modes


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("output", ["y.npy", "y.npz", "y.h5"])
def test_new_outputs_follow_the_umask(tensors, umask, mode, output):
    old = os.umask(umask)
    try:
        result = invoke("run", "x.npy", "w.npy", "-o", output, "-q")
        budget = None if output.endswith(".npz") else STREAM  # .npz does not stream
        streamed = invoke("run", "x.npy", "w.npy", "-o", "s" + output, "-q", env={"DECONV_MEMORY_BUDGET": budget} if budget else None)
    finally:
        os.umask(old)
    assert result.exit_code == 0 and streamed.exit_code == 0, result.output + streamed.output
    assert (os.stat(output).st_mode & 0o777, os.stat("s" + output).st_mode & 0o777) == (mode, mode)


@pytest.mark.parametrize("output, budget", [("y.npy", None), ("y.npy", STREAM), ("y.npz", None), ("y.h5", STREAM)])
def test_a_replaced_output_keeps_its_mode(tensors, output, budget):
    assert invoke("run", "x.npy", "w.npy", "-o", output, "-q").exit_code == 0
    os.chmod(output, 0o604)
    result = invoke("run", "x.npy", "w.npy", "-o", output, "--force", "-q", env={"DECONV_MEMORY_BUDGET": budget} if budget else None)
    assert result.exit_code == 0, result.output
    assert os.stat(output).st_mode & 0o777 == 0o604


# ---------------------------------------------------------------- 7: stdout


def test_output_to_stdout_with_json_is_refused(tensors, tmp_path):
    result = invoke("run", "x.npy", "w.npy", "-o", "-", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == ("Error: -o - writes the output's .npy bytes to stdout, where --json would print too. "
                             "Drop --json, or give -o a file name.\n")


def test_binary_output_to_a_terminal_is_refused(tensors, tmp_path):
    leader, follower = pty.openpty()
    try:
        result = deconv("run", "x.npy", "w.npy", "-o", "-", "-q", cwd=tmp_path, stdout=follower, stderr=subprocess.PIPE)
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert result.stderr.decode() == ("Error: -o - would write binary .npy bytes to the terminal. "
                                      "Redirect stdout to a file or a pipe, or give -o a file name.\n")
    assert sorted(os.listdir(tmp_path)) == ["w.npy", "x.npy"]


def test_a_reader_that_stops_early_is_a_failure_not_success(tmp_path, rng):
    """`deconv run ... -o - | head -c 10`: a broken pipe is exit 1, one line, no traceback."""
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 2, 256, 256)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((2, 16, 3, 3)).astype(np.float32))  # 4 MB out: more than any pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "deconv_cli", "run", "x.npy", "w.npy", "-o", "-", "-q"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode in (1, 141)
    assert err == ("Error: stdout was closed before the whole output was written (broken pipe). "
                   "Let the reader take all of it, or give -o a file name.\n")


def test_a_full_stdout_is_one_line(tensors, tmp_path):
    with open("/dev/full", "wb") as full:
        result = deconv("run", "x.npy", "w.npy", "-o", "-", "-q", cwd=tmp_path, stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 1
    assert result.stderr.decode() == "Error: cannot write the output to stdout: No space left on device. Check where stdout goes.\n"


# ---------------------------------------------------------------- 9, 11: what cannot be read safely


def test_a_fifo_is_refused_instead_of_blocking(tensors, tmp_path):
    os.mkfifo("f.npy")
    result = deconv("run", "f.npy", "w.npy", "-o", "y.npy", cwd=tmp_path, timeout=20)
    assert result.returncode == 1
    assert result.stderr.decode() == ("Error: f.npy is a FIFO, not a tensor file. Save the tensor to a regular file first "
                                      "(or pipe .npy bytes to -).\n")
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "w.npy", "x.npy"]


def test_a_device_is_refused(tensors, tmp_path):
    os.symlink("/dev/zero", "z.npz")
    result = deconv("run", "z.npz:x", "w.npy", "-o", "y.npy", cwd=tmp_path, timeout=20)
    assert result.returncode == 1
    assert result.stderr.decode() == ("Error: z.npz is a device, not a tensor file. Save the tensor to a regular file first "
                                      "(or pipe .npy bytes to -).\n")


@pytest.mark.parametrize(
    "stdin, line",
    [
        ("/dev/zero", "Error: stdin is not a valid .npy file (bad header). Re-save it with numpy.save."),
        ("random", "Error: stdin is not a valid .npy file (bad header). Re-save it with numpy.save."),
        ("npz", "Error: stdin holds .npz (zip) bytes, not .npy. Give the .npz file with :name instead."),
        ("huge", "Error: stdin declares shape (1099511627776,) (4.0 TiB), more than this machine's memory. "
                 "Save it to a file and check its header."),
        ("short", "Error: stdin ends after 16 of the 480 data bytes its header declares. "
                  "The sender stopped early; send the whole .npy."),
    ],
)
def test_hostile_stdin(tensors, tmp_path, stdin, line):
    x, w = tensors
    if stdin == "random":
        Path("in").write_bytes(np.random.default_rng(3).bytes(4000))
    elif stdin == "npz":
        np.savez("in", x=x)
        os.rename("in.npz", "in")
    elif stdin == "huge":
        write_npy_header(Path("in"), "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }")
    elif stdin == "short":
        write_npy_header(Path("in"), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4, 3, 5), }", b"\0" * 16)
    source = stdin if stdin.startswith("/") else "in"
    with open(source, "rb") as f:
        result = deconv("run", "-", "w.npy", "-o", "y.npy", cwd=tmp_path, stdin=f, timeout=20)
    assert result.returncode == 1
    assert result.stderr.decode() == line + "\n"
    assert not Path("y.npy").exists()


def limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_an_npz_member_declaring_more_than_the_file_holds_is_refused_before_allocating(tensors, tmp_path):
    header = tmp_path / "h.npy"
    write_npy_header(header, "{'descr': '<f4', 'fortran_order': False, 'shape': (3500000000,), }", b"\0" * (1 << 20))
    with zipfile.ZipFile("m.npz", "w") as z:
        z.write(header, "x.npy")
    header.unlink()
    result = deconv("run", "m.npz:x", "w.npy", "-o", "y.npy", cwd=tmp_path, preexec_fn=limited_memory)
    assert result.returncode == 1
    assert result.stderr.decode() == ("Error: m.npz:x is truncated: its header declares shape (3500000000,) (13.0 GiB of data) "
                                      "but only 1.0 MiB follow. The file is truncated or corrupt; re-save it.\n")


def test_an_input_truncated_during_a_run_cannot_crash_it(tensors, tmp_path):
    """Another process truncates the input after it was loaded: a memory map would die of SIGBUS."""
    x, w = tensors
    proc = hooked('os.truncate("x.npy", 200)', "run", "x.npy", "w.npy", "-o", "y.npy", "-q", cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    np.testing.assert_allclose(np.load("y.npy"), expected(x, w), rtol=1e-5, atol=1e-5)


def test_a_truncated_npy_is_refused_from_its_header(tensors, tmp_path):
    Path("cut.npy").write_bytes(Path("x.npy").read_bytes()[:600])
    for command in (["run", "cut.npy", "w.npy", "-o", "y.npy"], ["info", "cut.npy"]):
        result = invoke(*command)
        assert result.exit_code == 1
        assert result.stderr == ("Error: cut.npy is truncated: its header declares shape (2, 4, 5, 6) (960 bytes of data) "
                                 "but only 472 bytes follow. The file is truncated or corrupt; re-save it.\n")
    assert not Path("y.npy").exists()


# ---------------------------------------------------------------- 10: a full disk


def test_too_little_free_space_is_refused_before_writing(tensors, tmp_path, monkeypatch):
    class Tiny:
        f_bavail, f_frsize, f_blocks = 1, 1024, 100

    monkeypatch.setattr(os, "statvfs", lambda path: Tiny)
    for budget in (None, STREAM):
        result = invoke("run", "x.npy", "w.npy", "-o", "y.h5", env={"DECONV_MEMORY_BUDGET": budget} if budget else None)
        assert result.exit_code == 1
        assert result.stderr == (f"Error: not enough free space for y.h5: it needs 1.3 KiB, {os.getcwd()} has 1.0 KiB free. "
                                 "Free some space or choose another --output.\n")
    assert sorted(os.listdir(tmp_path)) == ["w.npy", "x.npy"]


def file_size_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.mark.parametrize("output", ["y.h5", "y.npy"])
def test_running_out_of_disk_while_streaming_is_one_line(tmp_path, rng, output):
    np.save(tmp_path / "x.npy", rng.standard_normal((4, 8, 64, 64)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((8, 8, 3, 3)).astype(np.float32))  # ~560 KB of output
    result = deconv("run", "x.npy", "w.npy", "-o", output, "-q", cwd=tmp_path, env={"DECONV_MEMORY_BUDGET": "300000"},
                    preexec_fn=file_size_limit)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"Error: cannot write {output}: "), err
    assert err.endswith(". Check free space and permissions.\n")
    assert sorted(os.listdir(tmp_path)) == ["w.npy", "x.npy"]


# ---------------------------------------------------------------- 14: HDF5


def test_hdf5_null_dataspace_and_links(tensors, tmp_path):
    x, w = tensors
    with h5py.File("other.h5", "w") as f:
        f.create_dataset("data", data=x)
    with h5py.File("n.h5", "w") as f:
        f.create_dataset("empty", data=h5py.Empty("f4"))
        f.create_dataset("g/x", data=x)
        f["soft"] = h5py.SoftLink("/g/x")
        f["ext"] = h5py.ExternalLink("other.h5", "/data")
    result = invoke("info", "n.h5")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"n.h5\t{name}\t(2, 4, 5, 6)\tfloat32" for name in ("/ext", "/g/x", "/soft")]
    for command in (["info", "n.h5:/empty"], ["run", "n.h5:/empty", "w.npy", "-o", "y.npy"]):
        result = invoke(*command)
        assert result.exit_code == 1
        assert result.stderr == "Error: n.h5:/empty holds no array (an HDF5 dataset with a null dataspace). Name another dataset.\n"
    for link in ("soft", "ext"):
        result = invoke("run", f"n.h5:/{link}", "w.npy", "-o", f"{link}.npy", "-q")
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(np.load(f"{link}.npy"), expected(x, w), rtol=1e-5, atol=1e-5)


def test_hdf5_errors_are_one_line(tensors, tmp_path):
    Path("bad.h5").write_bytes(b"not hdf5")
    result = invoke("info", "bad.h5")
    assert result.exit_code == 1
    assert result.stderr == ("Error: bad.h5 is not a readable HDF5 file (Unable to synchronously open file "
                             "(file signature not found)). Check the file.\n")


def test_a_locked_hdf5_file_is_called_locked(tensors, tmp_path):
    with h5py.File("l.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, time; f = h5py.File('l.h5', 'a'); print('open', flush=True); "
                               "time.sleep(60)"], cwd=tmp_path, stdout=subprocess.PIPE, env={**os.environ, "HDF5_USE_FILE_LOCKING": "TRUE"})
    try:
        assert holder.stdout.readline() == b"open\n"
        result = deconv("info", "l.h5", cwd=tmp_path, env={"HDF5_USE_FILE_LOCKING": "TRUE"})
    finally:
        holder.kill()
        holder.wait()
    err = result.stderr.decode()
    assert result.returncode == 1
    assert err.startswith("Error: l.h5 is locked by another program writing it (") and len(err.splitlines()) == 1, err
    assert err.endswith("Wait for it to finish, or set HDF5_USE_FILE_LOCKING=FALSE if the file is on a filesystem "
                        "without locks.\n")


# ---------------------------------------------------------------- 15, 17: hostile headers, right diagnoses


@pytest.mark.parametrize(
    "header, line",
    [
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 10**30, 6), }",
         "Error: h.npy is not a valid .npy file (bad header). Re-save it with numpy.save."),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 1000000000000000000000000000000, 6), }",
         "Error: h.npy is truncated: its header declares shape (1, 4, 1000000000000000000000000000000, 6) (8.33e+13 EiB of data) "
         "but only 0 bytes follow. The file is truncated or corrupt; re-save it."),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (True, 4, 6, 6), }",
         "Error: h.npy is not a valid .npy file (its header declares shape (True, 4, 6, 6)). Re-save it with numpy.save."),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, -6, 6), }",
         "Error: h.npy is not a valid .npy file (its header declares a negative dimension, shape (1, 4, -6, 6)). "
         "Re-save it with numpy.save."),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 6.0, 6), }",
         "Error: h.npy is not a valid .npy file (its header declares shape (1, 4, 6.0, 6)). Re-save it with numpy.save."),
    ],
)
def test_hostile_npy_headers(tensors, tmp_path, header, line):
    write_npy_header(Path("h.npy"), header)
    for command in (["run", "h.npy", "w.npy", "-o", "y.npy"], ["info", "h.npy"], ["shape", "h.npy", "w.npy"]):
        result = invoke(*command)
        assert result.exit_code == 1, result.output
        assert result.stdout == "" and result.stderr == line + "\n"
    assert sorted(os.listdir(tmp_path)) == ["h.npy", "w.npy", "x.npy"]


def test_a_structured_array_is_not_called_pickled(tensors, tmp_path):
    np.save("s.npy", np.zeros(3, dtype=[("a", "<f4"), ("b", "<f4")]))
    result = invoke("run", "s.npy", "w.npy", "-o", "y.npy")
    assert result.exit_code == 1
    assert result.stderr == ("Error: s.npy holds a structured array (named fields), not a plain numeric array. "
                             "Save each field as its own array (float16/32/64).\n")


def test_a_bad_member_crc_is_called_damaged(tensors, tmp_path):
    x, w = tensors
    np.savez("c.npz", x=x)
    data = bytearray(Path("c.npz").read_bytes())
    at = data.index(b"\x93NUMPY") + 200
    data[at] ^= 0xFF
    Path("c.npz").write_bytes(bytes(data))
    result = invoke("run", "c.npz:x", "w.npy", "-o", "y.npy")
    assert result.exit_code == 1
    assert result.stderr == "Error: c.npz is a damaged .npz file (Bad CRC-32 for file 'x.npy'). Re-save it with numpy.savez.\n"
    assert not Path("y.npy").exists()


def test_a_corrupt_compressed_member_is_one_line(tensors, tmp_path):
    x, w = tensors
    np.savez_compressed("c.npz", x=x)
    data = bytearray(Path("c.npz").read_bytes())
    start = data.index(b"x.npy") + len("x.npy")
    data[start + 2 : start + 40] = bytes(38)  # the start of the deflate stream
    Path("c.npz").write_bytes(bytes(data))
    result = invoke("run", "c.npz:x", "w.npy", "-o", "y.npy")
    assert result.exit_code == 1
    assert re.fullmatch(r"Error: c\.npz is a damaged \.npz file \(.+\)\. Re-save it with numpy\.savez\.\n", result.stderr), result.output
    assert not Path("y.npy").exists()


# ---------------------------------------------------------------- 16, 18, 19: names


@pytest.mark.parametrize(
    "argv, code, line",
    [
        (["run", "x.npy:foo", "w.npy", "-o", "y.npy"], 2, "Error: 'x.npy:foo': a .npy file holds one unnamed array. Drop the ':foo'."),
        (["info", "x.npy:foo"], 2, "Error: 'x.npy:foo': a .npy file holds one unnamed array. Drop the ':foo'."),
        (["run", "x.npy", "w.npy", "-o", "o.npz:../../evil"], 2,
         "Error: 'o.npz:../../evil': '../../evil' is not a plain array name. Use letters, digits and _ (e.g. :y)."),
        (["run", "x.npy", "w.npy", "-o", "o.h5:/"], 2, "Error: 'o.h5:/' does not name a dataset. Name one, e.g. o.h5:/y."),
        (["run", "x.npy", "w.weights", "-o", "y.npy"], 2,
         "Error: 'w.weights' has no known tensor extension. Use .npy, .npz[:name], .h5[:/dataset], .zarr[:/array] or .safetensors[:name] "
         "(or - for .npy on stdin/stdout); a model's weights read from .onnx[:initializer] and .keras[:layers/path]."),
        (["run", "x.npy", "w.npy", "-o", "y.txt"], 2,
         "Error: 'y.txt' has no known tensor extension. Use .npy, .npz[:name], .h5[:/dataset], .zarr[:/array] or .safetensors[:name] (or - for .npy on stdin/stdout); a model's weights read from .onnx[:initializer] and .keras[:layers/path]."),
        (["run", "-", "-", "-o", "y.npy"], 2, "Error: only one tensor can come from stdin ('-'), got input and weight. "
                                             "Save the others to files."),
    ],
)
def test_bad_names_are_usage_errors(tensors, tmp_path, argv, code, line):
    result = invoke(*argv, input=Path("x.npy").read_bytes())
    assert result.exit_code == code, result.output
    assert result.stderr == line + "\n"
    assert sorted(os.listdir(tmp_path)) == ["w.npy", "x.npy"]


@pytest.mark.parametrize("budget", [None, STREAM])
def test_an_output_name_too_long_is_one_line(tensors, tmp_path, budget):
    name = "a" * 300 + ".npy"
    result = invoke("run", "x.npy", "w.npy", "-o", name, env={"DECONV_MEMORY_BUDGET": budget} if budget else None)
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write {name}: File name too long. Choose another --output.\n"
    assert sorted(os.listdir(tmp_path)) == ["w.npy", "x.npy"]


def test_an_output_where_nothing_can_be_created_is_one_line(tensors, tmp_path):
    result = invoke("run", "x.npy", "w.npy", "-o", "/proc/o.npy")
    assert result.exit_code == 1
    assert result.stderr in ("Error: output folder /proc is not writable. Choose another --output.\n",
                             "Error: cannot write /proc/o.npy: No such file or directory. Check free space and permissions.\n",
                             "Error: cannot write /proc/o.npy: Permission denied. Check free space and permissions.\n")


def test_a_name_the_terminal_cannot_encode_is_escaped(tensors, tmp_path):
    os.rename("x.npy", "xé✓.npy")
    result = deconv("info", "xé✓.npy", cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "x\\xe9\\u2713.npy\tx\\xe9\\u2713\t(2, 4, 5, 6)\tfloat32\n"


def test_a_folder_is_swept_for_stale_temps_once_per_process(tmp_path, monkeypatch):
    """A batch writes many outputs into one folder: one scan, not one per output (O(n^2) over a batch)."""
    from deconv_cli.tensor_io import _common

    scans = []
    real = os.scandir
    monkeypatch.setattr(_common.os, "scandir", lambda path: scans.append(path) or real(path))
    for i in range(3):
        tensor_io.save(tensor_io.parse_ref(str(tmp_path / f"y{i}.npy")), np.zeros((2, 3), np.float32), force=False)
    assert scans == [str(tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y0.npy", "y1.npy", "y2.npy"]
