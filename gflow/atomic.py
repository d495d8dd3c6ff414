"""Files that appear whole: atomic writes, and netCDF files written by helper processes.

Every file gflow writes appears by renaming a complete temporary in the same folder, so a reader
(or a resumed run) sees either no file or all of it, never a part. A netCDF file is mostly
HDF5's work (about 25 ms for a sweep point's ~40 variables on a 2-core box) and HDF5 is not
thread-safe (xarray holds a global lock around it), so a sweep writing hundreds of files hands
them to a few ``python -m gflow.atomic`` processes (:class:`Writers`), one per core, which
write what they are sent while this process goes on. This module imports no JAX: a writer
process starts in under a second.
"""

from __future__ import annotations

import collections
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import xarray as xr


def umask_mode() -> int:
    """The mode a plain ``open`` gives a new file: 0o666 less the umask (mkstemp gives 0o600,
    which would hide results from collaborators)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def replace_atomically(path: str | Path, write: Callable[[str], None], sync: bool = False) -> Path:
    """Make ``path`` appear whole: ``write(tmp)`` fills a unique temporary in the same folder,
    which gets the umask's mode (as ``open`` would give) and is renamed over ``path``; on any
    error the temporary is removed.

    Args:
        path: the file (its folder must exist).
        write: fills the file named by its argument.
        sync: flush the temporary to disk before the rename.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to the netCDF-4 file ``path`` atomically (:func:`replace_atomically`),
    flushed to disk before the rename.

    Args:
        ds: the Dataset.
        path: the file to write (its folder is created if missing).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_atomically(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"), sync=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (:func:`replace_atomically`): concurrent writers and a kill
    at any moment never leave a partial file.

    Args:
        path: the file (its folder must exist).
        text: its content.

    Returns:
        ``path`` as a ``Path``.
    """
    return replace_atomically(path, lambda tmp: Path(tmp).write_text(text))


class _Process:
    """One writer process, the files sent to it and not yet written, and a thread reading its
    answers."""

    def __init__(self):
        here = str(Path(__file__).resolve().parent.parent)  # the folder holding gflow/
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (here, os.environ.get("PYTHONPATH")) if p))  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gflow.atomic"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        self.pending: collections.deque = collections.deque()
        self.errors: list[str] = []
        self.done = threading.Condition()
        self.alive = True
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                status, message = pickle.load(self.proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                with self.done:
                    self.alive = False
                    self.done.notify_all()
                return
            with self.done:
                self.pending.popleft()
                if status != "ok":
                    self.errors.append(message)
                self.done.notify_all()

    def send(self, ds: xr.Dataset, path: Path) -> bool:
        with self.done:
            if not self.alive:
                return False
            self.pending.append((ds, path))
        try:
            pickle.dump((ds, str(path)), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
        except OSError:
            return True  # it died: wait() writes what it held
        return True

    def wait(self) -> list:
        """Block until every file sent is written; returns the jobs it could not take (it
        died), which the caller writes itself."""
        with self.done:
            while self.pending and self.alive:
                self.done.wait()
            left = list(self.pending)
            self.pending.clear()
            return left

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Writers:
    """A few processes that write netCDF files atomically (:func:`save_netcdf`), in parallel
    with each other and with this process.

    ``submit(ds, path)`` returns at once; ``wait()`` returns when every file submitted is on
    disk (a writer that died has its files written here instead) and raises ``OSError`` if
    one could not be written. Use as a context manager: leaving it waits for the writes under
    way, then ends the processes. With ``processes`` 0 every file is written in
    :meth:`submit`. The processes ignore Ctrl-C and SIGTERM and end when this process closes
    their input, so an interrupted sweep stops at this process's pace and a killed one leaves
    at most temporaries (removed on resume).

    Args:
        processes: the number of writer processes (0: none, write in this process).
    """

    def __init__(self, processes: int):
        self._procs: list[_Process] = []
        try:
            self._procs = [_Process() for _ in range(processes)]
        except OSError:  # cannot start processes here: write in this one
            self.close()
        self._next = 0

    def submit(self, ds: xr.Dataset, path: str | Path) -> None:
        path = Path(path)
        if self._procs:
            proc = self._procs[self._next % len(self._procs)]
            self._next += 1
            if proc.send(ds, path):
                return
        save_netcdf(ds, path)

    def wait(self) -> None:
        errors = []
        for proc in self._procs:
            for ds, path in proc.wait():
                save_netcdf(ds, path)
            errors += proc.errors
            proc.errors = []
        if errors:
            raise OSError(f"results could not be written: {errors[0]}")

    def close(self) -> None:
        for proc in self._procs:
            proc.close()
        self._procs = []

    def __enter__(self) -> Writers:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.wait()
        finally:
            self.close()


def _serve() -> None:
    """A writer process: write each (Dataset, path) read from stdin, answer on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    jobs, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the answers' pipe
    while True:
        try:
            ds, path = pickle.load(jobs)
        except EOFError:
            return
        try:
            save_netcdf(ds, path)
            answer = ("ok", path)
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises
            answer = ("error", f"{path}: {type(err).__name__}: {err}")
        pickle.dump(answer, answers)
        answers.flush()


if __name__ == "__main__":
    _serve()
