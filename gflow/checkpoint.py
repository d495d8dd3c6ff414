"""Long runs in segments, each block's state checkpointed as a segment ends.

A run whose work (steps x inits of a block x parameters) exceeds :data:`SEGMENT_WORK` is cut
into n segments of about the same number of steps, n = ceil(work / SEGMENT_WORK): segments of a
few seconds to a minute of work on a laptop CPU. A segment's intervals are the save intervals
cut at the segment's ends (an interval that ends between saves is observed and the observation
dropped); every segment is padded with zero-length intervals to the longest, so one compiled
program serves every segment. An uninterrupted run goes through the same segments as a resumed
one, so the two agree bit for bit. A run of one segment takes the plain path (one program).

After each segment, :class:`Checkpoints` writes the block's carry (parameters, optimizer state,
step index) and its observations so far atomically to ``OUT/parts/segments-LO-HI.npz``,
stamped with the config's fingerprint; a rerun of the same config continues from it.

SDEs are cut likewise in time, their segments ending on the fixed-step grid of the one solve
(about the same number of steps each; work: t1/dt0 x inits x parameters); each segment is one
diffrax solve from the previous one's end over the same Brownian path
(:func:`gflow.dynamics.stochastic.noisy_segment`): the one solve's steps, to rounding.
Plain-clock flows (adaptive solvers) are cut at save times into runs of about as many saves
(work: max_steps x inits x parameters); each segment's solve starts from the previous one's
solver and controller states and proposed step (:func:`gflow.dynamics.flow.flow_segment`):
the one solve's path but for a step boundary at each segment's end. The loss and log clocks
and fixed-step flows are one solve.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gflow.atomic import replace_atomically
from gflow.batch import save_grid
from gflow.config import STEPPED_KINDS, Config
from gflow.dynamics.flow import FIXED_STEP_SOLVERS

# Parameter-steps per segment: the reference problem (UFM-CE K=10, d=32, n=20: 6730 parameters)
# runs about 1.7e9 a second on the 2-core dev box when it is idle (gd, 8 inits a vector) and
# 5e8 when it is shared, so a segment is 6-20 s there; configs/ufm-ce-gd.toml (8.6e9) stays one
# segment. GFLOW_SEGMENT_WORK (private: for tests) overrides it.
SEGMENT_WORK = 1e10


class SegmentPlan(NamedTuple):
    """How a run is cut.

    Attributes:
        lengths: the steps of each segment's intervals, (segments, P) int32, zero-padded (a
            stepped run); a timed one's (sde): each segment's steps m, in its first column
            (its solve steps by (end - start) / m: the one solve's grid, to rounding).
        saved: which intervals end at a save, (segments, P) bool.
        ends: (timed runs) each segment's interval end times, (segments, P) float64, padded
            by repeating the segment's end; None for a stepped run.
        starts: (timed runs) each segment's start time, (segments,) float64.
    """

    lengths: np.ndarray
    saved: np.ndarray
    ends: np.ndarray | None = None
    starts: np.ndarray | None = None

    @property
    def count(self) -> int:
        """The number of segments."""
        return len(self.lengths)

    @property
    def timed(self) -> bool:
        """Whether segments are of time (sde) rather than of steps."""
        return self.ends is not None

    def inputs(self, k: int, dtype) -> tuple:
        """Segment ``k``'s data for the advance: its lengths (stepped), or its (start, ends,
        step) in ``dtype`` (timed)."""
        if not self.timed:
            return np.asarray(self.lengths[k])
        start, ends = np.asarray(self.starts[k], dtype), np.asarray(self.ends[k], dtype)
        # (end - start) / m in the solve's dtype: diffrax's ceil((end - start) / nextafter(dt))
        # is then m (and its first step start + dt is the grid's)
        return start, ends, (ends[-1] - start) / np.asarray(self.lengths[k, 0], dtype)


def segment_work() -> float:
    """The parameter-steps of one segment: $GFLOW_SEGMENT_WORK, else :data:`SEGMENT_WORK`."""
    return float(os.environ.get("GFLOW_SEGMENT_WORK") or SEGMENT_WORK)


def plan(cfg: Config, parameters: int) -> SegmentPlan | None:
    """The segments of a stepped run, from the config alone (not the devices or the batching).

    Args:
        cfg: the config.
        parameters: one init's parameter count.

    Returns:
        The :class:`SegmentPlan`, or None where the run is one segment (flows of the loss or
        log clock, fixed-step flows with a stop tolerance, and runs of at most
        :func:`segment_work` parameter-steps).
    """
    d = cfg.dynamics
    inits = min(cfg.run.chunk or cfg.init.count, cfg.init.count)
    if d.kind == "sde":
        return _timed_plan(cfg, inits * parameters)
    if d.kind == "flow":
        return _flow_plan(cfg, inits * parameters)
    if d.kind not in STEPPED_KINDS:
        return None
    count = min(math.ceil(d.steps * inits * parameters / segment_work()), d.steps)
    if count <= 1:
        return None
    size = -(-d.steps // count)
    grid = save_grid(d)
    ends = np.union1d(grid, np.arange(0, d.steps, size))
    pieces = [[] for _ in range(-(-d.steps // size))]
    saves = set(grid.tolist())
    for a, b in zip(ends[:-1], ends[1:], strict=True):
        pieces[int(a) // size].append((int(b - a), int(b) in saves))
    width = max(len(p) for p in pieces)
    lengths = np.zeros((len(pieces), width), np.int32)
    saved = np.zeros((len(pieces), width), bool)
    for k, p in enumerate(pieces):
        lengths[k, : len(p)] = [n for n, _ in p]
        saved[k, : len(p)] = [s for _, s in p]
    return SegmentPlan(lengths, saved)


def _timed_plan(cfg: Config, size: float) -> SegmentPlan | None:
    """An SDE's segments: ends on the fixed-step grid of one solve over [0, t1] (diffrax's
    ``ConstantStepSize``: N = ceil(t1 / dt0) steps of t1/N), about equal in steps."""
    d = cfg.dynamics
    steps = int(np.ceil(d.t1 / np.nextafter(d.dt0, np.inf)))
    count = min(math.ceil(steps * size / segment_work()), steps)
    if count <= 1:
        return None
    grid = np.asarray(save_grid(d), float)
    marks = np.unique(np.rint(np.arange(count + 1) * steps / count).astype(np.int64))
    bounds = d.t1 * marks[1:] / steps
    bounds[-1] = grid[-1]
    times = np.union1d(grid[1:], bounds)
    pieces = [[] for _ in bounds]
    saves = set(grid[1:].tolist())
    for t in times:
        pieces[int(np.searchsorted(bounds, t))].append((float(t), float(t) in saves))
    width = max(len(p) for p in pieces)
    ends = np.repeat(bounds[:, None], width, axis=1)
    saved = np.zeros((len(pieces), width), bool)
    for k, p in enumerate(pieces):
        ends[k, : len(p)] = [t for t, _ in p]
        saved[k, : len(p)] = [s for _, s in p]
    starts = np.concatenate([[0.0], bounds[:-1]])
    lengths = np.zeros_like(saved, np.int32)
    lengths[:, 0] = np.diff(marks)
    return SegmentPlan(lengths, saved, ends, starts)


def _flow_plan(cfg: Config, size: float) -> SegmentPlan | None:
    """A plain-clock flow's segments (the loss and log clocks are one solve). An adaptive
    solver: runs of consecutive saves, about as many in each, the work max_steps x inits x
    parameters. A fixed-step solver: the SDEs' segments of time on the one solve's dt0 grid
    (:func:`_timed_plan`; with a stop tolerance, one solve)."""
    d = cfg.dynamics
    if d.reparam != "none":
        return None
    if d.solver in FIXED_STEP_SOLVERS:
        return None if d.stop_grad_tol is not None else _timed_plan(cfg, size)
    grid = np.asarray(save_grid(d), float)
    count = min(math.ceil(d.max_steps * size / segment_work()), len(grid) - 1)
    if count <= 1:
        return None
    marks = np.unique(np.rint(np.arange(count + 1) * (len(grid) - 1) / count).astype(np.int64))
    pieces = [grid[a + 1 : b + 1] for a, b in zip(marks[:-1], marks[1:], strict=True)]
    width = max(len(p) for p in pieces)
    ends = np.array([np.concatenate([p, np.repeat(p[-1], width - len(p))]) for p in pieces])
    saved = np.arange(width)[None, :] < np.array([len(p) for p in pieces])[:, None]
    starts = np.concatenate([[0.0], ends[:-1, -1]])
    lengths = np.zeros_like(saved, np.int32)
    lengths[:, 0] = 1  # the progress meter counts segments
    return SegmentPlan(lengths, saved, ends, starts)


class Checkpoint(NamedTuple):
    """A block's state after ``done`` of its ``total`` segments.

    Attributes:
        done: the segments finished.
        total: the segments of the run.
        carry: the carry's leaves (each with a leading init axis), in tree order.
        observed: the observations so far by name, each (inits, saves so far).
    """

    done: int
    total: int
    carry: list[np.ndarray]
    observed: dict[str, np.ndarray]


class Checkpoints:
    """The segment checkpoints of one config's blocks, ``segments-LO-HI.npz`` in a folder.

    Each file holds a digest of the config's fingerprint: one of another config is never used.

    Args:
        folder: the folder (OUT/parts, made and stamped by :class:`gflow.results.PartStore`).
        fingerprint: the config's fingerprint (:func:`gflow.simulation.fingerprint`).
    """

    def __init__(self, folder: str | Path, fingerprint: str):
        self.folder = Path(folder)
        self.digest = hashlib.sha256(fingerprint.encode()).hexdigest()

    def path(self, lo: int, hi: int) -> Path:
        """The checkpoint of the block of inits [lo, hi)."""
        return self.folder / f"segments-{lo:09d}-{hi:09d}.npz"

    def save(self, lo: int, hi: int, state: Checkpoint) -> Path:
        """Write a block's checkpoint atomically (a temporary, then a rename; the umask's mode)."""
        path = self.path(lo, hi)
        arrays = {f"carry_{i}": np.asarray(x) for i, x in enumerate(state.carry)}
        arrays.update({f"observed_{k}": np.asarray(v) for k, v in state.observed.items()})
        arrays.update(
            digest=np.asarray(self.digest), done=np.asarray(state.done),
            total=np.asarray(state.total),
        )  # fmt: skip

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        return replace_atomically(path, write)

    def load(self, lo: int, hi: int, total: int) -> Checkpoint | None:
        """The block's checkpoint, or None where there is none of this config and plan
        (another config's, another plan's or an unreadable file is ignored)."""
        path = self.path(lo, hi)
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                if str(z["digest"]) != self.digest or int(z["total"]) != total:
                    return None
                carry = [z[f"carry_{i}"] for i in range(sum(k.startswith("carry_") for k in z))]
                observed = {k[9:]: z[k] for k in z.files if k.startswith("observed_")}
                return Checkpoint(int(z["done"]), total, carry, observed)
        except Exception:  # noqa: BLE001 -- a foreign or damaged file: start the block over
            return None

    def remove(self, lo: int, hi: int) -> None:
        """Delete the block's checkpoint (its part is written)."""
        self.path(lo, hi).unlink(missing_ok=True)


def progress_of(folder: str | Path) -> tuple[int, int] | None:
    """(segments done, segments in all) of the checkpoints in ``folder``, for the interruption
    line; None where there is none."""
    done = total = 0
    for path in sorted(Path(folder).glob("segments-*.npz")):
        try:
            with np.load(path) as z:
                done, total = done + int(z["done"]), total + int(z["total"])
        except Exception:  # noqa: BLE001 -- being written or damaged: not counted
            continue
    return (done, total) if total else None
