"""grelu-eval: a checkpoint scored on its run's data gives exactly the run's summary numbers (same
code path), on other data other numbers, into a record that is never overwritten; bad input is one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, run_cli

GRELU_EVAL = str(Path(sys.executable).parent / "grelu-eval")


def grelu_eval(*args, cwd):
    return subprocess.run([GRELU_EVAL, *args], cwd=cwd, env={**os.environ, "WANDB_MODE": "disabled"},
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_eval_of_a_runs_last_checkpoint_gives_its_summary_and_never_overwrites(tmp_path):
    run = tmp_path / "run"
    out = run_cli(*TINY, "callbacks=default", "data.n_test=12", f"paths.run_dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((run / "summary.json").read_text())
    ckpt = run / "checkpoints" / "last.ckpt"

    first = grelu_eval(f"ckpt_path={ckpt}", "splits=[train,test]", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = run / "eval" / "last.json"
    record = json.loads(written.read_text())
    for k in ("train/sse", "train/mse", "test/sse", "test/mse"):  # the summary's numbers, by the same code
        assert record[k] == pytest.approx(summary[k], rel=1e-6), k
    assert record["n_train"] == 10 and record["n_test"] == 12 and record["epochs"] == summary["epochs"]
    assert str(written) in first.stdout and not list(tmp_path.glob("outputs")) and not (tmp_path / ".hydra").exists()

    before = written.read_bytes()
    again = grelu_eval(f"ckpt_path={ckpt}", "splits=[train,test]", cwd=tmp_path)  # a finished result stays
    assert again.returncode == 2 and "exists" in again.stderr and "overwrite=true" in again.stderr
    assert written.read_bytes() == before

    fresh = grelu_eval(f"ckpt_path={ckpt}", "data.data_seed=7", "splits=[train]", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    other = json.loads((run / "eval" / "last-data.data_seed=7.json").read_text())
    assert other["train/sse"] != pytest.approx(summary["train/sse"], rel=1e-3)  # other samples, other loss
    assert other["config"]["data"]["data_seed"] == 7 and other["config"]["model"]["width"] == 200


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", [
    ([], "ckpt_path is missing"),
    (["ckpt_path=/nonexistent/last.ckpt"], "does not exist"),
    (["ckpt_path=RUN", "model.width=3"], "the model is the checkpoint's"),
    (["ckpt_path=RUN", "splits=[val]"], "no val split"),
    (["ckpt_path=RUN", "data.d=3"], "features"),
])
def test_eval_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle, tiny_checkpoint):
    args = [a.replace("RUN", str(tiny_checkpoint)) for a in args]
    before = sorted(tiny_checkpoint.parent.parent.rglob("*"))
    out = grelu_eval(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert sorted(tiny_checkpoint.parent.parent.rglob("*")) == before and not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    out = run_cli(*TINY, "callbacks=default", "trainer.max_epochs=3", f"paths.run_dir={run}")
    assert out.returncode == 0, out.stderr
    return run / "checkpoints" / "last.ckpt"
