"""Speed paths give the same numbers as the simple paths (CPU, small sizes, fp32), and grelu-bench
runs at a tiny size and reports every field."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import TINY, compose_cfg
from lightning_grelu.bench import Result
from lightning_grelu.train import train


@pytest.mark.parametrize("model", ["relu", "grelu", "grelu_to_relu"])
def test_inner_steps_take_exactly_the_same_gd_steps(tmp_path, model):
    one = train(compose_cfg(tmp_path / "one", *TINY, f"model={model}", "trainer.max_epochs=40"))
    five = train(compose_cfg(tmp_path / "five", *TINY, f"model={model}", "model.inner_steps=5",
                             "trainer.max_epochs=8", "model.switch_epoch=4" if model == "grelu_to_relu" else "seed=0"))
    assert five["steps"] == one["steps"] == 40
    assert five["train/sse"] == pytest.approx(one["train/sse"], rel=1e-5)
    assert five["initial/train_sse"] == one["initial/train_sse"]


def test_inner_steps_do_not_coarsen_steps_to_eps(tmp_path):
    """The target is checked at every GD step inside the fused loop: K inner steps give the same step."""
    one = train(compose_cfg(tmp_path / "one", *TINY, "trainer.max_epochs=60", "eps=1.0"))
    five = train(compose_cfg(tmp_path / "five", *TINY, "model.inner_steps=5", "trainer.max_epochs=12", "eps=1.0"))
    assert one["steps_to_eps"] % 5 != 0  # a step between two epoch ends: the check that could fail
    assert five["steps_to_eps"] == one["steps_to_eps"]


def test_inner_steps_refuse_mini_batches(tmp_path):
    from lightning_grelu.errors import ConfigError
    with pytest.raises(ConfigError, match="needs full-batch data"):
        train(compose_cfg(tmp_path / "run", *TINY, "model.inner_steps=3", "data.batch_size=4"))
    assert not list(tmp_path.rglob("*"))  # refused before anything of a run was written


def test_grelu_bench_runs_on_cpu_and_reports_every_field(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lightning_grelu.cli.bench", "--case", "tiny", "--device", "cpu",
                          "--warmup", "2", "--steps", "3", "--repeats", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for column in ("suite_ms", "plain_ms", "suite_over_plain", "samples_per_s", "model_tflops", "frac_of_ceiling"):
        assert column in out.stdout
    lines = [json.loads(line) for line in (tmp_path / "tiny_32-true_inner1.jsonl").read_text().splitlines()]
    meta, rows = lines[0], [r for r in lines if r["kind"] == "bench"]
    assert meta["kind"] == "meta" and meta["hardware"] and meta["commit"] and meta["command"].startswith("grelu-bench")
    assert [r["mode"] for r in rows] == ["relu", "grelu", "grelu_recompute"]
    readme = (tmp_path / "README.md").read_text()
    assert "tiny_32-true_inner1.jsonl" in readme and meta["commit"] in readme and "grelu_recompute" in readme
    fields = set(Result.__dataclass_fields__)
    for r in rows:
        assert fields <= set(r)
        assert r["suite_ms"] > 0 and r["plain_ms"] > 0 and r["ceiling_tflops"] > 0
        assert r["suite_over_plain"] == pytest.approx(r["suite_ms"] / r["plain_ms"], rel=1e-9)
        assert r["samples_per_s"] == pytest.approx(r["batch"] / (r["suite_ms"] / 1e3), rel=1e-9)


@pytest.mark.slow
def test_a_second_grelu_bench_run_keeps_the_first_runs_records(tmp_path):
    """A measured run is never replaced: --out appends a run (its meta line, then its rows) to the case's file,
    and the README shows every run under its own command."""
    def bench(mode: str):
        out = subprocess.run([sys.executable, "-m", "lightning_grelu.cli.bench", "--case", "tiny", "--device", "cpu",
                              "--modes", mode, "--warmup", "1", "--steps", "1", "--repeats", "1", "--out", str(tmp_path)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]

    bench("relu")
    bench("grelu")
    lines = [json.loads(line) for line in (tmp_path / "tiny_32-true_inner1.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["meta", "bench", "meta", "bench"]
    assert [r["mode"] for r in lines if r["kind"] == "bench"] == ["relu", "grelu"]
    readme = (tmp_path / "README.md").read_text()
    assert "--modes relu" in readme and "--modes grelu" in readme
    assert readme.count("| tiny | relu |") == 1 and readme.count("| tiny | grelu |") == 1


def test_grelu_bench_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "lightning_grelu.cli.bench", "--steps", "0"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "--steps" in out.stderr


@pytest.mark.parametrize("script,fields", [("conversion", ["epoch_s", "conversion_s", "conversion_in_epochs"]),
                                           ("augmentation", ["step_s_plain", "step_s_augment", "ratio"])])
def test_benchmark_scripts_run_small_on_cpu_and_record_every_field(tmp_path, script, fields):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(repo / "benchmarks" / f"{script}.py"), "--small", "--device", "cpu",
                          "--precision", "32-true", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rec = json.loads((tmp_path / f"{script}.jsonl").read_text().splitlines()[-1])
    assert all(isinstance(rec[f], float) and rec[f] > 0 for f in fields)
    assert rec["commit"] and rec["hardware"] and "--small" in rec["command"]


def test_full_batch_grelu_unpacks_its_cached_gates_once_and_multiplies_in_the_values_dtype(tmp_path, monkeypatch):
    """Every epoch brings the same index tensor, so the gates are unpacked (and made 0/1 floats) once a run,
    not once a step; the run's numbers are those of bool masks unpacked every step (the earlier path)."""
    from lightning_grelu.nets import GateCache

    calls = []
    lookup = GateCache.lookup

    def counted(self, index, dtype=None):
        calls.append(dtype)
        return lookup(self, index, dtype)

    monkeypatch.setattr(GateCache, "lookup", counted)
    fast = train(compose_cfg(tmp_path / "fast", *TINY, "model=grelu", "trainer.max_epochs=20"))
    assert fast["steps"] == 20
    assert calls == [torch.float32, torch.float32]  # one for the 20 training steps, one for the summary's pass

    def every_step_bool(self, index, dtype=None):
        return lookup(self, index.clone(), None)  # a fresh index each time: no reuse, bool masks

    monkeypatch.setattr(GateCache, "lookup", every_step_bool)
    slow = train(compose_cfg(tmp_path / "slow", *TINY, "model=grelu", "trainer.max_epochs=20"))
    assert fast["train/sse"] == slow["train/sse"] and fast["initial/train_sse"] == slow["initial/train_sse"]


