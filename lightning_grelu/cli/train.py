"""``grelu-train``: the Hydra entry point. ``grelu-train`` alone runs the embedded default (a small
Ackley problem on CPU); any ``key=value`` override or ``group=option`` choice may follow.

Exit codes (lightning_grelu/errors.py: TABLE): 0 completed, 1 crashed (a fault of the suite), 2 refused: the
job's parameters or this machine (devices, disk, memory, data files), 3 diverged, 128+N stopped by signal N
(130 Ctrl-C, 143 SIGTERM; ``last.ckpt`` saved, resume with ``ckpt_path=last``). ``-m`` (a Hydra multirun)
runs every job whatever the others did and exits with the code of the first job that did not complete.
"""

from __future__ import annotations

from lightning_grelu.signals import Interrupted, die_with_parent, exit_on_signals

exit_on_signals("grelu-train")  # first thing: a signal while the command starts is told, not a bare kill

import os
import shutil
import signal
import sys
from pathlib import Path

if os.environ.get("LOCAL_RANK", "0") != "0":
    # A DDP rank that rank 0 (or a launcher such as torchrun) started: it dies with its parent. Otherwise a rank 0
    # that crashed or was killed leaves this rank waiting for its peers up to the process group's timeout (30
    # minutes), holding the terminal or a caller's pipe open; it writes nothing that a kill could leave half done.
    die_with_parent(signal.SIGKILL, parent=int(os.environ.get("GRELU_TRAIN_PID", 0)) or None)
os.environ["GRELU_TRAIN_PID"] = str(os.getpid())  # what the ranks Lightning starts from this process check

import hydra
from omegaconf import DictConfig

from lightning_grelu import faults
from lightning_grelu.commands import override, override_value, shell_line
from lightning_grelu.config_check import CONF_DIR, check_conf_path, check_group_choice
from lightning_grelu.errors import (EXIT_CONFIG, EXIT_DIVERGED, EXIT_FAILED, ConfigError, MachineError, classify, fail,
                                   interruption)

GROUPS = ("model", "data", "trainer", "logger", "experiment", "callbacks")


def _fail(e: Exception) -> None:
    fail("grelu-train", e)


def print_summary(s: dict) -> None:
    keys = ["status", "model", "data", "width", "depth", "lr", "n_train", "initial/train_sse", "train/sse",
            "train/mse", "train/acc", "steps", "steps_to_eps", "wall_time_s"]
    keys = [k for k in keys if k in s or not k.startswith("train/acc")]
    keys += [k for k in s if k.startswith(("val/", "test/"))]
    keys += [k for k in ("switch/sse_before", "switch/sse_after", "switch/rel_jump", "switch/exact",
                         "switch/max_rel_pred_diff", "switch/exact_rtol", "switch/input_rank_deficit") if k in s]
    width = max(len(k) for k in keys)
    for k in keys:
        v = s.get(k)
        if k == "train/sse" and v is None and s.get("train/sse_last_epoch") is not None:
            v = f"{s['train/sse_last_epoch']:.6g} (the last epoch's: {s.get('status')} at epoch {s.get('epochs')})"
        v = f"{v:.6g}" if isinstance(v, float) else v
        print(f"  {k:<{width}}  {v}")


