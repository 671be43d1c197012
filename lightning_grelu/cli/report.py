"""``grelu-report``: compare runs. Reads run records from directories, a sweep's study, or a W&B
project; prints a table and writes ``report.md``, ``report.csv`` and ``loss_curves.png``.

    grelu-report runs/                                    # every run under runs/
    grelu-report results/fig2a/smoke/runs --by model.name,model.width
    grelu-report --study ackley_width_lr --storage sqlite:///sweeps_out/ackley_width_lr/study.db
    grelu-report --wandb ENTITY/PROJECT                   # online: W&B's public API

``--out`` is new or holds an earlier report: a report replaces it as a whole, so a file, a link, an input
or any other directory is refused. Exit codes (lightning_grelu/errors.py: TABLE): 0 done, 2 bad arguments or
unreadable records, or a storage that cannot be read, 1 a crash.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lightning_grelu.errors import ArgumentParser, ConfigError, fail

DEFAULT_METRICS = ["train/sse", "train/mse", "test/sse", "test/acc", "steps_to_eps", "wall_time_s"]
DEFAULT_BY = "experiment_name,model.name"


def default_by(runs) -> list[str]:
    """A study's trials differ in the study's parameters: group by those (a group choice such as ``model`` by
    its ``model.name``); other runs by experiment and model."""
    params = list(dict.fromkeys(k for r in runs for k in r.params))
    if not params:
        return DEFAULT_BY.split(",")
    return [f"{k}.name" if isinstance(runs[0].get(k), dict) else k for k in params]


def check_by(runs, by: list[str]) -> None:
    """Every --by key is one some run has: a typo is one line naming it and the keys there are, exit 2."""
    have = list(dict.fromkeys(k for r in runs for k in r.keys()))
    unknown = [k for k in by if k not in have]
    if unknown:
        shown = ", ".join(k for k in have if not k.startswith(("paths.", "hydra.")))
        raise ConfigError(f"--by {','.join(unknown)}: no run has this key; the runs' keys: {shown}")


def parse_args(argv):
    p = ArgumentParser(prog="grelu-report", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="run directories, or directories holding runs")
    p.add_argument("--study", help="a sweep's study name (with --storage)")
    p.add_argument("--storage", help="the study's storage URL (sqlite:///..., journal:///..., postgresql://...)")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs through W&B's public API (online)")
    p.add_argument("--by", default=None,
                   help="comma-separated keys to group by: summary keys or dotted config keys (default: a study's "
                        f"own parameters with --study, else {DEFAULT_BY})")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated summary metrics")
    p.add_argument("--curve", default="train/sse", help="metrics.csv column for the loss-curve figure")
    p.add_argument("--out", default="report", help="output directory (default: %(default)s)")
    args = p.parse_args(argv)
    if not (args.paths or args.study or args.wandb):
        p.error("give run directories, --study with --storage, or --wandb ENTITY/PROJECT")
    if args.study and not args.storage:
        p.error("--study needs --storage (the sweep's storage URL)")
    problem = out_problem(Path(args.out), args.paths)
    if problem:
        p.error(f"--out {args.out}: {problem}")
    return args


REPORT_FILES = ("report.md", "report.csv", "loss_curves.png")


def out_problem(out: Path, inputs: list[str]) -> str | None:
    """Why ``--out`` cannot take a report, or None. A report replaces its directory as a whole, so --out must be
    new or hold an earlier report and nothing else: never a file, a link, an input or any other directory."""
    if out.is_symlink():
        return f"is a symbolic link (to {os.readlink(out)}); give the directory itself, or a new one"
    if out.exists() and not out.is_dir():
        return "is a file, not a report directory; give a new directory (a report replaces its --out as a whole)"
    here = out.resolve()
    for path in inputs:
        given = Path(path).resolve()
        if here == given or here in given.parents:
            return (f"{'is' if here == given else 'holds'} the input {path}: the report would replace it; give "
                    "another --out")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES)
        if other:
            return (f"holds other files than a report ({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); "
                    "a report replaces its --out as a whole: give a new directory")
    from lightning_grelu.atomic import unwritable

    return unwritable(out.parent)


def collect(args):
    from lightning_grelu.results.records import find_runs, runs_from_study, runs_from_wandb

    runs = []
    for path in args.paths:
        runs += find_runs(path)
    if args.study:
        runs += runs_from_study(args.storage, args.study)
    if args.wandb:
        runs += runs_from_wandb(args.wandb)
    return runs


def report(runs, by: list[str], metrics: list[str], curve: str, out: Path) -> list[dict]:
    from lightning_grelu.results import plots, tables
    from lightning_grelu.atomic import atomic_dir

    present = [m for m in metrics if any(r.get(m) is not None for r in runs)]
    rows = tables.aggregate(runs, by, present)
    with atomic_dir(out) as tmp:
        tables.write_csv(rows, tmp / "report.csv")
        md = [f"# Run report ({len(runs)} runs)", "",
              "Loss: `sse = 1/2 sum_i ||f(x_i)-y_i||^2` (the paper's \"MSE\"), `mse = 1/n sum_i ||f(x_i)-y_i||^2`. "
              "Per group: the mean over the runs that have the metric, `_n` how many those are (e.g. `steps_to_eps` only "
              "exists for runs that reached eps), `_min`/`_max`; `-` is missing.", "", tables.markdown(rows),
              f"![{curve}](loss_curves.png)", ""]
        (tmp / "report.md").write_text("\n".join(md))
        plots.grouped_loss_curves(tmp / "loss_curves.png", runs, by, curve)
    return rows


def print_rows(rows: list[dict], by: list[str], width: int | None = None) -> None:
    """The table on the terminal with whole headers: when the columns do not fit, they are split over
    several tables, each repeating the group keys."""
    from rich.console import Console
    from rich.table import Table

    from lightning_grelu.results.tables import columns, fmt

    console = Console(width=width) if width else Console()
    cols = columns(rows)
    keys = [c for c in cols if c in by]
    rest = [c for c in cols if c not in keys]

    def need(c):
        return max([len(c), *(len(fmt(r.get(c))) for r in rows)]) + 3

    room = max(console.width - sum(need(c) for c in keys) - 1, 20)
    chunks, chunk, used = [], [], 0
    for c in rest:
        if chunk and used + need(c) > room:
            chunks.append(chunk)
            chunk, used = [], 0
        chunk.append(c)
        used += need(c)
    chunks.append(chunk)
    for part in chunks:
        table = Table()
        for c in [*keys, *part]:
            table.add_column(c, no_wrap=True, min_width=len(c), justify="left" if c in keys else "right")
        for r in rows:
            table.add_row(*[fmt(r.get(c)) for c in [*keys, *part]])
        console.print(table)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        runs = collect(args)
        if not runs:
            raise ConfigError("no run records found (directories holding summary.json)")
        by = [k for k in args.by.split(",") if k] if args.by is not None else default_by(runs)
        check_by(runs, by)
        rows = report(runs, by, [m for m in args.metrics.split(",") if m], args.curve, Path(args.out))
    except Exception as e:  # one line, the kind's exit code (errors.TABLE)
        fail("grelu-report", e, "HYDRA_FULL_ERROR=1 for the traceback")
    print_rows(rows, by)
    print(f"grelu-report: {len(runs)} runs -> {args.out}/report.md, report.csv, loss_curves.png")


if __name__ == "__main__":
    main()