@pytest.mark.slow
def test_active_entries_benchmark_records_every_kind(tmp_path):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(repo / "benchmarks" / "active_entries.py"), "--small", "--widths", "64",
                          "--batches", "1", "2", "--repeats", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    recs = [json.loads(line) for line in (tmp_path / "active_entries.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in recs} == {"flops", "step", "matvec", "profile"}
    assert all(r["commit"] and r["hardware"] and "--small" in r["command"] for r in recs)
    steps = [r for r in recs if r["kind"] == "step"]
    assert [r["batch"] for r in steps] == [1, 2] and all(r["grelu_gathered_ms"] > 0 for r in steps)
    flops = [r for r in recs if r["kind"] == "flops" and r["model"] == "grelu"]
    assert all(0 < r["open_fwd"] < r["dense_fwd"] for r in flops)
    assert "GReLU open / ReLU open" in (tmp_path / "active_entries.md").read_text()


@pytest.mark.slow
def test_atlas_throughput_benchmark_records_the_protocol_sizes_and_ceiling(tmp_path):
    """benchmarks/atlas_throughput.py --quick: the three kinds of record, the same runs trained batched and one
    at a time reaching the same targets (the same protocol), and every GFLOP/s read against the ceiling."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(repo / "benchmarks" / "atlas_throughput.py"), "--quick",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=repo)
    assert out.returncode == 0, out.stderr[-2000:]
    recs = [json.loads(line) for line in (tmp_path / "atlas_throughput.jsonl").read_text().splitlines()]
    assert [r["case"] for r in recs[:2]] == ["ceiling", "protocol"] and {r["case"] for r in recs[2:]} == {"sizes"}
    assert all(r["commit"] and r["hardware"] and "--quick" in r["command"] for r in recs)
    ceiling, proto = recs[0]["matmul_gflops"], recs[1]
    assert ceiling > 0 and proto["ceiling_gflops"] == ceiling
    batched, alone = proto["batched"], proto["one_at_a_time"]
    assert batched["runs"] == alone["runs"] == 40 and batched["max_nets"] == 64 and alone["max_nets"] == 1
    # batching changes how the nets are computed, not what they do: in float32 the padded products round
    # differently, so a net at its target's edge may cross it a step apart; nothing more
    assert abs(batched["steps"] - alone["steps"]) <= 0.01 * alone["steps"]
    assert abs(batched["converged"] - alone["converged"]) <= 1
    assert proto["speedup_batched_vs_one_at_a_time"] == pytest.approx(alone["total_s"] / batched["total_s"], rel=0.02)
    sizes = recs[2:]
    assert {(r["m"], r["nets"]) for r in sizes} == {(m, k) for m in (16, 64, 128, 256) for k in (1, 8, 32)}
    # (the record rounds the ceiling to 0.1 GFLOP/s and the fraction to 3 digits)
    assert all(r["fraction_of_ceiling"] == pytest.approx(r["gflops"] / ceiling, rel=0.02, abs=2e-3) for r in sizes)