def _hydra_output_dir() -> Path:
    """The directory Hydra made for this process (unique to it; with an explicit ``paths.run_dir`` it is not
    the run directory, which another command may own)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


# The deepest folder on the way to the run directory that existed before this command (set by main): a
# refused command removes what it made below it, and nothing above
EXISTED: Path | None = None


def _remove_if_unused(run_dir: Path, root: Path) -> None:
    """After a config error, drop the directory Hydra made for this process if it holds nothing but
    Hydra's own notes (.hydra/, its job log), and the parents it leaves empty that this command made
    (``runs/`` itself when it made it): a bad command leaves nothing behind."""
    if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        keep = (EXISTED or root).resolve()
        parent = run_dir.resolve().parent
        while parent != keep and keep in parent.parents and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


# (run dir, exit code) of each job of a Hydra multirun (-m): a job that fails is recorded, the next one runs
OUTCOMES: list[tuple[str, int]] = []


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    """One job. Returns ``summary[optimized_metric]`` (NaN when the job did not complete): the objective a
    Hydra sweeper plugin minimizes. A single run exits with its code; in a multirun the code is recorded
    and the next job runs (a signal still stops them all)."""
    try:
        code, summary = _run_job(cfg)
    except SystemExit as e:  # a config error or crash, already told in one line
        if not _in_multirun() or int(e.code or 0) >= 128:  # a signal stops the multirun too
            raise
        code, summary = int(e.code or 0), None
    if not _in_multirun():
        if code:
            sys.exit(code)
    else:
        OUTCOMES.append((str(Path(cfg.paths.run_dir).resolve()), code))
    value = (summary or {}).get(cfg.get("optimized_metric") or "train/sse") if code == 0 else None
    return float(value) if isinstance(value, (int, float)) else float("nan")


def hydra_notes(cfg: DictConfig) -> dict[str, str]:
    """Hydra's own record of the job (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``), which
    train() writes after its checks instead of Hydra writing it before them."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hc = HydraConfig.get()
    return {".hydra/config.yaml": OmegaConf.to_yaml(cfg),
            ".hydra/hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": OmegaConf.to_container(hc)})),
            ".hydra/overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task)))}


# whether the command names its run directory (paths.run_dir=...; set by main)
EXPLICIT_RUN_DIR = False


def newest_run_like(run_dir: Path) -> Path | None:
    """The newest run beside ``run_dir`` named by the same config (the name after its time stamp) that has a
    checkpoint to resume."""
    import re

    stamp = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}_")
    tail = stamp.sub("", run_dir.name, count=1)
    same = [p for p in run_dir.parent.glob(f"*_{tail}") if p != run_dir and stamp.match(p.name)
            and stamp.sub("", p.name, count=1) == tail and (p / "checkpoints" / "last.ckpt").exists()]
    return max(same, key=lambda p: p.name, default=None)


def _refuse_last_without_run_dir(cfg: DictConfig) -> None:
    """``ckpt_path=last`` resumes the run in paths.run_dir; without one, Hydra made a new, empty directory and
    there is nothing to resume in it: refuse, naming the newest run of this config and the command that
    resumes it, instead of quietly starting a fresh run."""
    made = _hydra_output_dir()
    newest = newest_run_like(made)
    _remove_if_unused(made, Path(cfg.paths.root))
    if newest is None:
        _fail(ConfigError("ckpt_path=last resumes the run in paths.run_dir=DIR, and none was given (no earlier run of "
                          "this config has a checkpoint); drop ckpt_path=last to start a new run"))
    _fail(ConfigError(f"ckpt_path=last resumes the run in paths.run_dir=DIR, and none was given; the newest run of "
                      f"this config is {newest}: {resume_command(newest, _job_overrides())}"))


def _run_job(cfg: DictConfig) -> tuple[int, dict | None]:
    if str(cfg.get("ckpt_path")) == "last" and not EXPLICIT_RUN_DIR:
        _refuse_last_without_run_dir(cfg)
    faults.point("before_training")  # a test's signal arrives here, not wherever torch's import time puts it
    from lightning_grelu.train import train  # heavy imports after Hydra parsed the command line

    try:
        summary = train(cfg, notes=hydra_notes(cfg))
    except (Interrupted, Exception) as e:  # one line, the kind's exit code (errors.TABLE); a refused job leaves nothing
        if interruption(e) is not None:  # a signal, even one that library code re-wrapped while it unwound
            _remove_if_unused(_hydra_output_dir(), Path(cfg.paths.root))
            _stopped(interruption(e), cfg)
        if classify(e) != "crash":
            _remove_if_unused(_hydra_output_dir(), Path(cfg.paths.root))
        fail("grelu-train", e, f"run dir {cfg.paths.run_dir}; HYDRA_FULL_ERROR=1 for the traceback")
    if int(os.environ.get("LOCAL_RANK", "0")) != 0 or int(os.environ.get("NODE_RANK", "0")) != 0:
        return 0, summary
    print_summary(summary)
    if summary.get("note"):
        print(f"grelu-train: {Path(cfg.paths.run_dir).resolve()}: {summary['note']}", file=sys.stderr)
    if summary["status"] == "interrupted":
        _stopped(Interrupted(summary.get("signal", 15), summary.get("epochs"), True), cfg)
    print(Path(cfg.paths.run_dir).resolve())
    if summary["status"] == "diverged":
        print(f"grelu-train: error: run diverged: {summary['error']}", file=sys.stderr)
        return EXIT_DIVERGED, summary
    return 0, summary


