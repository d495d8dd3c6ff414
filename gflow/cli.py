"""The ``gflow`` command: ``demo``, ``run CONFIG.toml``, ``sweep CONFIG.toml``, ``plot RESULTS.nc``,
``bench``.

Exit codes: 0 success, 2 bad input (one line naming the field), 1 any other failure.
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded UFM-CE example and compare with theory")
    demo.add_argument("--out", help="output folder (default runs/demo)")
    run = sub.add_parser("run", help="run a simulation from a TOML config")
    run.add_argument("config", help="path to CONFIG.toml")
    run.add_argument("--out", help="output folder (default: run.out of the config)")
    for p in (demo, run):
        p.add_argument("--quiet", action="store_true", help="no progress display")
        p.add_argument("--no-plots", action="store_true", help="write results.nc only")
    sweep = sub.add_parser("sweep", help="run (or resume) the grid of a config's list fields")
    sweep.add_argument("config", help="path to CONFIG.toml (fields given as lists are swept)")
    sweep.add_argument("--out", help="output folder (default: run.out of the config)")
    sweep.add_argument("--quiet", action="store_true", help="no progress display")
    plot = sub.add_parser("plot", help="draw the figures of a results.nc or a sweep folder")
    plot.add_argument("results", help="path to results.nc, or a sweep's OUT (phase diagram)")
    plot.add_argument("--out", help="output folder (default: beside the results file)")
    bench = sub.add_parser("bench", help="GD throughput on the reference problem, this machine")
    bench.add_argument("--inits", type=int, nargs="+", default=[1, 64, 1024])
    bench.add_argument("--steps", type=int, default=2000)
    bench.add_argument("--out", help="also write the record as JSON here")
    return parser


def _simulate(cfg, out: str | None, quiet: bool, no_plots: bool) -> None:
    from gflow import simulation

    cfg = simulation.as_config(cfg)
    if out is not None:
        cfg = cfg.replace(run={"out": out})
    ds, path = simulation.run(cfg, progress=not quiet)
    from gflow import results

    if path.is_dir():  # a process other than 0 of a multi-process run
        print(f"gflow: this process's parts are in {path}; process 0 writes results.nc")
        return

    print(results.summary(ds))
    print(f"results: {path}")
    if not no_plots:
        _plot(ds, path.parent)


def _plot(ds, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from gflow import plots

    for path in plots.save_figures(ds, out):
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
    from gflow.config import ConfigError

    try:
        if args.command == "demo":
            from gflow import config

            _simulate(config.loads(DEMO_CONFIG), args.out, args.quiet, args.no_plots)
        elif args.command == "run":
            _simulate(args.config, args.out, args.quiet, args.no_plots)
        elif args.command == "sweep":
            from gflow import sweep

            index = sweep.run(args.config, args.out, progress=not args.quiet)
            print(sweep.open_index(index.parent).load())
            print(f"index: {index}")
        elif args.command == "bench":
            _bench(args.inits, args.steps, args.out)
        elif args.command == "plot":
            from gflow import results

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
                ds = results.load(path)
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
    except KeyboardInterrupt:
        print("gflow: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 -- report, exit 1, no traceback wall
        print(f"gflow: failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
