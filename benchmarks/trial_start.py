"""Sweep trial start-up: one grelu-sweep worker running N tiny trials, each forked from the worker (the default)
against each in a fresh interpreter (``GRELU_TRIAL_FORK=0``), alternated ``--repeats`` times. Reports the wall
seconds and the CPU seconds (the worker and every trial process, from the kernel's accounting of children) of
the whole command, medians, and per trial; the trials train 2 epochs of a 6-sample Ackley problem, so nearly
all of it is start-up.

    python benchmarks/trial_start.py --out results/speed/cpu        # 8 trials, 3 repeats of each
    python benchmarks/trial_start.py --trials 4 --repeats 1         # a quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import record

GRELU_SWEEP = str(Path(sys.executable).parent / "grelu-sweep")


def one(trials: int, fork: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one grelu-sweep run of ``trials`` trials in a new out_dir."""
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run([GRELU_SWEEP, "sweep=ackley_width_lr", f"sweep.n_trials={trials}",
                               "sweep.sampler=random", f"sweep.out_dir={tmp}/out",
                               "sweep.base=['experiment=ackley_small','callbacks=none','trainer.max_epochs=2',"
                               "'data.n=6']"],
                              cwd=tmp, capture_output=True, text=True,
                              env={**os.environ, "WANDB_MODE": "disabled", "GRELU_TRIAL_FORK": "1" if fork else "0"})
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"trial_start: grelu-sweep failed: {done.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="append the record to OUT/trial_start.jsonl")
    args = ap.parse_args()
    runs = {"forked": [], "fresh": []}
    for _ in range(args.repeats):  # alternated, so a drift of the machine's speed hits both alike
        for label, fork in (("forked", True), ("fresh", False)):
            runs[label].append(one(args.trials, fork))
    result = {"trials": args.trials, "repeats": args.repeats}
    for label, got in runs.items():
        wall, cpu = statistics.median(w for w, _ in got), statistics.median(c for _, c in got)
        result[label] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "wall_s_per_trial": round(wall / args.trials, 2),
                         "cpu_s_per_trial": round(cpu / args.trials, 2)}
    result["cpu_saved_per_trial_s"] = round(result["fresh"]["cpu_s_per_trial"] - result["forked"]["cpu_s_per_trial"], 2)
    record("trial_start", result, torch.device("cpu"), args.out)


if __name__ == "__main__":
    main()
