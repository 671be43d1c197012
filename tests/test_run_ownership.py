"""A finished run's record is never overwritten or mixed: real grelu-train processes into one run directory.

Classes covered: a second command into a finished run (no flag, mistaken resumes of many kinds), an
unfinished run started over by accident, a damaged or foreign checkpoint, two commands at once, and a
resume that must equal the uninterrupted run in every recorded value."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GRELU_TRAIN, REPO, TINY, run_cli

BASE = [*TINY, "callbacks=default", "callbacks.model_checkpoint.every_n_epochs=5", "trainer.max_epochs=20"]
TIMING = ("wall_time_s", "attempts", "probe/seconds_to_eps", "seconds_to_eps", "run_dir", "memory/")


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file in the run directory (but the lock) and a digest of its bytes."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in csv.DictReader(f)]


def summary(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in s.items() if not k.startswith(TIMING)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    out = run_cli(*BASE, f"paths.run_dir={run_dir}")
    assert out.returncode == 0, out.stderr
    return run_dir


# A second command into a finished run: each is refused in one line and changes nothing.
REFUSED = [
    ([], "finished run"),                                            # the same command again
    (["seed=1"], "finished run"),                                    # another seed, no resume asked
    (["ckpt_path=last", "model.width=300"], "model.width: 200 -> 300"),
    (["ckpt_path=last", "model=relu"], "model"),
    (["ckpt_path=last", "model.lr=1e-4"], "model.lr"),
    (["ckpt_path=last", "data.n=12"], "data.n"),
    (["ckpt_path=last", "seed=3"], "seed"),
    (["ckpt_path=last", "trainer.precision=64-true"], "trainer.precision"),
    (["ckpt_path=last", "trainer.max_epochs=10"], "finished run"),   # shorter: would rewrite the record
    (["ckpt_path=last", "trainer.max_epochs=30"], "finished run"),   # longer: only with overwrite=true
    (["ckpt_path=last", "trainer.max_epochs=10", "overwrite=true"], "beyond trainer.max_epochs"),
    (["ckpt_path=last", "model.width=300", "overwrite=true"], "model.width"),
]


@pytest.mark.slow
@pytest.mark.parametrize("extra,needle", REFUSED, ids=[" ".join(e) or "again" for e, _ in REFUSED])
def test_a_finished_run_is_never_overwritten(finished, extra, needle):
    """... and told before torch and Lightning are imported (a fraction of a second), but where the
    checkpoint itself must be read (an epoch beyond trainer.max_epochs)."""
    before = snapshot(finished)
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "lightning_grelu.cli.train", *BASE,
                          f"paths.run_dir={finished}", *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WANDB_MODE": "offline"})
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.strip().splitlines() if not ln.startswith("import time:")]
    assert len(lines) == 1 and needle in lines[0], out.stderr[-3000:]
    assert snapshot(finished) == before
    imported = {ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")}
    assert "omegaconf" in imported  # the import log was read
    assert ("torch" in imported) == (needle == "beyond trainer.max_epochs"), needle


def test_resuming_a_finished_run_with_its_own_config_has_nothing_to_do(finished):
    """What a requeued cluster job that had finished does: exit 0, the summary printed, nothing written."""
    before = snapshot(finished)
    out = run_cli(*BASE, f"paths.run_dir={finished}", "ckpt_path=last")
    assert out.returncode == 0, out.stderr
    assert "nothing to do" in out.stderr and "completed" in out.stdout
    assert snapshot(finished) == before


@pytest.mark.slow
def test_overwrite_replaces_the_whole_record(tmp_path, finished):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    out = run_cli(*BASE, f"paths.run_dir={run_dir}", "overwrite=true", "trainer.max_epochs=12", "seed=1")
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["epoch0009.ckpt", "epoch0009.ckpt.sha256", "last.ckpt", "last.ckpt.sha256"]  # no last-v1
    assert [int(r["epoch"]) for r in rows(run_dir)] == list(range(12))
    assert summary(run_dir)["seed"] == 1 and "seed: 1" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_an_unfinished_run_is_resumed_or_replaced_never_restarted_by_accident(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli(*BASE, f"paths.run_dir={run_dir}", env={"GRELU_DIE_AT": "train_step:12"})
    assert out.returncode == -9
    before = snapshot(run_dir)
    again = run_cli(*BASE, f"paths.run_dir={run_dir}")
    assert again.returncode == 2 and "unfinished run" in again.stderr and "ckpt_path=last" in again.stderr
    assert snapshot(run_dir) == before
    assert run_cli(*BASE, f"paths.run_dir={run_dir}", "ckpt_path=last").returncode == 0


def damage_flip(p: Path):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def damage_truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def damage_replace_by_another_net(p: Path):
    other = p.parent.parent.parent / "other"
    assert run_cli(*BASE, "model.width=50", f"paths.run_dir={other}", "trainer.max_epochs=5").returncode == 0
    (p.parent / "foreign.ckpt").write_bytes((other / "checkpoints" / "last.ckpt").read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("damage", [damage_flip, damage_truncate, damage_replace_by_another_net],
                         ids=["flipped-bytes", "truncated", "another-net"])
def test_a_damaged_or_foreign_checkpoint_is_refused_before_any_write(tmp_path, damage):
    run_dir = tmp_path / "runs" / "run"
    out = run_cli(*BASE, f"paths.run_dir={run_dir}", env={"GRELU_DIE_AT": "train_step:12"})
    assert out.returncode == -9
    last = run_dir / "checkpoints" / "last.ckpt"
    damage(last)
    ckpt = run_dir / "checkpoints" / "foreign.ckpt"
    ckpt = ckpt if ckpt.exists() else last
    before = snapshot(run_dir)
    out = run_cli(*BASE, f"paths.run_dir={run_dir}", f"ckpt_path={ckpt}")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "checksum" in out.stderr or "another net" in out.stderr or "not a checkpoint" in out.stderr
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_two_commands_into_one_run_directory_one_is_refused_naming_the_holder(tmp_path):
    """Two grelu-train started together into one run directory: exactly one trains, the other says who
    holds the directory (or, if it came second, that the run is taken), and the record is one run's."""
    run_dir = tmp_path / "run"
    cmds = [[GRELU_TRAIN, *BASE, "trainer.max_epochs=400", f"seed={s}", f"paths.run_dir={run_dir}"] for s in (1, 2)]
    procs = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "WANDB_MODE": "offline"}) for c in cmds]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert len(loser.strip().splitlines()) == 1
    assert "in use by pid" in loser or "unfinished run" in loser or "finished run" in loser, loser  # by timing
    winner_seed = 1 + [p.returncode for p in procs].index(0)
    assert summary(run_dir)["seed"] == winner_seed and f"seed: {winner_seed}" in (run_dir / "config.yaml").read_text()
    assert len(rows(run_dir)) == 400


