"""`make gpu-check` without a GPU: its verdict logic on records in the formats grelu-bench and the
benchmarks write, its refusal where no GPU is visible, and grelu-bench's window spread and checks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402


def bench(case, mode, suite_ms, plain_ms, peak=None):
    return {"kind": "bench", "case": case, "mode": mode, "precision": "bf16-mixed", "suite_ms": suite_ms,
            "plain_ms": plain_ms, "suite_over_plain": suite_ms / plain_ms, "suite_peak_gb": peak}


def test_verdict_reads_the_records_and_judges_every_target(tmp_path):
    recs = [bench("cifar_d6_w10k_b4096", "relu", 25.0, 24.1), bench("cifar_d6_w10k_b4096", "grelu", 25.5, 25.1),
            bench("cifar_d6_w10k_b4096", "grelu_recompute", 33.0, 32.9), bench("small_fullbatch", "relu", 1.3, 1.05),
            bench("theory_width", "grelu", 56.0, 54.0, peak=70.0)]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (tmp_path / "conversion.jsonl").write_text(json.dumps({"benchmark": "conversion", "conversion_in_epochs": 3.5}) + "\n")
    rows = {name: (value, met) for name, value, _, met in gpu_check.verdict(tmp_path)}
    assert len(rows) == 8
    first = rows["d6 w10k b4096 bf16: suite time / plain time (>= 0.95x throughput)"]
    assert first[0] == pytest.approx(25.0 / 24.1) and first[1] is True  # 0.964x throughput: met
    assert rows["GReLU cached masks / ReLU step"] == (pytest.approx(1.02), False)
    assert rows["GReLU recomputed gates / ReLU step"][1] is False  # 1.32 > 1.30
    assert rows["small full-batch n=100 m=1000 L=4: suite / plain"][1] is False
    assert rows["theory width m=40,000: peak GB (target 60)"][0] == pytest.approx(70 * 2**30 / 1e9)
    assert rows["RandAugment step / plain step, batch 4096"] == (None, None)  # not measured: said so
    assert rows["GReLU->ReLU conversion, in training epochs"] == (3.5, False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_gpu_check_refuses_without_a_gpu(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr and not (tmp_path / "o").exists()


def test_grelu_bench_reports_the_spread_of_its_windows(tmp_path):
    bench_bin = str(Path(sys.executable).parent / "grelu-bench")
    out = subprocess.run([bench_bin, "--case", "tiny", "--device", "cpu", "--modes", "relu", "--warmup", "1",
                          "--steps", "2", "--repeats", "3", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    rec = [json.loads(ln) for ln in next(tmp_path.glob("*.jsonl")).read_text().splitlines()][1]
    assert rec["suite_ms_min"] <= rec["suite_ms"] <= rec["suite_ms_max"]
    assert rec["plain_ms_min"] <= rec["plain_ms"] <= rec["plain_ms_max"]
    assert "suite_ms_min" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("args,needle", [(["--reference", "/nowhere/gpu_anchor.py"], "no such file"),
                                         (["--out", "README.md/x"], "not a directory")])
def test_grelu_bench_checks_its_arguments_before_running(args, needle):
    bench_bin = str(Path(sys.executable).parent / "grelu-bench")
    out = subprocess.run([bench_bin, "--case", "tiny", *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("modes,nets", [(["grelu"], 2), (["relu", "grelu"], 8)])
def test_grelu_bench_draws_the_cross_mode_warm_up_nets_only_for_several_modes(modes, nets, monkeypatch):
    """Each net drawn costs minutes at the theory width (its host-side draws): one mode gets one per path."""
    from lightning_grelu import bench as bench_module

    built = []
    real = bench_module._net_and_module
    monkeypatch.setattr(bench_module, "_net_and_module", lambda *a, **k: built.append(a[0]) or real(*a, **k))
    rows = bench_module.run_case("tiny", modes, "32-true", torch.device("cpu"), 1, 1, 1)
    assert [r.mode for r in rows] == modes and len(built) == nets


def test_the_plan_fits_its_budget_and_starts_nothing_but_this_python(tmp_path):
    """The README's bounds: the steps before the theory width's fit the 480 s budget with room; no step's
    bound exceeds one device command; every command is this Python (-m or a script), never a console script."""
    args = gpu_check.argparse.Namespace(out=str(tmp_path), reference="r.py")
    steps = gpu_check.plan(args)
    first = steps[:[s.name for s in steps].index("bench-theory_width")]
    assert sum(s.bound for s in first) <= gpu_check.BUDGET - 30 and gpu_check.BUDGET == 480
    assert all(s.bound <= 540 for s in steps) and len({s.name for s in steps}) == len(steps) == 13
    assert all(s.argv[0] == sys.executable for s in steps if s.argv)  # install's argv is made when it runs
    assert [s.name for s in steps if not s.gpu] == ["install", "imports", "smoke", "pytest"]
