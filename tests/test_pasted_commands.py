"""Every command line the suite prints runs when pasted into bash: the resume line of a run stopped by Ctrl-C
(its directory is named by its overrides: `=` and `,` in the path), and the README's grelu-train and
grelu-sweep lines (composed by the real commands with `--cfg job`)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GRELU_TRAIN, REPO, TINY

BIN = str(Path(sys.executable).parent)
BASH_ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "WANDB_MODE": "disabled"}


def pasted(line: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=BASH_ENV, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_ctrl_c_line_of_a_run_named_by_its_overrides_is_not_an_error_and_its_resume_command_pastes(tmp_path):
    args = [*TINY, "callbacks=default", "callbacks.model_checkpoint.every_n_epochs=500", "trainer.max_epochs=1000",
            f"paths.root={tmp_path}/runs"]
    p = subprocess.Popen([GRELU_TRAIN, *args], cwd=tmp_path, env=BASH_ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not list((tmp_path / "runs").glob("*/*/metrics.csv")):
        assert time.monotonic() - t0 < 120 and p.poll() is None, "training never started"
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    line, = err.strip().splitlines()
    assert line.startswith("grelu-train: stopped by SIGINT at epoch ") and "error" not in line
    run_dir, = (tmp_path / "runs").glob("*/*")
    assert "=" in run_dir.name and "," in run_dir.name  # named by its overrides
    s = json.loads((run_dir / "summary.json").read_text())
    shown = next(ln for ln in out.splitlines() if ln.split()[:1] == ["train/sse"])
    assert s["status"] == "interrupted" and s["train/sse"] is None
    assert re.search(rf"train/sse\s+\S+ \(the last epoch's: interrupted at epoch {s['epochs']}\)", shown), shown
    assert float(shown.split()[1]) == pytest.approx(s["train/sse_last_epoch"], rel=1e-5)
    first_wall = s["wall_time_s"]
    again = pasted(line.split("resume: ", 1)[1], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed" and s["epochs"] == 1000
    # the resumed run keeps counting its time: the total over both attempts, which it names
    walls = [float(r["wall_time_s"]) for r in csv.DictReader(open(run_dir / "metrics.csv", newline=""))]
    assert len(walls) == 1000 and all(b >= a for a, b in zip(walls, walls[1:])), "wall_time_s restarted"
    assert s["attempts"] == 2 and s["wall_time_s"] >= walls[-1] > 0.5 * first_wall


# Each suite command, pasted into bash, runs as a shell function that checks it with the real command
# without training: grelu-train/-sweep/-eval compose it (`--cfg job`; a `-m` line runs its jobs, tiny),
# grelu-reproduce parses it (`--list`), grelu-report parses it (its own parser). A line that fails is noted.
WRAPPERS = r"""
fail() { echo "$*" >> "$FAILED"; }
grelu-train() {
  if [[ " $* " == *" -m "* ]]; then
    command grelu-train "$@" trainer.max_epochs=1 data.n=4 data.d=4 model.width=8 callbacks=none paths.root=runs \
      >/dev/null 2>>"$FAILED.err" || fail "grelu-train $*"
  else command grelu-train "$@" --cfg job >/dev/null 2>>"$FAILED.err" || fail "grelu-train $*"; fi
}
grelu-sweep() { command grelu-sweep "$@" --cfg job >/dev/null 2>>"$FAILED.err" || fail "grelu-sweep $*"; }
grelu-eval() { command grelu-eval "$@" --cfg job >/dev/null 2>>"$FAILED.err" || fail "grelu-eval $*"; }
grelu-reproduce() { command grelu-reproduce "$@" --list >/dev/null 2>>"$FAILED.err" || fail "grelu-reproduce $*"; }
grelu-report() {
  python -c 'import sys; from lightning_grelu.cli.report import parse_args; parse_args(sys.argv[1:])' "$@" \
    2>>"$FAILED.err" || fail "grelu-report $*"
}
"""
CHECKED = ("grelu-train", "grelu-sweep", "grelu-eval", "grelu-reproduce", "grelu-report")


def readme_commands(path: Path) -> list[str]:
    """The indented code lines that call a suite command (a `\\` continues a line; a `for` runs to `done`),
    and the commands a result README says made it (`Made by `...``)."""
    out, held = [], ""
    for line in path.read_text().splitlines():
        if not line.startswith("    ") and not held:
            made = re.search(r"(?:Made|made) by `([^`]+)`", line)
            if made and made.group(1).startswith(CHECKED):
                out.append(made.group(1))
            continue
        held = f"{held}\n{line}" if held else line.strip()
        if held.endswith("\\") or (held.startswith("for ") and not re.search(r"\bdone\b", held)):
            continue
        if re.match(rf"(\w+=\S+\s+)*({'|'.join(CHECKED)})\b", held) or (held.startswith("for ") and any(
                c in held for c in CHECKED)):
            out.append(held)
        held = ""
    return out


README_LINES = [(p.relative_to(REPO).as_posix(), c) for p in [REPO / "README.md", *sorted(REPO.glob("results/**/README.md"))]
                for c in readme_commands(p)]


def test_every_suite_command_a_readme_shows_is_among_the_lines_run():
    """Each indented line of a README that starts with a suite command (after VAR=value prefixes) is part of a
    line the next test pastes: the reader above misses none (a count of lines would not notice a missed one)."""
    for path in [REPO / "README.md", *sorted(REPO.glob("results/**/README.md"))]:
        where = path.relative_to(REPO).as_posix()
        text = path.read_text()
        shown = [ln.strip() for ln in text.splitlines() if ln.startswith("    ")
                 and ln.split("#")[0].split() and any(w in CHECKED for w in ln.split("#")[0].split()[:3])]
        shown += [m for m in re.findall(r"[Mm]ade by `([^`]+)`", text) if m.startswith(CHECKED)]
        run = [c for p, c in README_LINES if p == where]
        assert all(any(s.rstrip("\\ ") in c for c in run) for s in shown), [s for s in shown if not any(
            s.rstrip("\\ ") in c for c in run)]
    assert [c for p, c in README_LINES if p == "README.md"]


@pytest.mark.parametrize("where,line", README_LINES, ids=[f"{p}:{c[:60]}" for p, c in README_LINES])
def test_every_readme_command_runs_when_pasted_into_bash(tmp_path, where, line):
    failed = tmp_path / "failed"
    out = subprocess.run(["bash", "-c", f"{WRAPPERS}\nset -e\n{line}\nwait"], cwd=tmp_path, capture_output=True, text=True,
                         env={**BASH_ENV, "FAILED": str(failed)}, timeout=300)
    errors = (tmp_path / "failed.err").read_text() if (tmp_path / "failed.err").exists() else ""
    assert out.returncode == 0 and not failed.exists(), f"{line}\n{out.stderr[-1500:]}\n{errors[-1500:]}"
