"""``grelu-reproduce TARGET --profile {smoke,paper}``: one command per table or figure of the paper.

    grelu-reproduce fig2a --profile smoke          # CPU, minutes
    grelu-reproduce table2-fmnist --profile smoke
    grelu-reproduce fig2a --profile paper          # GPU
    grelu-reproduce --list

Writes ``results/<target>/<profile>/`` (README.md with the paper's numbers beside ours, CSV, PNG, and
the run records in runs/), swapped in atomically. Run directories live in ``runs/reproduce/``:
finished jobs are reused and interrupted ones resume from their last checkpoint (``--fresh`` redoes
them). Exit codes (lightning_grelu/errors.py: TABLE): 0 done, 2 refused: bad arguments or job parameters, or
a machine that cannot run the jobs (missing data, no GPU, a full disk), 1 a job crashed, 128+N stopped by
signal N (run the same command again to go on).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from lightning_grelu.atomic import unwritable
from lightning_grelu.errors import ArgumentParser, fail, interruption
from lightning_grelu.signals import Interrupted, raise_on_signals


def parse_args(argv):
    from lightning_grelu.reproduce import TARGETS

    p = ArgumentParser(prog="grelu-reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("target", nargs="?", choices=sorted(TARGETS), metavar="TARGET",
                   help="one of: " + ", ".join(TARGETS))
    p.add_argument("--profile", choices=["smoke", "cpu", "paper"], default="smoke",
                   help="smoke (CPU, minutes), cpu (CPU, hours; atlas and fig2a), paper (the paper's sizes, GPU)")
    p.add_argument("--results", default="results", help="results root (default: %(default)s)")
    p.add_argument("--work", default="runs/reproduce", help="where run directories go (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=None, help="keep only the first N seeds")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="a grelu-train override appended to every job (repeatable), e.g. trainer.devices=4")
    p.add_argument("--fresh", action="store_true", help="re-run jobs that finished before")
    p.add_argument("--part", default=None, metavar="K/N",
                   help="run only part K of N (every N-th job from the K-th): a paper profile on short GPU windows")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="width-scan targets (atlas, fig2a): the Optuna storage workers share (default: a journal "
                        "file in the work directory); e.g. postgresql://user@host/db to share one across hosts")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="width-scan targets: local worker processes (default: one per CPU core)")
    p.add_argument("--no-report", action="store_true",
                   help="width-scan targets: only work on the scan (no results, no lock on the work directory): "
                        "for many workers on a cluster; one final run without it writes the results")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    args = p.parse_args(argv)
    if not args.list and not args.target:
        p.error("give a TARGET (or --list)")
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be >= 1")
    if args.target and args.profile not in TARGETS[args.target].profiles:
        p.error(f"{args.target} has no --profile {args.profile}; its profiles: "
                f"{', '.join(TARGETS[args.target].profiles)}")
    if (args.storage or args.workers or args.no_report) and args.target and not TARGETS[args.target].engine:
        p.error(f"--storage, --workers and --no-report are for width-scan targets (atlas, fig2a), not {args.target}")
    if args.part is not None:
        k, sep, n = args.part.partition("/")
        if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            p.error(f"--part {args.part!r}: give K/N with 1 <= K <= N, e.g. --part 1/4")
        args.part = (int(k), int(n))
    for flag, path in (("--results", args.results), ("--work", args.work)):
        problem = unwritable(Path(path))
        if problem:
            p.error(f"{flag} {path}: {problem}")
    return args, TARGETS


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args, targets = parse_args(argv)
    if args.list:
        for name, t in targets.items():
            print(f"{name:15s} {t.title}" + (f"  [data: {t.data}]" if t.data else ""))
        return
    from lightning_grelu.reproduce.runner import run_target
    from lightning_grelu.reproduce.target import Context

    target = targets[args.target]
    raise_on_signals()
    ctx = Context(args.profile, seeds=args.seeds, overrides=list(args.override), part=args.part,
                  storage=args.storage, workers=args.workers or os.cpu_count() or 1)
    try:
        command = "grelu-reproduce " + " ".join(shlex.quote(a) for a in argv)
        if args.no_report:
            from lightning_grelu.scan.work import run_workers

            work = (Path(args.work) / target.name / args.profile).resolve()
            run_workers(target.scan(ctx, work), ctx.workers)
            print(f"grelu-reproduce: {target.name} ({args.profile}): the scan is finished; without --no-report the "
                  "same command writes the results")
            return
        dest = run_target(target, ctx, Path(args.results), Path(args.work), command, fresh=args.fresh,
                          device="gpu" if args.profile == "paper" else "cpu")
    except (Interrupted, KeyboardInterrupt, Exception) as e:  # one line, the kind's exit code (errors.TABLE)
        stop = interruption(e)  # a signal, even one that library code re-wrapped while it unwound
        if stop is None:
            fail("grelu-reproduce", e, "finished jobs are kept and reused; HYDRA_FULL_ERROR=1 for the traceback",
                 where=target.name)
        print(f"grelu-reproduce: {target.name}: {stop}; finished jobs are kept: run the same command again to go on "
              "(the interrupted job resumes from its last checkpoint)", file=sys.stderr)
        sys.exit(stop.exit_code)
    print(f"grelu-reproduce: {target.name} ({args.profile}) -> {dest}/README.md")


if __name__ == "__main__":
    main()