# Resume equals the uninterrupted run in every recorded value, also values logged once (steps_to_eps)
EPS = [*BASE, "eps=5.0", "trainer.max_epochs=30"]


@pytest.mark.slow
def test_resume_keeps_values_logged_once(tmp_path):
    full = tmp_path / "full"
    assert run_cli(*EPS, f"paths.run_dir={full}").returncode == 0
    reached = summary(full)["steps_to_eps"]
    assert reached is not None and reached < 15 and summary(full)["probe/steps_to_eps"] == reached
    part = tmp_path / "part"
    out = run_cli(*EPS, f"paths.run_dir={part}", env={"GRELU_DIE_AT": "train_step:22"})  # after eps, after epoch 20's ckpt
    assert out.returncode == -9
    assert run_cli(*EPS, f"paths.run_dir={part}", "ckpt_path=last").returncode == 0
    assert summary(part) | {"run_dir": None} == summary(full) | {"run_dir": None}
    assert rows(part) == rows(full)


@pytest.mark.slow
def test_last_ckpt_stays_the_newest_after_a_resume_that_changes_the_checkpoint_period(tmp_path):
    """Resuming with another callbacks.model_checkpoint.every_n_epochs wrote last-v1.ckpt and left last.ckpt at an
    older epoch, which a later ckpt_path=last then resumed."""
    import torch

    run_dir = tmp_path / "run"
    args = [*BASE, "trainer.max_epochs=30", f"paths.run_dir={run_dir}"]
    out = run_cli(*args, "callbacks.model_checkpoint.every_n_epochs=7", env={"GRELU_DIE_AT": "train_step:25"})
    assert out.returncode == -9
    out = run_cli(*args, "callbacks.model_checkpoint.every_n_epochs=4", "ckpt_path=last")
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert not [n for n in names if n.startswith("last-")], names
    epochs = {n: torch.load(run_dir / "checkpoints" / n, weights_only=False, map_location="cpu")["epoch"] for n in names}
    assert epochs["last.ckpt"] == max(epochs.values()) == 27
