"""Supervising the child processes of `settlepay dev`: start, prefix their output, stop them.

Why children get their own process group: Ctrl-C in a terminal sends SIGINT to the whole
foreground group at once, and the stack must stop in reverse start order (the API before the
worker before the databases). So only `settlepay dev` receives the terminal's signals and it
terminates each child itself. On Linux each child also asks the kernel for SIGTERM when its
parent dies, so even a `kill -9` of `settlepay dev` leaves no orphan behind.

Every line a child prints goes to the terminal prefixed with the child's name and, unprefixed,
to `<log dir>/<name>.log`. This module knows nothing about what the children are.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """Something of the stack did not come up: the message says what and where to look."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while the stack was starting or running."""


def _linux_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up once in the parent: the child between fork and exec may only make plain C calls.
_PRCTL = _linux_prctl()


def _child_setup() -> None:
    os.setpgid(0, 0)
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path
    # Set when a line containing `ready_marker` appears in the child's output.
    ready_marker: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    pump: threading.Thread | None = None
    expected_exit: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Owns the children, in start order; `stop_all` stops them in reverse order."""

    def __init__(self, log_dir: Path, out: IO[str] | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self._print_lock = threading.RLock()  # re-entered by the signal handler
        self._width = 10

    def say(self, name: str, message: str) -> None:
        with self._print_lock:
            self.out.write(f"{name:<{self._width}}| {message}\n")
            self.out.flush()

    def print_block(self, lines: list[str]) -> None:
        with self._print_lock:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def start(self, name: str, argv: list[str], env: dict[str, str], *,
              ready_marker: str | None = None, cwd: Path | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
            preexec_fn=_child_setup,
        )
        child = Child(name=name, process=process, log_path=log_path, ready_marker=ready_marker)
        self.children.append(child)
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True,
                                      name=f"pump-{name}")
        child.pump.start()
        self.say("dev", f"started {name} (pid {process.pid}), log {log_path}")
        return child

    def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        with open(child.log_path, "a", encoding="utf-8") as log:
            # Logs are appended across runs (the data folder is kept): mark where this one starts.
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {child.pid}: started ---\n")
            for line in child.process.stdout:
                line = line.rstrip("\n")
                log.write(line + "\n")
                log.flush()
                self.say(child.name, line)
                if child.ready_marker and child.ready_marker in line:
                    child.ready.set()

    def dead(self) -> Child | None:
        """The first child that exited without being asked to."""
        for child in self.children:
            if not child.expected_exit and child.process.poll() is not None:
                if child.pump is not None:
                    child.pump.join(timeout=2)  # its last words (a traceback) reach the log first
                return child
        return None

    def stop(self, child: Child, timeout: float) -> None:
        child.expected_exit = True
        if child.process.poll() is None:
            self.say("dev", f"stopping {child.name} (pid {child.pid})")
            try:
                child.process.send_signal(signal.SIGTERM)
                child.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.say("dev", f"{child.name} did not stop within {timeout:.0f} s: killed")
                self.kill(child)
            except ProcessLookupError:
                pass
        if child.pump is not None:
            child.pump.join(timeout=5)

    def kill(self, child: Child) -> None:
        child.expected_exit = True
        # The whole group: whatever the child itself started goes too.
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.process.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self, timeout: float = 20.0) -> None:
        for child in reversed(self.children):
            self.stop(child, timeout)

    def kill_all(self) -> None:
        for child in reversed(self.children):
            self.kill(child)


def wait_until(what: str, check: Callable[[], bool], *, timeout: float,
               should_stop: Callable[[], bool], alive: Callable[[], Child | None] = lambda: None,
               interval: float = 0.2) -> None:
    """Poll `check` until it is true; a clear StartupError on timeout or a child's death."""
    deadline = time.monotonic() + timeout
    while True:
        if should_stop():
            raise Interrupted()
        dead = alive()
        if dead is not None:
            raise StartupError(f"{dead.name} exited with code {dead.process.returncode} while "
                               f"waiting for {what}; last lines of {dead.log_path}:\n{dead.tail()}")
        try:
            if check():
                return
        except Exception:  # not up yet: refused connections, 503s, half-started servers
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
