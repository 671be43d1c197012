"""The bare-GPU-machine run, rehearsed on this CPU machine: a copy of the checkout, a Python with only the GPU
image's packages (tests/bare_machine.py), the wheel folder benchmarks/offline_wheels.py makes, pip with
--no-index and no network, no CUDA. The README's command must install what is missing, pass every step that
needs no GPU, and skip each GPU step in one line."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bare_machine import bare_python

REPO = Path(__file__).resolve().parents[1]
GPU_STEPS = ["bench-small_fullbatch", "bench-sgemm_d10_w4096", "bench-cifar_d6_w10k", "bench-cifar_d6_w10k_b4096",
             "conversion", "augmentation", "bench-theory_width", "pytest-theory_width", "reference"]
# 2 shared cores here against the GPU machine's 16: the steps that run get room; the command is the README's
SLOW_HERE = ["--bound", "install=300", "--bound", "imports=120", "--bound", "smoke=180", "--bound", "pytest=300",
             "--budget", "900"]

COMMIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # bounds in seconds: one after another (conftest.together)


def checkout_copy(dest: Path) -> Path:
    """What travels to the GPU machine: the files git tracks or would track, nothing ignored."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    root = tmp_path_factory.mktemp("bare")
    repo = checkout_copy(root / "checkout")
    wheels = subprocess.run([sys.executable, str(REPO / "benchmarks" / "offline_wheels.py"), "--from-installed",
                             str(repo / ".whl")], capture_output=True, text=True, timeout=300)
    assert wheels.returncode == 0, wheels.stderr
    py = bare_python(root / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(GRELU_COMMIT=COMMIT, PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1", CUDA_VISIBLE_DEVICES="",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", no_proxy="")  # no network
    return repo, py, env


def test_the_bare_python_lacks_what_the_wheels_bring(machine):
    repo, py, env = machine
    code = ("import importlib.util as u; print(*[m for m in ['torch', 'lightning', 'numpy', 'scipy', 'pandas', "
            "'matplotlib', 'pytest', 'hypothesis', 'pip', 'hydra', 'optuna', 'wandb', 'psycopg', 'lightning_grelu'] "
            "if u.find_spec(m)])")
    have = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, cwd=repo.parent)
    assert have.stdout.split() == ["torch", "lightning", "numpy", "scipy", "pandas", "matplotlib", "pytest",
                                   "hypothesis", "pip"], have.stderr


def test_gpu_check_installs_offline_runs_every_cpu_step_and_skips_each_gpu_step(machine):
    repo, py, env = machine
    cmd = [str(py), "benchmarks/gpu_check.py", "--wheels", ".whl", "--rehearse", "--out", "runs/rehearsal"]
    paper = repo / "results" / "speed" / "paper" / "gpu_check.txt"
    before = paper.read_text() if paper.exists() else None
    out = subprocess.run(cmd + SLOW_HERE, capture_output=True, text=True, env=env, cwd=repo, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert f"commit {COMMIT}," in out.stdout  # the copy has no .git: GRELU_COMMIT names it
    wheels = len(list((repo / ".whl").glob("*.whl")))
    assert next(ln for ln in lines if " install " in ln).startswith("ok")
    assert f"{wheels} wheels into .pysite (0 already there)" in out.stdout
    for step in ("imports", "smoke", "pytest"):
        assert any(ln.startswith("ok") and f" {step} " in ln + " " for ln in lines), step
    for step in GPU_STEPS:  # one line each, first on the run's progress, then in the summary
        hits = [ln for ln in lines if f" {step} " in ln + " "]
        assert len(hits) == 2 and all(ln.startswith("skip") and "needs a CUDA GPU" in ln for ln in hits), hits
    pytest_log = (repo / "runs" / "rehearsal" / "logs" / "pytest.log").read_text()
    assert re.search(r"^\d+ skipped, \d+ deselected in", pytest_log, re.M)  # every test module imported
    assert (repo / ".pysite" / "hydra").is_dir() and (repo / ".pysite" / "wandb").is_dir()
    verdict = (repo / "runs" / "rehearsal" / "gpu_check.txt").read_text()
    assert verdict.count("not measured") == 8
    assert (paper.read_text() if paper.exists() else None) == before  # a rehearsal never touches the GPU verdict
    # run again, as a later device command on a still-warm machine does: nothing is installed twice
    again = subprocess.run(cmd + SLOW_HERE + ["--only", "imports"], capture_output=True, text=True, env=env, cwd=repo,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"nothing missing: {wheels} wheels already installed" in again.stdout


def test_a_step_past_its_bound_is_stopped_the_rest_run_and_its_printed_line_finishes_it(machine):
    repo, py, env = machine
    cmd = [str(py), "benchmarks/gpu_check.py", "--wheels", ".whl", "--rehearse", "--out", "runs/bounded",
           "--only", "imports", "smoke", "--bound", "imports=1", "--bound", "smoke=180"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo, timeout=600)
    assert out.returncode == 1, out.stdout[-3000:]
    lines = out.stdout.splitlines()
    assert any(ln.startswith("TIME") and " imports " in ln and "stopped at its 1 s bound" in ln for ln in lines)
    assert any(ln.startswith("ok") and " smoke " in ln + " " for ln in lines)  # the next step still ran
    rerun = [ln.strip() for ln in lines if "--only imports" in ln]
    assert len(rerun) == 1 and "--bound imports=540" in rerun[0]
    again = subprocess.run(["bash", "-c", rerun[0]], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and any(ln.startswith("ok") and " imports " in ln + " "
                                         for ln in again.stdout.splitlines()), again.stdout[-3000:]


def test_the_gpu_tests_start_the_suite_without_console_scripts(machine, tmp_path):
    """pip --target puts no grelu-train beside the interpreter: conftest's cli() falls back to python -m."""
    repo, py, env = machine
    install = subprocess.run([str(py), "benchmarks/gpu_check.py", "--wheels", ".whl", "--rehearse", "--out",
                              "runs/cli", "--only", "install"], capture_output=True, text=True, env=env, cwd=repo,
                             timeout=600)
    assert install.returncode == 0, install.stdout[-2000:]
    code = ("import sys; from conftest import TINY, cli, run_cli; print(cli('grelu-train')); "
            f"out = run_cli(*TINY, 'trainer.max_epochs=2', 'paths.run_dir={tmp_path / 'run'}'); "
            "print(out.returncode, out.stderr[-2000:])")
    path = os.pathsep.join([str(repo / "tests"), str(repo), str(repo / ".pysite")])
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env={**env, "PYTHONPATH": path},
                         cwd=repo, timeout=600)
    assert out.stdout.splitlines()[0] == str([str(py), "-m", "lightning_grelu.cli.train"]), out.stdout + out.stderr
    assert out.stdout.splitlines()[1].startswith("0"), out.stdout
    assert (tmp_path / "run" / "summary.json").exists()
