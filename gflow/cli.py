"""The ``gflow`` command: ``demo``, ``run CONFIG.toml``, ``sweep CONFIG.toml``, ``plot RESULTS.nc``,
``bench``.

Exit codes: 0 success, 2 bad input (one line naming the field), 3 every init of a ``run`` or
``demo`` failed (results.nc is still written, to inspect), 1 any other failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The embedded default: UFM-CE with 10 classes from many random inits, gradient flow to collapse.
DEMO_CONFIG = """\
[model]
name = "ufm-ce"
classes = 10
dim = 32
per_class = 20
wd_W = 5e-3
wd_H = 5e-3
wd_b = 5e-3
bias = true

[dynamics]
kind = "flow"
solver = "tsit5"
t1 = 8000.0
rtol = 1e-8
atol = 1e-10
saves = 60

[init]
count = 32
seed = 0
scale = 0.1

[run]
precision = "float64"
out = "runs/demo"
"""


EVERY_INIT_FAILED = 3  # the exit status of a run or demo none of whose inits is "ok"
EXIT_CODES = (
    "exit codes: 0 success, 1 failure, 2 bad input, 3 every init failed (results written; a "
    "sweep: of every point)"
)


class _VersionAction(argparse.Action):
    """``--version``: argparse's version action, with git asked only when the flag is given."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import gflow

        print(f"gflow {gflow.version_info()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gflow", description=__doc__.splitlines()[0], epilog=EXIT_CODES
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version (and git revision) and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded UFM-CE example and compare with theory")
    demo.add_argument("--out", help="output folder (default runs/demo)")
    run = sub.add_parser("run", help="run a simulation from a TOML config")
    run.add_argument("config", help="path to CONFIG.toml")
    run.add_argument("--out", help="output folder (default: run.out of the config)")
    run.add_argument(
        "--print-config", action="store_true",
        help="print the effective config (defaults and overrides filled in) and exit",
    )  # fmt: skip
    run.add_argument(
        "--dry-run", action="store_true",
        help="check the config, its files and the memory it needs, then exit (compiles nothing)",
    )  # fmt: skip
    for p in (demo, run):
        p.add_argument("--quiet", action="store_true", help="no progress display")
        p.add_argument("--no-plots", action="store_true", help="write results.nc only")
        p.add_argument(
            "--pdf", action="store_true",
            help="write each figure as PDF too (PNG only by default; gflow plot writes both)",
        )  # fmt: skip
        p.add_argument(
            "--overwrite", action="store_true",
            help="replace results of another config (or a sweep) in the output folder",
        )  # fmt: skip
    sweep = sub.add_parser("sweep", help="run (or resume) the grid of a config's list fields")
    sweep.add_argument("config", help="path to CONFIG.toml (fields given as lists are swept)")
    for p in (run, sweep):
        p.add_argument(
            "overrides", nargs="*", metavar="section.key=value",
            help="change a field of the config, e.g. model.classes=10 init.count=64",
        )  # fmt: skip
    sweep.add_argument("--out", help="output folder (default: run.out of the config)")
    sweep.add_argument("--quiet", action="store_true", help="no progress display")
    sweep.add_argument(
        "--overwrite", action="store_true",
        help="replace a run's results or a sweep of another config in the output folder",
    )  # fmt: skip
    plot = sub.add_parser("plot", help="draw the figures of a results.nc or a sweep folder")
    plot.add_argument("results", help="path to results.nc, or a sweep's OUT (phase diagram)")
    plot.add_argument("--out", help="output folder (default: beside the results file)")
    bench = sub.add_parser("bench", help="GD throughput on the reference problem, this machine")
    bench.add_argument("--inits", type=int, nargs="+", default=[1, 64, 1024])
    bench.add_argument("--steps", type=int, default=2000)
    bench.add_argument("--out", help="also write the record as JSON here")
    return parser


def _simulate(
    cfg, out: str | None, quiet: bool, no_plots: bool, overwrite: bool = False, pdf: bool = False
) -> int:
    """Run, write and report; the exit status (EVERY_INIT_FAILED when no init is ok)."""
    from gflow import simulation

    cfg = simulation.as_config(cfg)
    if out is not None:
        cfg = cfg.replace(run={"out": out})
    ds, path = simulation.run(cfg, progress=not quiet, overwrite=overwrite)
    from gflow import results

    if path.is_dir():  # a process other than 0 of a multi-process run
        print(f"gflow: this process's parts are in {path}; process 0 writes results.nc")
        return 0

    print(results.summary(ds))
    print(f"results: {path}")
    if not no_plots:  # PNG for a first look; PDF on demand (about 1.5 s more for two figures)
        _plot(ds, path.parent, ("png", "pdf") if pdf else ("png",))
    if not (ds.status == "ok").any():
        print(f"gflow: every init failed ({results.failures(ds)}); see {path}", file=sys.stderr)
        return EVERY_INIT_FAILED
    return 0


def _inspect(cfg, out: str | None, print_config: bool) -> int:
    """``--print-config``: the effective config as TOML; ``--dry-run``: every check a run makes
    before compiling (the model, init.from, the memory estimate) and what it would do."""
    from gflow import config, simulation

    if out is not None:
        cfg = cfg.replace(run={"out": out})
    if print_config:
        print(config.dumps(cfg), end="")
        return 0
    model = simulation.build_model(cfg)
    need = sum(simulation.memory_needed(cfg, model).values())
    print(
        f"gflow: dry run: the config is valid; {cfg.model.name}, {cfg.init.count} inits, "
        f"{cfg.dynamics.kind}, about {simulation._size(need)} at the peak; results would go to "
        f"{Path(cfg.run.out) / 'results.nc'}"
    )
    return 0


def _plot(ds, out: Path, formats: tuple[str, ...] = ("png", "pdf")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from gflow import plots

    for path in plots.save_figures(ds, out, formats):
        print(f"figure: {path}")


def _bench(inits: list[int], steps: int, out: str | None) -> None:
    from gflow import bench
    from gflow.config import ConfigError

    if min(inits) < 1 or steps < 1:
        raise ConfigError(f"bench: --inits and --steps must be >= 1, got {inits} and {steps}")
    record = bench.run(inits, steps)
    print(bench.format_table(record))
    if out:
        bench.write_record(record, out)


def _configure_runtime() -> None:
    """Before JAX starts: one CPU device per core; compiled solves cached across runs."""
    os.environ.setdefault("EQX_ON_ERROR", "nan")
    from gflow.distributed import use_cpu_cores
    from gflow.simulation import enable_compilation_cache

    use_cpu_cores()
    enable_compilation_cache()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("demo", "run", "sweep", "bench"):
        _configure_runtime()
    from gflow.errors import ConfigError

    try:
        if args.command == "demo":
            from gflow import config

            return _simulate(
                config.loads(DEMO_CONFIG),
                args.out,
                args.quiet,
                args.no_plots,
                args.overwrite,
                args.pdf,
            )
        elif args.command == "run":
            from gflow import config

            cfg = config.load(args.config, args.overrides)
            if args.print_config or args.dry_run:
                return _inspect(cfg, args.out, args.print_config)
            return _simulate(cfg, args.out, args.quiet, args.no_plots, args.overwrite, args.pdf)
        elif args.command == "sweep":
            from gflow import sweep

            index = sweep.run(
                args.config, args.out, not args.quiet, args.overwrite, tuple(args.overrides)
            )
            table = sweep.open_index(index.parent).load()
            print(sweep.summary(table))
            print(f"index: {index} (all points: gflow.sweep.open_sweep({str(index.parent)!r}))")
            if not (table.ok_fraction > 0).any():
                print(f"gflow: every init of every point failed; see {index}", file=sys.stderr)
                return EVERY_INIT_FAILED
        elif args.command == "bench":
            _bench(args.inits, args.steps, args.out)
        elif args.command == "plot":  # light: xarray and matplotlib, no JAX for a results.nc
            from gflow.results_file import load

            path = Path(args.results)
            if path.is_dir() and (path / "index.nc").is_file():  # a sweep: its phase diagram
                from gflow import plots, sweep

                out = Path(args.out) if args.out else path
                for figure in plots.save_sweep_figures(sweep.open_index(path), out):
                    print(f"figure: {figure}")
                return 0
            if not path.is_file():
                raise ConfigError(f"results: file not found: {path}")
            try:
                ds = load(path)
            except ConfigError:  # netCDF, but not gflow's: load says what it lacks
                raise
            except Exception as err:  # noqa: BLE001
                raise ConfigError(
                    f"results: {path} is not a netCDF results file of gflow "
                    f"({type(err).__name__}: {str(err).splitlines()[0][:80]})"
                ) from None
            _plot(ds, Path(args.out) if args.out else path.parent)
    except ConfigError as err:
        print(f"gflow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"gflow: interrupted: {_kept(args)}", file=sys.stderr, flush=True)
        return getattr(err, "status", 130)
    except Exception as err:  # noqa: BLE001 -- report, exit 1, no traceback wall
        print(f"gflow: failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt; exit status 143."""

    status = 143


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _output_folder(args) -> Path | None:
    """The output folder of the command ``args`` (None where it cannot be told)."""
    if args.out:
        return Path(args.out)
    if args.command == "demo":
        return Path("runs/demo")
    try:
        import tomllib

        raw = tomllib.loads(Path(args.config).read_text())
        return Path(raw.get("run", {}).get("out", "runs/gflow"))
    except (OSError, ValueError, AttributeError):
        return None


def _kept(args) -> str:
    """What an interrupted run or sweep kept, and how to resume it."""
    out = _output_folder(args) if args.command in ("demo", "run", "sweep") else None
    if out is None:
        return "nothing to keep"
    if args.command == "sweep":
        done = len(list(out.glob("points/*/results.nc")))
        return f"{done} finished point(s) kept in {out}; the same command resumes the rest"
    parts = len(list((out / "parts").glob("*.nc")))
    from gflow.checkpoint import progress_of

    segments = progress_of(out / "parts")
    if segments:  # a long run's checkpoints (gflow.checkpoint)
        done, total = segments
        blocks = f"{parts} finished block(s) and " if parts else ""
        what = "the run" if not parts else "the blocks being solved"
        return (
            f"{blocks}{done} of {total} segments of {what} kept in {out / 'parts'}; the same "
            "command resumes"
        )
    if parts:
        return f"{parts} finished block(s) kept in {out / 'parts'}; the same command resumes"
    # a long run keeps its segments (above); a short one, or a flow of the loss or log clock
    # or of a fixed-step solver, only blocks
    return (
        "nothing had finished yet (a long run keeps its segments; elsewhere set "
        "run.chunk to keep blocks as they finish)"
    )


def entry() -> None:
    """The ``gflow`` console script: :func:`main` under a SIGTERM handler, then :func:`_exit`."""
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    _exit(main())


def _exit(status: int) -> None:
    """End the process with ``status`` without the interpreter's teardown.

    After a finished command the atexit handlers run as in a normal exit (logging, JAX's
    clean-up, a multi-process run's ``jax.distributed.shutdown``); freeing the modules and
    objects of JAX and XLA one by one, which takes about a second and which nobody waits for
    the result of, is skipped. Results and figures are written and closed by then. After an
    interruption (130, 143) the process exits at once: a solve still running in XLA's threads
    would otherwise hold it until the end, and a second Ctrl-C would print atexit tracebacks.
    """
    if status not in (130, 143):
        import atexit

        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (gflow ... | head)
            pass
    os._exit(status)


if __name__ == "__main__":
    entry()
