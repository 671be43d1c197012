"""Bad input, as users meet it: every command, bad configs, bad data files, bad sweep specs and bad
arguments. Each gets one line on stderr (what is wrong and what to do), a non-zero exit, no traceback,
and nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import HEADER, sgemm_rows, write_cifar10, write_fashion_mnist

BIN = Path(sys.executable).parent
TINY = ["data.n=10", "data.d=10", "model.width=20", "model.depth=2", "trainer.max_epochs=2", "callbacks=none"]


def fmnist_truncated(d: Path) -> list[str]:
    write_fashion_mnist(d / "f")
    blob = (d / "f" / "train-images-idx3-ubyte.gz").read_bytes()
    (d / "f" / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    return ["data=fashion_mnist", f"data.data_dir={d / 'f'}"]


def fmnist_not_gzip(d: Path) -> list[str]:
    write_fashion_mnist(d / "f")
    (d / "f" / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>404 not found</html>")
    return ["data=fashion_mnist", f"data.data_dir={d / 'f'}"]


def cifar_corrupt(d: Path) -> list[str]:
    write_cifar10(d / "c")
    (d / "c" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02garbage")
    return ["data=cifar10", f"data.data_dir={d / 'c'}"]


def sgemm_bad_header(d: Path) -> list[str]:
    (d / "s").mkdir()
    rows = "".join(",".join(map(str, r)) + "\n" for r in sgemm_rows(20))
    (d / "s" / "sgemm_product.csv").write_text(",".join(h.upper() for h in HEADER[:-1]) + ",runtime\n" + rows)
    return ["data=sgemm", f"data.data_dir={d / 's'}"]


def corrupt_checkpoint(d: Path) -> list[str]:
    (d / "bad.ckpt").write_bytes(b"not a checkpoint")
    return [f"ckpt_path={d / 'bad.ckpt'}"]


def a_file_as_root(d: Path) -> list[str]:
    (d / "afile").write_text("x")
    return [f"paths.root={d / 'afile'}"]


def report_run(summary: str, metrics: bytes | None = None):
    def make(d: Path) -> list[str]:
        run = d / "runs" / "r1"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(summary)
        if metrics is not None:
            (run / "metrics.csv").write_bytes(metrics)
        return [str(d / "runs")]
    return make


def a_file(name: str, flag: str, suffix: str = ""):
    def make(d: Path) -> list[str]:
        (d / name).write_text("x")
        value = str(d / name) + suffix
        return [flag + value] if flag.endswith("=") else [flag, value]
    return make


def missing_storage(scheme: str):
    def make(d: Path) -> list[str]:  # a folder that does not exist (under this test's own tmp dir)
        return ["--storage", f"{scheme}{d / 'missing' / 'dir' / 'study.db'}"]
    return make


def empty_dir(name: str):
    def make(d: Path) -> list[str]:
        (d / name).mkdir()
        return [f"data={name}", f"data.data_dir={d / name}"]
    return make


# (command, arguments, a needle the one line must hold, a function preparing files -> extra arguments)
CASES = [
    ("grelu-train", ["model.width=0"], "model.width", None),
    ("grelu-train", ["model.depth=0"], "model.depth", None),
    ("grelu-train", ["model.lr=0"], "model.lr", None),
    ("grelu-train", ["model.lr=-1e-3"], "model.lr", None),
    ("grelu-train", ["model=resnet"], "unknown model 'resnet'", None),
    ("grelu-train", ["data=imagenet"], "unknown data 'imagenet'", None),
    ("grelu-train", ["model=grelu_to_relu", "model.switch_epoch=500"], "model.switch_epoch", None),
    ("grelu-train", ["model=grelu_to_relu", "model.switch_epoch=0"], "model.switch_epoch", None),
    ("grelu-train", ["data.n=0"], "data.n", None),
    ("grelu-train", ["trainer.max_epochs=0"], "trainer.max_epochs", None),
    ("grelu-train", ["ckpt_path=/no/such.ckpt"], "ckpt_path", None),
    ("grelu-train", ["model.gate_init=sideways"], "model.gate_init", None),
    ("grelu-train", ["model.inner_steps=4", "data.batch_size=5"], "needs full-batch data", None),
    ("grelu-train", ["data=synthetic", "data.d_in=0"], "data.d_in", None),
    ("grelu-train", ["model.widht=3"], "model.widht", None),
    ("grelu-train", ["model.width=wide"], "model.width", None),
    ("grelu-train", [], "not a checkpoint", corrupt_checkpoint),
    ("grelu-train", [], "is not a directory", a_file_as_root),
    ("grelu-train", [], "train-images-idx3-ubyte", empty_dir("fashion_mnist")),
    ("grelu-train", [], "train-images-idx3-ubyte", fmnist_truncated),
    ("grelu-train", [], "train-labels-idx1-ubyte", fmnist_not_gzip),
    ("grelu-train", [], "data_batch_3", cifar_corrupt),
    ("grelu-train", [], "cifar-10-batches-py", empty_dir("cifar10")),
    ("grelu-train", [], "are not SGEMM's", sgemm_bad_header),
    ("grelu-train", [], "sgemm_product.csv", empty_dir("sgemm")),
    ("grelu-sweep", ["sweep.pruner=hyperband"], "sweep.pruner", None),
    ("grelu-sweep", ["sweep.objectives=[]"], "sweep.objectives is empty", None),
    ("grelu-sweep", ["sweep.space={model.width: {type: int, low: 300, high: 4}}"], "empty range", None),
    # a trial config that cannot be built (the base's experiment sets data.n and data.d): refused before any claim
    ("grelu-sweep", ["sweep.trial_overrides=['data=fashion_mnist','data.val_size=10000000','trainer.max_epochs=1']"],
     "data.d and data.n are not parameters of data=fashion_mnist", None),
    ("grelu-reproduce", ["table9"], "invalid choice: 'table9'", None),
    ("grelu-reproduce", ["fig2a", "--seeds", "0"], "--seeds", None),
    ("grelu-bench", ["--case", "huge"], "invalid choice: 'huge'", None),
    ("grelu-report", ["/no/such/runs"], "no such directory", None),
]

# The wider table (slow: one real command each): every class of bad input in every command.
MORE = [
    # values out of range or of the wrong type, in every group: one schema (config_check.SCHEMA)
    ("grelu-train", ["trainer.precision=17-true"], "trainer.precision", None),
    ("grelu-train", ["trainer.precision=fp8"], "trainer.precision", None),
    ("grelu-train", ["trainer.accelerator=tpu"], "trainer.accelerator", None),
    ("grelu-train", ["trainer.devices=0"], "trainer.devices", None),
    ("grelu-train", ["trainer.max_epochs=1.5"], "trainer.max_epochs", None),
    ("grelu-train", ["trainer.max_epochs=-3"], "trainer.max_epochs", None),
    ("grelu-train", ["model.momentum=-1"], "model.momentum", None),
    ("grelu-train", ["model.momentum=1"], "model.momentum", None),
    ("grelu-train", ["model.weight_decay=-0.1"], "model.weight_decay", None),
    ("grelu-train", ["model.weight_decay=nan"], "model.weight_decay", None),
    ("grelu-train", ["model.lr=inf"], "model.lr", None),
    ("grelu-train", ["model.lr=nan"], "model.lr", None),
    ("grelu-train", ["model.lr=true"], "model.lr", None),
    ("grelu-train", ["model.lr_scale=0"], "model.lr_scale", None),
    ("grelu-train", ["model.lr_policy=adaptive"], "model.lr_policy", None),
    ("grelu-train", ["model.optimizer=lbfgs"], "model.optimizer", None),
    ("grelu-train", ["model.inner_steps=0"], "model.inner_steps", None),
    ("grelu-train", ["model.depth=2.5"], "model.depth", None),
    ("grelu-train", ["model.train_io=maybe"], "model.train_io", None),
    ("grelu-train", ["model=grelu_to_relu", "model.ridge=-1"], "model.ridge", None),
    ("grelu-train", ["model=grelu_to_relu", "model.conversion_target=magic"], "conversion_target", None),
    ("grelu-train", ["seed=-1"], "seed", None),
    ("grelu-train", ["seed=4294967296"], "seed", None),
    ("grelu-train", ["seed=abc"], "seed", None),
    ("grelu-train", ["eps=nan"], "eps", None),
    ("grelu-train", ["eps=-1"], "eps", None),
    ("grelu-train", ["eps=inf"], "eps", None),
    ("grelu-train", ["eps_relative=yes"], "eps_relative", None),
    ("grelu-train", ["stop_at_eps=1"], "stop_at_eps", None),
    ("grelu-train", ["overwrite=please"], "overwrite", None),
    ("grelu-train", ["step_budget=forever"], "step_budget", None),
    ("grelu-train", ["step_budget=theorem", "step_budget_scale=0"], "step_budget_scale", None),
    ("grelu-train", ["data.batch_size=0"], "data.batch_size", None),
    ("grelu-train", ["data.d=-2"], "data.d", None),
    ("grelu-train", ["data.n_val=-1"], "data.n_val", None),
    ("grelu-train", ["data=synthetic", "data.n=0"], "data.n", None),
    ("grelu-train", ["model.width=1000000"], "memory", None),
    ("grelu-train", ["trainer=gpu"], "no CUDA GPU", None),
    ("grelu-train", ["trainer=ddp", "trainer.devices=4"], "no CUDA GPU", None),
    ("grelu-train", ["experiment=ackley_theory_width"], "no CUDA GPU", None),
    ("grelu-train", ["ckpt_path=last", "model.width=0"], "model.width", None),
    # keys a group's class does not take: refused before anything is built
    ("grelu-train", ["experiment=ackley_small", "data=fashion_mnist"], "data.d and data.n are not parameters", None),
    ("grelu-train", ["model=relu", "+model.gate_init=copy"], "model.gate_init is not a parameter of model=relu", None),
    ("grelu-train", ["callbacks=default", "+callbacks.progress.bogus=1"], "callbacks.progress.bogus is not a parameter",
     None),
    ("grelu-train", ["+callbacks.mine.every_s=1"], "callbacks.mine has no _target_", None),
    # sweeps: specs of the wrong shape or values
    ("grelu-sweep", ["sweep.space=model.width"], "sweep.space must be a mapping", None),
    ("grelu-sweep", ["sweep.space={model.width: 5}"], "sweep.space.model.width must be a mapping", None),
    ("grelu-sweep", ["sweep.objectives=train/sse"], "sweep.objectives must be a list", None),
    ("grelu-sweep", ["sweep.base=experiment"], "sweep.base must be a list", None),
    ("grelu-sweep", ["sweep.n_trials=0"], "sweep.n_trials", None),
    ("grelu-sweep", ["sweep.db_timeout_s=0"], "sweep.db_timeout_s", None),
    ("grelu-sweep", ["sweep.sampler=cmaes"], "sweep.sampler", None),
    ("grelu-sweep", ["sweep.storage=redis://x"], "sweep.storage", None),
    ("grelu-sweep", ["sweep.trial_overrides=['trainer=gpu']"], "no CUDA GPU", None),
    ("grelu-sweep", ["sweep.trial_overrides=['model.momentum=-1']"], "model.momentum", None),
    ("grelu-sweep", ["sweep.space={model.lr: {type: float, low: 0, high: 1, log: true}}"], "log range", None),
    ("grelu-sweep", [], "is not writable", a_file("afile", "sweep.out_dir=", "/out")),
    ("grelu-sweep", ["sweep.space={model: {type: categorical, choices: [grelu, relu]}}",  # checked at each choice
                     "sweep.base=['experiment=ackley_small','++model.gate_init=copy']"],
     "model.gate_init is not a parameter of model=relu", None),
    # reproduce: a results or work root that cannot take results; a GPU profile without a GPU
    ("grelu-reproduce", ["fig2a", "--profile", "paper"], "no CUDA GPU", None),
    ("grelu-reproduce", ["fig2a", "--override", "trainer=gpu"], "no CUDA GPU", None),
    ("grelu-reproduce", ["fig2a", "--override", "model.momentum=-1"], "model.momentum", None),
    ("grelu-reproduce", ["fig2a", "--part", "3/2"], "--part", None),
    ("grelu-reproduce", ["table2-fmnist", "--override", "+data.n=5"], "data.n is not a parameter of data=fashion_mn",
     None),  # a job's config that cannot be built, before any job (check_data)
    ("grelu-reproduce", ["fig2a", "--override", "data=fashion_mnist"], "are not parameters of data=fashion_mnist",
     None),  # a width scan's series, before its study is opened (the engine)
    ("grelu-reproduce", ["fig2a"], "is not a directory", a_file("afile", "--results")),
    ("grelu-reproduce", ["fig2a"], "is not a directory", a_file("afile", "--work", "/w")),
    # bench: arguments checked before the benchmark runs
    ("grelu-bench", ["--precision", "fp12"], "--precision", None),
    ("grelu-bench", ["--steps", "0"], "--steps", None),
    ("grelu-bench", ["--reference", "/no/such/script.py"], "--reference", None),
    ("grelu-bench", [], "--out", a_file("afile", "--out", "/sub")),
    # report: records that are not records; a storage that does not exist is not created
    ("grelu-report", [], "not a run summary", report_run("null")),
    ("grelu-report", [], "not a run summary", report_run("[1, 2]")),
    ("grelu-report", [], "not a CSV file", report_run('{"status": "completed"}', bytes(range(256)) * 4)),
    ("grelu-report", [], "not a run's metrics.csv", report_run('{"status": "completed"}', b"a,b\n1,2,3,4\n")),
    ("grelu-report", ["--study", "s"], "does not exist", missing_storage("sqlite:///")),
    ("grelu-report", ["--study", "s"], "does not exist", missing_storage("journal://")),
    ("grelu-report", ["--study", "s"], "--study s --storage", missing_storage("sqlite:///")),  # names the study
]


def _ids(cases):
    return [f"{i:02d}-{c}-{' '.join(a) or (p.__name__ if p else '')}" for i, (c, a, _, p) in enumerate(cases)]


@pytest.mark.parametrize("command,args,needle,prepare", CASES, ids=_ids(CASES))
def test_bad_input_gets_one_clear_line_and_exit_2(tmp_path, command, args, needle, prepare):
    check_bad_input(tmp_path, command, args, needle, prepare)


@pytest.mark.slow
@pytest.mark.parametrize("command,args,needle,prepare", MORE, ids=_ids(MORE))
def test_more_bad_input_gets_one_clear_line_and_exit_2(tmp_path, command, args, needle, prepare):
    check_bad_input(tmp_path, command, args, needle, prepare)


def check_bad_input(tmp_path, command, args, needle, prepare):
    files = tmp_path / "files"
    files.mkdir()
    extra = prepare(files) if prepare else []
    work = tmp_path / "work"
    work.mkdir()
    argv = [str(BIN / command)]
    if command == "grelu-train":  # a tiny problem first, the bad input after it (the last value wins)
        argv += TINY if not any(a.startswith("data=") for a in args + extra) else ["trainer.max_epochs=1"]
    argv += [*args, *extra]
    if command == "grelu-train":
        if not any(a.startswith("paths.root=") for a in extra):
            argv.append(f"paths.root={work / 'runs'}")
    if command == "grelu-sweep" and not any(a.startswith("sweep.out_dir=") for a in extra):
        argv.append(f"sweep.out_dir={work / 'sweep'}")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("HYDRA_FULL_ERROR", None)
    out = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, (out.returncode, out.stderr[-1500:])
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert not [p for p in work.rglob("*") if p.is_file()], "a bad input left files behind"
    assert not (files / "missing").exists(), "a reader created the storage's folder"
