"""Shared test helpers: compose the real Hydra config into a temporary run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lightning_grelu.config_check import CONF_DIR
from postgres_server import postgres, postgres_server  # noqa: F401  (fixtures: a database per test, one server)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Under pytest-xdist the workers share the cores: each torch process here and in the commands it starts gets its
    # share of threads (read before torch is imported). OpenMP threads beyond the cores spin against each other:
    # at load 9 on 2 cores a width-64 Fashion-MNIST epoch took 93 s with 2 threads and 13 s with 1.
    _share = str(max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("OMP_NUM_THREADS", _share)
    os.environ.setdefault("MKL_NUM_THREADS", _share)
REPO = Path(__file__).resolve().parents[1]
GRELU_TRAIN = str(Path(sys.executable).parent / "grelu-train")


def cli(command: str) -> list[str]:
    """The argv that starts a console script however the suite was installed: the script beside this
    Python (a venv), else ``python -m`` its module (a checkout on PYTHONPATH, as on the bare GPU machine,
    where pip --target puts no script beside the interpreter)."""
    script = Path(sys.executable).parent / command
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "lightning_grelu.cli." + command.removeprefix("grelu-")]

# A tiny Ackley problem at its theory width m = n^2 L, fast enough for every test.
TINY = ["data.n=10", "data.d=10", "model.width=200", "model.depth=2", "model.lr=3e-5",
        "trainer.max_epochs=30", "callbacks=none"]


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need CUDA: without it they are skipped, and say why."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none is visible here); run `make test-gpu` on a GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def together(module: str) -> bool:
    """Whether a test module's tests must share one pytest-xdist worker: it makes a module-scoped fixture (an
    uninterrupted run, an atlas: made once, not once per worker) or is marked `serial` (wall-clock bounds)."""
    try:
        text = (Path(__file__).parent.parent / module).read_text()
    except OSError:
        return False
    return 'scope="module"' in text or "pytest.mark.serial" in text


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs `-n auto --dist loadgroup`. pytest-xdist 3.8 groups by renaming a test's node id, which
    pytest 9 no longer allows (its xdist_group marks are silently ignored), so the grouping is done here: each
    module that must stay together (see `together`) is one unit of work, every other test its own unit; the
    biggest units start first."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    modules: dict[str, bool] = {}

    class ModuleOrTest(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module not in modules:
                modules[module] = together(module)
            return module if modules[module] else nodeid

    return ModuleOrTest(config, log)


def compose_cfg(run_dir: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"paths.run_dir={run_dir}", *overrides])


@pytest.fixture
def cfg_for(tmp_path):
    def make(*overrides: str, name: str = "run"):
        return compose_cfg(tmp_path / name, *overrides)
    return make


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run grelu-train in a subprocess, as a user would."""
    full_env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    try:
        return subprocess.run([*cli("grelu-train"), *args], cwd=cwd or REPO, env=full_env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # say what it printed before it hung, not only that it did
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(f"grelu-train {' '.join(args)} did not end in {timeout} s; its stderr ended:\n{err[-3000:]}")