def _stopped(e: Interrupted, cfg) -> None:
    """One line: what stopped the run, where it is, how to go on; exit 128 + the signal's number (in a
    multirun too: a signal stops every job after this one)."""
    OUTCOMES.clear()
    run_dir = Path(cfg.paths.run_dir).resolve()
    if e.finished:
        _stop_line(f"{e}: {run_dir}", e.exit_code)
    if (run_dir / "config.yaml").exists():
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            how = "resume: " + resume_command(run_dir, _job_overrides())
        else:
            how = "no checkpoint was kept (callbacks=none?); start it over: " + resume_command(
                run_dir, _job_overrides()).replace(" ckpt_path=last", " overwrite=true")
        _stop_line(f"{e}; {how}", e.exit_code)
    _stop_line(f"{e} before training started; nothing was written", e.exit_code)


def _stop_line(message: str, code: int) -> None:
    """A stop is not an error: one line, without ``error:``, ending with the command that goes on."""
    print(f"grelu-train: {message}", file=sys.stderr)
    sys.exit(code)


def report_multirun() -> None:
    """After ``grelu-train -m``: one line per job that did not complete, a count, and the exit code of the
    first such job (0 when all completed)."""
    if not OUTCOMES:
        return
    names = {0: "completed", EXIT_FAILED: "crashed", EXIT_CONFIG: "refused (parameters or machine)", EXIT_DIVERGED: "diverged"}
    bad = [(d, c) for d, c in OUTCOMES if c]
    for d, c in bad:
        print(f"grelu-train: job {d}: {names.get(c, f'exit {c}')}", file=sys.stderr)
    counts = {}
    for _, c in OUTCOMES:
        counts[names.get(c, f"exit {c}")] = counts.get(names.get(c, f"exit {c}"), 0) + 1
    print(f"grelu-train: multirun of {len(OUTCOMES)} jobs: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
          file=sys.stderr if bad else sys.stdout)
    if bad:
        sys.exit(bad[0][1])


def resume_command(run_dir: Path, overrides: list[str]) -> str:
    """The line that resumes this job, quoted so that it runs when pasted into bash (a run directory named by
    its overrides holds ``=`` and ``,``: Hydra needs it quoted, and bash needs that quoting kept)."""
    keep = [a for a in overrides if not a.startswith(("paths.run_dir=", "ckpt_path=", "overwrite=", "hydra."))]
    return shell_line(["grelu-train", *keep, override("paths.run_dir", run_dir), "ckpt_path=last"])


