"""`make gpu-check`: the GPU path proven in one command, <= 8 minutes on one H100/H200, offline.

    python3 benchmarks/gpu_check.py --wheels .whl        # a bare GPU machine: checkout + carried wheels
    python3 benchmarks/gpu_check.py                      # the suite already importable (make gpu-check)
    python3 benchmarks/gpu_check.py --only bench-theory_width --bound bench-theory_width=540   # one part
    python3 benchmarks/gpu_check.py --wheels .whl --rehearse --out runs/rehearsal   # no GPU: the rest

Steps, in this order, each a subprocess with its own time bound (`--bound NAME=SECONDS`) inside one
budget (`--budget`, 480 s): `install` (the wheels of --wheels that this Python lacks, with pip
--no-index --no-deps into --site, which every later step finds first on PYTHONPATH after the checkout),
`imports` (every module of the suite, and Hydra, Optuna, W&B, psycopg), `smoke` (grelu-bench's tiny case
on the CPU), `pytest` (the `gpu` tests but the two below), grelu-bench on every case (`bench-CASE`:
bf16-mixed, the theory width in 32-true), `conversion` and `augmentation` at the paper's sizes,
`pytest-theory_width` (its peak memory against the estimate) and `reference` (the plain-PyTorch loop
benchmarks/reference/gpu_anchor.py beside grelu-bench's tiny case). Every command is `python -m` or a
script path, so nothing depends on where pip put console scripts. A step past its bound is stopped,
its whole process group with it, and reported as not finished; one the budget no longer reaches is
reported as not run; each gets a line to run it alone later. Records and logs go to --out
(results/speed/paper/: jsonl, README.md, logs/STEP.log, gpu_check.txt with the verdict over every
record there, gpu_check_log.txt with every run's step lines). Exit 0 when every step ran (a missed
target is a finding, not a failure), 1 when a step failed or did not finish, 2 bad arguments or no
GPU (without --rehearse: the GPU steps skipped, one line each).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]  # this checkout's suite, however (or whether) it is installed

import torch  # noqa: E402

from _steps import Outcome, Step, run_step  # noqa: E402
from lightning_grelu.bench import commit, hardware  # noqa: E402
from lightning_grelu.errors import ArgumentParser  # noqa: E402

CASES = [("small_fullbatch", "bf16-mixed", 25), ("sgemm_d10_w4096", "bf16-mixed", 40),
         ("cifar_d6_w10k", "bf16-mixed", 55), ("cifar_d6_w10k_b4096", "bf16-mixed", 55),
         ("theory_width", "32-true", 300)]
BUDGET = 480  # seconds: the whole run on one H100/H200, within one device command
IMPORTS = """import importlib, pkgutil, lightning_grelu, hydra, optuna, wandb, psycopg, optuna_dashboard
mods = [m.name for m in pkgutil.walk_packages(lightning_grelu.__path__, 'lightning_grelu.')]
for m in mods: importlib.import_module(m)
print(len(mods), 'modules of', lightning_grelu.__file__, '| hydra', hydra.__version__, '| optuna', optuna.__version__,
      '| wandb', wandb.__version__, '| psycopg', psycopg.__version__, psycopg.pq.__impl__)"""
SLOW_TESTS = "test_grelu_bench_runs_every_case_on_cuda or test_theory_width_peak_memory"


def plan(a) -> list[Step]:
    py, out = sys.executable, a.out
    bench = [py, "-m", "lightning_grelu.cli.bench"]
    pytest = [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "gpu", str(REPO / "tests")]
    steps = [Step("install", 45, False, why="the carried wheels this Python lacks"),
             Step("imports", 20, False, [py, "-c", IMPORTS]),
             Step("smoke", 25, False, [*bench, "--case", "tiny", "--device", "cpu", "--modes", "relu",
                                       "--warmup", "1", "--steps", "1", "--repeats", "1"]),
             # grelu-bench's own test of every case is left to the bench steps, which run each case in full
             Step("pytest", 100, False, [*pytest, "-k", f"not ({SLOW_TESTS})"],
                  why="the gpu tests (without a GPU: collected, every module imported, each skipped)")]
    for case, precision, bound in CASES[:4]:
        steps.append(Step(f"bench-{case}", bound, True, [*bench, "--case", case, "--device", "cuda", "--precision",
                                                         precision, "--out", out]))
    steps += [Step("conversion", 40, True, [py, str(HERE / "conversion.py"), "--out", out]),
              Step("augmentation", 40, True, [py, str(HERE / "augmentation.py"), "--out", out])]
    case, precision, bound = CASES[4]  # the verdict reads its GReLU row: the other modes would triple its draws
    steps += [Step(f"bench-{case}", bound, True, [*bench, "--case", case, "--device", "cuda", "--precision",
                                                  precision, "--modes", "grelu", "--out", out]),
              Step("pytest-theory_width", 300, True, [*pytest, "-k", "test_theory_width_peak_memory"]),
              Step("reference", 540, True, [*bench, "--case", "tiny", "--device", "cuda", "--reference", a.reference,
                                            "--out", out])]
    return steps


def wheels_to_install(folder: Path, site: Path) -> tuple[list[Path], list[str]]:
    """The wheels in ``folder`` whose distribution, at that version, neither this Python nor ``site`` has."""
    from packaging.utils import canonicalize_name, canonicalize_version, parse_wheel_filename

    have = {(canonicalize_name(d.metadata["Name"]), canonicalize_version(d.version))
            for d in md.distributions(path=[str(site), *sys.path])}
    todo, there = [], []
    for w in sorted(folder.glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(w.name)
        if (name, canonicalize_version(version)) in have:
            there.append(w.name)
        else:
            todo.append(w)
    return todo, there


def check_args(p: argparse.ArgumentParser, a, names: list[str]) -> dict[str, int]:
    """Every bad argument is one line and exit 2, before anything is installed or written."""
    from packaging.utils import parse_wheel_filename

    if not a.rehearse and not torch.cuda.is_available():
        p.error("no CUDA GPU is visible here; run it on a GPU machine (or add --rehearse to run the steps that "
                "need none)")
    if not Path(a.reference).is_file():
        p.error(f"--reference {a.reference}: no such file")
    if Path(a.out).exists() and not Path(a.out).is_dir():
        p.error(f"--out {a.out}: not a directory")
    for name in a.only or []:
        if name not in names:
            p.error(f"--only {name}: no such step (steps: {', '.join(names)})")
    bounds = {}
    for item in a.bound:
        m = re.fullmatch(r"([\w-]+)=(\d+)", item)
        if not m or m[1] not in names or not 0 < int(m[2]) <= 600:
            p.error(f"--bound {item}: want STEP=SECONDS, SECONDS 1..600 (steps: {', '.join(names)})")
        bounds[m[1]] = int(m[2])
    if a.wheels:
        wheels = sorted(Path(a.wheels).glob("*.whl")) if Path(a.wheels).is_dir() else []
        if not wheels:
            p.error(f"--wheels {a.wheels}: no .whl files there (make them with benchmarks/offline_wheels.py --download)")
        seen: dict[str, str] = {}
        for w in wheels:
            name = str(parse_wheel_filename(w.name)[0])
            if name in seen:
                p.error(f"--wheels {a.wheels}: two wheels of {name} ({seen[name]}, {w.name}): keep one")
            seen[name] = w.name
    return bounds


def verdict(out: Path) -> list[tuple[str, float | None, float, bool | None]]:
    """(target, measured ratio, threshold, met) for every speed target of results/speed/README.md."""
    recs = []
    for path in out.glob("*.jsonl"):
        recs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def bench(case, mode):
        hits = [r for r in recs if r.get("kind") == "bench" and r["case"] == case and r["mode"] == mode]
        return hits[-1] if hits else None

    def last(name, key):
        hits = [r for r in recs if r.get("benchmark") == name and key in r]
        return hits[-1][key] if hits else None

    rows = []
    b4096 = {m: bench("cifar_d6_w10k_b4096", m) for m in ("relu", "grelu", "grelu_recompute")}
    rows.append(("d6 w10k b4096 bf16: suite time / plain time (>= 0.95x throughput)",
                 b4096["relu"] and b4096["relu"]["suite_over_plain"], 1 / 0.95))
    rows.append(("GReLU cached masks / ReLU step", b4096["grelu"] and b4096["relu"]
                 and b4096["grelu"]["suite_ms"] / b4096["relu"]["suite_ms"], 1.00))
    rows.append(("GReLU recomputed gates / ReLU step", b4096["grelu_recompute"] and b4096["relu"]
                 and b4096["grelu_recompute"]["suite_ms"] / b4096["relu"]["suite_ms"], 1.30))
    small = bench("small_fullbatch", "relu")
    rows.append(("small full-batch n=100 m=1000 L=4: suite / plain", small and small["suite_over_plain"], 1.2))
    theory = bench("theory_width", "grelu")
    rows.append(("theory width m=40,000: peak GB (target 60)", theory and theory["suite_peak_gb"] and
                 theory["suite_peak_gb"] * 2**30 / 1e9, 60.0))
    rows.append(("theory width: suite / plain cached-mask step", theory and theory["suite_over_plain"], 1.1))
    rows.append(("RandAugment step / plain step, batch 4096", last("augmentation", "ratio"), 1.15))
    rows.append(("GReLU->ReLU conversion, in training epochs", last("conversion", "conversion_in_epochs"), 2.0))
    return [(name, value, limit, None if value is None else value <= limit) for name, value, limit in rows]


def rerun_line(a, step: Step, bound: int | None) -> str:
    argv = [sys.executable, str(HERE / "gpu_check.py"), *(["--wheels", a.wheels] if a.wheels else []),
            "--site", a.site, "--out", a.out, *(["--rehearse"] if a.rehearse else []),
            "--only", step.name, *(["--bound", f"{step.name}={bound}"] if bound else []), "--budget", "570"]
    named = os.environ.get("GRELU_COMMIT")  # the commit a copy without .git was told, told again
    return f"cd {shlex.quote(os.getcwd())} && " + (f"GRELU_COMMIT={shlex.quote(named)} " if named else "") + \
        shlex.join(argv)


def main() -> None:
    p = ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="default results/speed/paper (with --rehearse: runs/gpu_check_rehearsal)")
    p.add_argument("--reference", default=str(HERE / "reference" / "gpu_anchor.py"))
    p.add_argument("--wheels", default=None, help="install the wheels here that this Python lacks (pip --no-index)")
    p.add_argument("--site", default=".pysite", help="where those go (pip --target; git-ignored)")
    p.add_argument("--rehearse", action="store_true", help="no GPU needed: skip the GPU steps, one line each")
    p.add_argument("--only", nargs="+", metavar="STEP", help="run these steps alone (install runs with --wheels)")
    p.add_argument("--bound", action="append", default=[], metavar="STEP=SECONDS", help="a step's own time bound")
    p.add_argument("--budget", type=int, default=BUDGET, help=f"seconds for the whole run (default {BUDGET})")
    p.add_argument("--skip-tests", action="store_true", help="leave out the pytest steps")
    a = p.parse_args()
    a.out = a.out or ("runs/gpu_check_rehearsal" if a.rehearse else "results/speed/paper")
    steps = plan(a)
    bounds = check_args(p, a, [s.name for s in steps])
    steps = [s for s in steps if (not a.only or s.name in a.only or (s.name == "install" and a.wheels))
             and not (a.skip_tests and s.name.startswith("pytest")) and (s.name != "install" or a.wheels)]
    site = Path(a.site).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site), *filter(None, [os.environ.get(
           "PYTHONPATH")])]), "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
           "MPLBACKEND": "Agg"}
    out, gpu = Path(a.out), torch.cuda.is_available()
    logs, outcomes, t0 = out / "logs", [], time.perf_counter()
    for step in steps:
        left = a.budget - (time.perf_counter() - t0)
        if step.gpu and not gpu:
            outcomes.append(Outcome(step, "skip", 0.0, "needs a CUDA GPU; none is visible (rehearsal)"))
        elif left < 5:
            outcomes.append(Outcome(step, "not run", 0.0, f"the {a.budget} s budget was spent before it"))
        elif step.name == "install":
            todo, there = wheels_to_install(Path(a.wheels), site)
            if not todo:
                outcomes.append(Outcome(step, "ok", 0.0, f"nothing missing: {len(there)} wheels already installed"))
                continue
            step.argv = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", a.wheels,
                         "--no-deps", "--no-compile", "--upgrade", "--target", str(site), *map(str, todo)]
            o = run_step(step, min(bounds.get(step.name, step.bound), left), env, Path.cwd(), logs / "install.log")
            o.detail = o.detail or f"{len(todo)} wheels into {a.site} ({len(there)} already there)"
            outcomes.append(o)
        else:
            outcomes.append(run_step(step, min(bounds.get(step.name, step.bound), left), env, Path.cwd(),
                                     logs / f"{step.name}.log"))
        print(outcomes[-1].line(), flush=True)
    total = time.perf_counter() - t0
    device = torch.device("cuda") if gpu else torch.device("cpu")
    head = f"gpu-check on {hardware(device)}, torch {torch.__version__}, commit {commit()}, " + \
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {total:.0f} s"
    lines = [head, ""] + [o.line() for o in outcomes]
    unfinished = [o for o in outcomes if o.status in ("FAIL", "TIME", "not run")]
    if unfinished:
        lines += ["", "Failed or not finished; run each alone later (after a fix, where one failed), one device command each:"]
        lines += ["  " + rerun_line(a, o.step, 540 if o.status == "TIME" else None) for o in unfinished]
    lines += ["", f"{'target':64s} {'measured':>10s} {'limit':>7s}  verdict (every record in {a.out})"]
    for name, value, limit, met in verdict(out):
        shown = "-" if value is None else f"{value:.3g}"
        lines.append(f"{name:64s} {shown:>10s} {limit:>7.3g}  "
                     + ("not measured" if met is None else "met" if met else "MISSED"))
    text = "\n".join(lines)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.txt").write_text(text + "\n")  # the verdict over every record: rebuilt, never the only copy
    with open(out / "gpu_check_log.txt", "a") as f:  # every run's step lines, kept
        f.write("\n".join([head, *[o.line() for o in outcomes]]) + "\n\n")
    sys.exit(1 if unfinished else 0)


if __name__ == "__main__":
    main()
