"""Output folders: checked before anything compiles, held by one process at a time, and never
mixed or silently overwritten (a run's results, a sweep's points, another config's results).

A run or sweep holds ``OUT/.gflow.lock`` (created with O_EXCL; it names the process, the host
and the command) while it writes; a second one into the same folder is refused while that
process lives, and a lock left by a process that died is taken over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gflow.config import ConfigError

LOCK = ".gflow.lock"
RUN_FILES = ("results.nc", "parts")
SWEEP_FILES = ("sweep.toml", "index.nc", "points")


def probe(folder: Path) -> None:
    """Create ``folder`` and write (then remove) a temporary file in it.

    Args:
        folder: the output folder.

    Raises:
        ConfigError: it cannot be created or written (one line saying why).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise ConfigError(
            f"run.out: cannot create or write the folder {folder} ({err.strerror or err}); "
            "choose another (--out)"
        ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (owned by someone else), or we cannot tell: assume it lives
    return True


def _holder(lock: Path) -> tuple[int, str, str] | None:
    """(pid, host, command) recorded in a lock file, None if unreadable."""
    try:
        pid, host, command = lock.read_text().split("\n", 2)
        return int(pid), host, command.strip()
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def hold(folder: Path, name: str = LOCK) -> Iterator[Path]:
    """Hold ``folder``'s lock while the body runs; take over a lock whose process is gone.

    Args:
        folder: the output folder.
        name: the lock file's name (one per process of a multi-process run).

    Yields:
        The lock file's path.

    Raises:
        ConfigError: the lock belongs to a live process (the message names it).
    """
    lock = folder / name
    record = f"{os.getpid()}\n{socket.gethostname()}\n{' '.join(sys.argv) or 'python'}\n"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if holder is not None and (holder[1] != socket.gethostname() or _alive(holder[0])):
                pid, host, command = holder
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(lock.stat().st_mtime))
                raise ConfigError(
                    f"run.out: {folder} is in use by process {pid} on {host} ({command}, since "
                    f"{since}); wait for it, or choose another folder (--out)"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # its process died: the folder is free
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record)
        break
    else:
        raise ConfigError(f"run.out: {folder}: could not take its lock {lock}")
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def holds(folder: Path, names: tuple[str, ...]) -> list[str]:
    """Which files or folders exist.

    Args:
        folder: the folder.
        names: names in it.

    Returns:
        Those of ``names`` that exist in ``folder``.
    """
    return [n for n in names if (folder / n).exists()]


def clear(folder: Path, names: tuple[str, ...]) -> None:
    """Remove files and folders (``--overwrite``).

    Args:
        folder: the folder.
        names: the files and folders in it to remove, where they exist.
    """
    for n in holds(folder, names):
        path = folder / n
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _refuse(folder: Path, names: tuple[str, ...], what: str, overwrite: bool) -> None:
    found = holds(folder, names)
    if found and not overwrite:
        them = "them" if what.endswith("results") else "it"
        raise ConfigError(
            f"run.out: {folder} holds {what} ({', '.join(found)}); choose another folder "
            f"(--out), or --overwrite to replace {them}"
        )
    clear(folder, names)


def refuse_sweep_folder(folder: Path, overwrite: bool) -> None:
    """A run into a sweep's folder: refused, or the sweep removed.

    Args:
        folder: the run's output folder.
        overwrite: remove the sweep's files instead of refusing.

    Raises:
        ConfigError: ``folder`` holds a sweep and ``overwrite`` is False.
    """
    _refuse(folder, SWEEP_FILES, "a sweep", overwrite)


def refuse_run_folder(folder: Path, overwrite: bool) -> None:
    """A sweep into a run's folder: refused, or the run's results removed.

    Args:
        folder: the sweep's output folder.
        overwrite: remove the run's results instead of refusing.

    Raises:
        ConfigError: ``folder`` holds a run's results and ``overwrite`` is False.
    """
    _refuse(folder, RUN_FILES, "a run's results", overwrite)
