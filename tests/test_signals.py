"""Every stop is told truthfully: real SIGTERM (how SLURM pre-empts) and SIGINT (Ctrl-C) sent to real
grelu-train and grelu-reproduce processes. A signal during training ends the epoch, saves last.ckpt, exits
128 + N with one line saying how to resume; following that line (what a requeued job does) gives the
uninterrupted run's record exactly."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GRELU_TRAIN, REPO, TINY, run_cli

LONG = [*TINY, "callbacks=default", "callbacks.model_checkpoint.every_n_epochs=500", "trainer.max_epochs=1000"]  # a signal lands ~20 epochs in
TIMING = ("wall_time_s", "attempts", "probe/seconds_to_eps", "seconds_to_eps", "run_dir", "memory/", "error", "signal")
ENV = {**os.environ, "WANDB_MODE": "offline"}


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in csv.DictReader(f)]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def start(args: list[str], cmd: str = GRELU_TRAIN, **kw) -> subprocess.Popen:
    return subprocess.Popen([cmd, *args], cwd=kw.pop("cwd", REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, **kw)


def wait_for(path: Path, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    out = run_cli(*LONG, f"paths.run_dir={run_dir}")
    assert out.returncode == 0, out.stderr
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_the_epoch_and_exits_128_plus_n_and_its_resume_line_finishes_the_run(
        tmp_path, uninterrupted, sig):
    run_dir = tmp_path / "run"
    p = start([*LONG, f"paths.run_dir={run_dir}"])
    wait_for(run_dir / "metrics.csv")  # training is under way
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and signal.Signals(sig).name in lines[0] and "resume: grelu-train" in lines[0], err
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["signal"] == sig and 0 < s["epochs"] < 1000
    assert len(rows(run_dir)) == s["epochs"]  # every finished epoch is in the record ...
    import torch

    from lightning_grelu.callbacks.checkpoint_io import epochs_done

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert epochs_done(ckpt) == s["epochs"]  # ... and in last.ckpt: nothing since the last periodic one is lost
    resume = shlex.split(lines[0].split("resume: ", 1)[1])
    again = subprocess.run([GRELU_TRAIN, *resume[1:]], cwd=REPO, capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr
    assert rows(run_dir) == rows(uninterrupted)
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith(TIMING)}  # noqa: E731
    assert strip(summary(run_dir)) == strip(summary(uninterrupted))


@pytest.mark.slow
def test_a_second_signal_stops_at_once_and_the_run_still_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*LONG, "callbacks.model_checkpoint.every_n_epochs=50", f"paths.run_dir={run_dir}"]
    p = start(args)
    wait_for(run_dir / "checkpoints" / "last.ckpt")
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143 and len(err.strip().splitlines()) == 1, err
    assert summary(run_dir)["status"] == "interrupted"
    assert run_cli(*args, "ckpt_path=last").returncode == 0
    assert summary(run_dir)["status"] == "completed" and summary(run_dir)["steps"] == 1000


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_command_starts_exits_128_plus_n_in_one_line(tmp_path, sig):
    """The signal arrives at a fixed point (GRELU_DIE_AT=before_training:1:SIG: Hydra has made the run directory,
    training is not yet imported), not wherever torch's import time puts it: deterministic, and cheap."""
    name = signal.Signals(sig).name
    out = subprocess.run([GRELU_TRAIN, *LONG, f"paths.root={tmp_path / 'runs'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={**ENV, "GRELU_DIE_AT": f"before_training:1:{name}"})
    assert out.returncode == 128 + sig, (out.returncode, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and name in out.stderr, out.stderr
    assert list((tmp_path / "runs").glob("*/*"))  # the point is after Hydra made the run directory ...
    assert not list((tmp_path / "runs").rglob("summary.json"))  # ... and before anything of a run was written


def _finished(work: Path, engine: bool) -> list[Path]:
    """Run directories whose record says completed: a jobs target's ``work/<job>/``, a width scan's
    ``work/trials/<trial>/``."""
    dirs = (work / "trials").glob("*") if engine else work.glob("*")
    return [d for d in dirs if (d / "summary.json").exists()
            and json.loads((d / "summary.json").read_text())["status"] == "completed"]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["table2", "fig2a"])
def test_reproduce_under_sigterm_exits_143_keeps_finished_jobs_and_goes_on(tmp_path, target):
    """A jobs target (table2 on the CIFAR-10 fixture) and a width scan run by two workers (fig2a): SIGTERM once a
    run has finished -> 143, one line, no half results; the same command again reuses every finished run."""
    from tests.fixtures import write_cifar10

    cmd = str(Path(sys.executable).parent / "grelu-reproduce")
    if target == "table2":
        data = write_cifar10(tmp_path / "cifar", n=24, n_test=24)
        extra = ["--seeds", "1", "--override", f"data.data_dir={data}", "--override", "model.width=16",
                 "--override", "trainer.max_epochs=300"]
    else:  # long enough that a batch is still training when the first one has written its records; 2 seeds
        extra = ["--workers", "2", "--seeds", "2", "--override", "trainer.max_epochs=4000"]  # a batch: ~7 s
    args = [target, "--profile", "smoke", *extra, "--results", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    p = start(args, cmd=cmd, cwd=tmp_path)
    work = tmp_path / "work" / target / "smoke"
    engine = target == "fig2a"
    t0 = time.monotonic()
    while not _finished(work, engine):  # one run has finished
        assert time.monotonic() - t0 < 300 and p.poll() is None, p.poll()
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "SIGTERM" in err and "same command" in err, err
    assert not (tmp_path / "results" / target).exists()  # no half results
    done = {d.name: (d / "summary.json").stat().st_mtime_ns for d in _finished(work, engine)}
    assert done
    again = subprocess.run([cmd, *args], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=900)
    assert again.returncode == 0, again.stderr
    for name, mtime in done.items():  # a finished run is reused, not trained again
        d = work / "trials" / name if engine else work / name
        assert (d / "summary.json").stat().st_mtime_ns == mtime, name
    if not engine:
        assert again.stdout.count("done before, reused") >= len(done)


def test_two_reproductions_of_one_target_at_once_the_second_is_refused_naming_the_first(tmp_path):
    cmd = str(Path(sys.executable).parent / "grelu-reproduce")
    args = ["fig2a", "--profile", "smoke", "--results", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    first = start(args, cmd=cmd, cwd=tmp_path)
    lock = tmp_path / "work" / "fig2a" / "smoke" / ".lock"
    t0 = time.monotonic()
    while not (lock.exists() and lock.read_text().strip()):  # the first holds the target's work directory
        assert time.monotonic() - t0 < 120
        time.sleep(0.05)
    second = subprocess.run([cmd, *args], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr
    line = second.stderr.strip().splitlines()
    assert len(line) == 1 and f"pid {first.pid}" in line[0] and "grelu-reproduce fig2a" in line[0], second.stderr


REWRAP = r'''
import json, random, signal, sys
from pathlib import Path
from lightning_grelu.errors import classify, exit_code
from lightning_grelu.reproduce.jobs import compose
from lightning_grelu.signals import raise_on_signals
raise_on_signals()
compose(Path(sys.argv[1]), ["data.n=6"])  # the first compose loads Hydra's plugins
signal.signal(signal.SIGALRM, lambda s, f: signal.raise_signal(signal.SIGTERM))
rng, seen = random.Random(0), {}
for _ in range(int(sys.argv[2])):
    try:  # a real SIGTERM at a random moment of a real compose, as grelu-reproduce composes each job
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0005, 0.03))
        compose(Path(sys.argv[1]), ["data.n=6"])
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as e:
        key = f"{type(e).__name__} {classify(e)} {exit_code(e)}"
        seen[key] = seen.get(key, 0) + 1
print(json.dumps(seen))
'''


def test_a_signal_that_library_code_rewraps_while_it_unwinds_is_still_told_as_the_signal(tmp_path):
    """SIGTERM raises where the program is, inside Hydra too, and Hydra's unwinding can replace it (a
    ConfigCompositionException, an UnboundLocalError of a half-run ``finally``), which grelu-reproduce then
    reported as "a job's config does not compose", exit 2. Every outcome must be the signal: exit 143."""
    out = subprocess.run([sys.executable, "-c", REWRAP, str(tmp_path / "run"), "300"], capture_output=True,
                         text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(key.endswith(" signal 143") for key in seen), seen
    assert sum(n for key, n in seen.items() if not key.startswith("Interrupted ")) > 0, seen  # some were re-wrapped


@pytest.mark.slow
def test_a_signal_while_a_finished_run_writes_its_records_stops_the_command_before_its_next_job(tmp_path):
    """SIGTERM after a run's training, while it writes summary.json (GRELU_DIE_AT puts it exactly there): the
    run's records are whole, and the command stops: grelu-train exits 143 saying so, and grelu-reproduce does
    not start its next job (the signal used to be swallowed, and every later job ran). The same command again
    reuses the finished run."""
    env = {**ENV, "GRELU_DIE_AT": "summary:1:SIGTERM"}
    run_dir = tmp_path / "run"
    out = subprocess.run([GRELU_TRAIN, *TINY, f"paths.run_dir={run_dir}"], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 143, out.stderr
    line = out.stderr.strip().splitlines()
    assert len(line) == 1 and "SIGTERM" in line[0] and "finished" in line[0], out.stderr
    assert summary(run_dir)["status"] == "completed"

    from tests.fixtures import write_cifar10

    cmd = str(Path(sys.executable).parent / "grelu-reproduce")
    data = write_cifar10(tmp_path / "cifar", n=24, n_test=24)
    args = ["table2", "--profile", "smoke", "--seeds", "1", "--override", f"data.data_dir={data}", "--override",
            "model.width=16", "--override", "trainer.max_epochs=2", "--results", str(tmp_path / "results"),
            "--work", str(tmp_path / "work")]
    out = subprocess.run([cmd, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 143, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "same command" in out.stderr, out.stderr
    work = tmp_path / "work" / "table2" / "smoke"
    started = [d for d in work.iterdir() if (d / "overrides.json").exists()]
    assert [summary(d)["status"] for d in started] == ["completed"], started  # the next job never started
    assert not (tmp_path / "results" / "table2").exists()
    again = subprocess.run([cmd, *args], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("done before, reused") == 1, again.stdout


def ddp_ranks(pid: int) -> list[int]:
    """The DDP ranks a grelu-train process started (Lightning re-runs its command line, naming the rank)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids if "train_ddp_process_" in Path(f"/proc/{k}/cmdline").read_text()]


def alive(pid: int) -> bool:
    try:  # a zombie has ended; in a container nothing may reap it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "training"])
def test_a_killed_ddp_rank_0_takes_its_other_rank_with_it(tmp_path, when):
    """A DDP job on CPU whose rank 0 is SIGKILLed (a crash, the OOM killer) while its other rank starts, or
    mid-training: that rank must not stay behind, holding the terminal (here the pipe this test reads) open.
    Killed while the ranks started, it used to wait for its peer up to the process group's timeout (30 min)."""
    run_dir = tmp_path / "run"
    rank0 = start([*TINY, "trainer=ddp_cpu", "trainer.max_epochs=100000", "callbacks=default",
                   f"paths.run_dir={run_dir}"], cwd=tmp_path, start_new_session=True)
    try:
        t0, ranks = time.monotonic(), []
        while not ranks and time.monotonic() - t0 < 240:
            ranks = ddp_ranks(rank0.pid)
            time.sleep(0.02)
        (rank1,) = ranks
        if when == "training":
            wait_for(run_dir / "metrics.csv", timeout=240)
        os.kill(rank0.pid, signal.SIGKILL)
        rank0.communicate(timeout=120)  # the pipe closes: nothing else holds it
        t0 = time.monotonic()
        while alive(rank1) and time.monotonic() - t0 < 60:
            time.sleep(0.1)
        assert not alive(rank1)
    finally:
        try:
            os.killpg(rank0.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
