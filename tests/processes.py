"""Real deconv processes held at a known point, for signal, crash and race tests in every layer's tests."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

# A deconv process in which a call of MODULE.NAME (by default the engine) runs BODY first: to hold a
# run at a known point (a signal, a race).
HOOKED = """
import importlib, os, sys, time
module = importlib.import_module({module!r})
real = getattr(module, {name!r})
def hooked(*args, **kwargs):
{body}
    return real(*args, **kwargs)
setattr(module, {name!r}, hooked)
sys.argv = ["deconv", *{args!r}]
from deconv_cli.cli import main
main()
"""


def hooked(body: str, *args, cwd, env=None, target="deconv_cli.engines.numpy_engine.deconvolve", **kwargs) -> subprocess.Popen:
    module, name = target.rsplit(".", 1)
    code = HOOKED.format(body="\n".join("    " + line for line in body.strip().splitlines()), args=[str(a) for a in args],
                         module=module, name=name)
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def on_a_terminal(argv: list[str], cwd, env: dict | None = None) -> tuple[int, str]:
    """Run ``python -m deconv_cli ARGV`` with stderr on a pseudo-terminal: its exit code and what it drew there."""
    env = dict(os.environ, TERM="xterm", COLUMNS="100", **(env or {}))
    env.pop("NO_COLOR", None)
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "deconv_cli", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # EIO: the child's end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")
