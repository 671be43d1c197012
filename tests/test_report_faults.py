"""grelu-report never replaces what is not a report, and a study it cannot read is named with its storage.

A report replaces its ``--out`` as a whole (built beside it, then swapped in): before, ``--out FILE`` replaced
the file and left ``.FILE.old-<pid>`` beside it, and ``--out`` naming an input directory (or any directory)
deleted it. Each refusal: one line, exit 2, nothing touched (every file's bytes and every link as before)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest

from test_report import REPORT, fixture_run


def snapshot(root: Path) -> dict:
    """Every path under root: a link's target, a file's bytes, or 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        out[key] = ("link", os.readlink(p)) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


def report(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([REPORT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture
def runs(tmp_path) -> Path:
    fixture_run(tmp_path / "runs", "a", "relu", 100, 0.5)
    fixture_run(tmp_path / "runs", "b", "grelu", 100, 1e-4)
    return tmp_path / "runs"


def a_file(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("my notes\n")
    return "notes.txt"


def a_link_to_a_report(tmp: Path) -> str:
    (tmp / "rep").mkdir()
    (tmp / "rep" / "report.md").write_text("# an old report\n")
    (tmp / "latest").symlink_to("rep")
    return "latest"


def a_dangling_link(tmp: Path) -> str:
    (tmp / "gone").symlink_to("nowhere")
    return "gone"


def another_directory(tmp: Path) -> str:
    (tmp / "home").mkdir()
    (tmp / "home" / "thesis.tex").write_text("\\section{}\n")
    return "home"


def the_input(tmp: Path) -> str:
    return "runs"


def a_folder_above_the_input(tmp: Path) -> str:
    return "."


def a_run_directory(tmp: Path) -> str:  # inside the input: harmless as a place, but a run is in it
    return "runs/a"


# (what --out is, a needle of the one line)
REFUSED = [(a_file, "is a file"), (a_link_to_a_report, "is a symbolic link"), (a_dangling_link, "is a symbolic link"),
           (another_directory, "holds other files than a report (thesis.tex)"), (the_input, "is the input runs"),
           (a_folder_above_the_input, "holds the input runs"), (a_run_directory, "holds other files than a report")]


@pytest.mark.parametrize("make,needle", REFUSED, ids=[m.__name__ for m, _ in REFUSED])
def test_an_out_that_is_not_a_report_directory_is_refused_and_nothing_is_touched(tmp_path, runs, make, needle):
    out_arg = make(tmp_path)
    before = snapshot(tmp_path)
    out = report(tmp_path, "runs", "--out", out_arg)
    assert out.returncode == 2, out.stderr[-3000:]
    line = one_line(out.stderr)
    assert line.startswith(f"grelu-report: error: --out {out_arg}: ") and needle in line, line
    assert snapshot(tmp_path) == before  # not a byte, not a link changed; no .NAME.old-PID left beside


def test_an_earlier_report_is_replaced(tmp_path, runs):
    assert report(tmp_path, "runs", "--out", "rep").returncode == 0
    (tmp_path / "rep" / "report.md").write_text("stale")
    again = report(tmp_path, "runs", "--out", "rep")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 runs" in (tmp_path / "rep" / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "runs"]  # no .rep.old-PID left


def test_a_missing_storage_folder_names_the_study_and_the_storage(tmp_path):
    url = f"sqlite:///{tmp_path}/missing/dir/study.db"
    out = report(tmp_path, "--study", "my_sweep", "--storage", url)
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert "--study my_sweep" in line and url in line and "does not exist" in line, line
    assert not (tmp_path / "missing").exists() and not (tmp_path / "report").exists()


def test_a_study_not_in_its_storage_names_the_studies_there(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="mine", storage=url)
    out = report(tmp_path, "--study", "yours", "--storage", url)
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert "--study yours" in line and url in line and "no study 'yours'" in line and "'mine'" in line, line


@pytest.mark.parametrize("scheme", ["sqlite:///", "journal://"])
def test_a_storage_that_is_not_a_study_file_is_one_line(tmp_path, scheme):
    (tmp_path / "notes.txt").write_text("not a database\n")
    before = snapshot(tmp_path)
    out = report(tmp_path, "--study", "s", "--storage", f"{scheme}{tmp_path}/notes.txt")
    assert out.returncode == 2, out.stderr[-3000:]
    line = one_line(out.stderr)
    assert "--study s" in line and "notes.txt" in line, line
    assert snapshot(tmp_path) == before