def _job_overrides() -> list[str]:
    """This job's own overrides (in a multirun: its point, not the sweep's lists)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra
        return [a for a in sys.argv[1:] if not a.startswith("-")]


def _can_make_dirs_in(folder: Path) -> bool:
    """Whether a directory can be made here, tried for real (and removed): permission bits do not tell, e.g.
    for root on /proc or on a read-only mount."""
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".grelu-write-test.", dir=folder))
        return True
    except OSError:
        return False


def check_output_root(argv: list[str]) -> Path:
    """Hydra makes the run directory under ``paths.root`` before any of our code runs: check that it
    can, so an unwritable place gets one line instead of Hydra's traceback. Returns the deepest folder on
    the way that exists now."""
    explicit = next((override_value(a) for a in reversed(argv) if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))),
                    None)
    root = Path(explicit or next((override_value(a) for a in argv if a.startswith("paths.root=")), "runs"))
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not _can_make_dirs_in(existing):
        why = "is not a directory" if not existing.is_dir() else "is not writable"
        if explicit:
            _fail(MachineError(f"cannot write the run directory paths.run_dir={root}: {existing} {why}; choose "
                               "another paths.run_dir=... (or fix its permissions)"))
        _fail(MachineError(f"cannot create the run directory under paths.root={root}: {existing} {why}; choose "
                           "another paths.root=... (or fix its permissions)"))
    return existing


def check_overrides(argv: list[str]) -> None:
    """Compose the config once before Hydra does, so that an unknown key or a badly typed value gets
    one line instead of Hydra's report (Hydra's own flags and hydra.* keys are left to Hydra)."""
    if any(a.startswith("-") for a in argv):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from lightning_grelu.config_check import composition_error, validate

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[a for a in argv if not a.lstrip("+~").startswith("hydra.")])
    except (HydraException, OmegaConfBaseException) as e:
        line = composition_error(e, argv)
        _fail(ConfigError(line if " must be " in line or " parameter" in line else line + " (check the key and value; `grelu-train --cfg job` "
                          "prints every key)"))
    try:  # the values, before Hydra makes a run directory and before torch and Lightning are imported
        validate(cfg)
        if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda"):  # a GPU preset: torch alone tells
            from lightning_grelu.memory import check_devices

            check_devices(cfg.trainer)
        from lightning_grelu.run_dir import refuse_early

        refuse_early(cfg, EXPLICIT_RUN_DIR)  # a finished run, an unfinished one, a changed config, a missing ckpt
    except (ConfigError, MachineError) as e:
        _fail(e)


def explicit_run_dir(argv: list[str]) -> list[str]:
    """``paths.run_dir=DIR`` names the run directory itself: hand it to Hydra too (``hydra.run.dir``, or
    ``hydra.sweep.dir`` for a multirun, whose jobs go in DIR/<n>_...), so that Hydra makes no other."""
    given = [a for a in argv if a.startswith("paths.run_dir=")]
    if not given:
        return argv
    where = given[-1].split("=", 1)[1]
    at = argv.index(given[-1]) + 1  # beside it: after a flag (`--cfg job`) Hydra's parser takes no override
    if any(a in ("-m", "--multirun") for a in argv):
        return [a for a in argv[:at] if not a.startswith("paths.run_dir=")] + [f"hydra.sweep.dir={where}"] + [
            a for a in argv[at:] if not a.startswith("paths.run_dir=")]
    return [*argv[:at], f"hydra.run.dir={where}", *argv[at:]]


def main() -> None:
    global EXISTED, EXPLICIT_RUN_DIR
    EXPLICIT_RUN_DIR = any(a.startswith("paths.run_dir=") for a in sys.argv[1:])
    sys.argv = [sys.argv[0], *explicit_run_dir(sys.argv[1:])]
    EXISTED = check_output_root(sys.argv[1:])
    try:
        check_conf_path()  # GRELU_CONF_PATH: its folders exist and hide none of the package's options
    except ConfigError as e:
        _fail(e)
    # Check group choices before Hydra so that a typo gets one line, not Hydra's multi-line report.
    for arg in sys.argv[1:]:
        key, sep, value = arg.lstrip("+~").partition("=")
        # each option of a list (callbacks=[default,probes]) or of a multirun's choices (model=relu,grelu)
        for option in value.strip("[]").split(",") if sep and key in GROUPS else []:
            if option.strip() and option.strip() != "null":
                try:
                    check_group_choice(key, option.strip())
                except ConfigError as e:
                    _fail(e)
    check_overrides(sys.argv[1:])
    _hydra_main()
    report_multirun()


if __name__ == "__main__":
    main()
