"""`make gpu-check`: the GPU path proven in one command (under ~10 minutes on one H100).

    python benchmarks/gpu_check.py [--out results/speed/paper] [--reference PATH] [--skip-tests]

1. the GPU tests (`pytest -m gpu`);
2. `grelu-bench` on every case (bf16-mixed; the theory width in 32-true), with the plain-PyTorch
   reference loop (`benchmarks/reference/gpu_anchor.py`, or --reference PATH) run once beside them;
3. `benchmarks/conversion.py` and `benchmarks/augmentation.py` at the paper's sizes;
then writes everything to --out (jsonl files and their README, with command, commit, GPU, driver and
torch version) and prints a one-screen verdict: each speed target met or missed, with its ratio.
Exit 0 when every step ran (a missed target is a finding, not a failure), 1 when a step failed,
2 when no GPU is visible.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from lightning_grelu.bench import hardware

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CASES = [("tiny", "bf16-mixed"), ("small_fullbatch", "bf16-mixed"), ("cifar_d6_w10k", "bf16-mixed"),
         ("cifar_d6_w10k_b4096", "bf16-mixed"), ("sgemm_d10_w4096", "bf16-mixed"), ("theory_width", "32-true")]


def run(cmd: list[str], log: list[str], timeout: int = 900) -> bool:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    ok = out.returncode == 0
    log.append(f"{'ok  ' if ok else 'FAIL'} {time.perf_counter() - t:6.1f} s  {' '.join(cmd)}")
    if not ok:
        log.append("     " + (out.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300])
    return ok


def bench_records(out: Path) -> list[dict]:
    rows = []
    for path in out.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def verdict(out: Path) -> list[tuple[str, float | None, float, bool | None]]:
    """(target, measured ratio, threshold, met) for every speed target of results/speed/README.md."""
    recs = bench_records(out)

    def bench(case, mode, precision=None):
        hits = [r for r in recs if r.get("kind") == "bench" and r["case"] == case and r["mode"] == mode
                and (precision is None or r["precision"] == precision)]
        return hits[-1] if hits else None

    def last(name, key):
        hits = [r for r in recs if r.get("benchmark") == name and key in r]
        return hits[-1][key] if hits else None

    rows = []
    b4096 = {m: bench("cifar_d6_w10k_b4096", m) for m in ("relu", "grelu", "grelu_recompute")}
    rows.append(("d6 w10k b4096 bf16: suite time / plain time (>= 0.95x throughput)",
                 b4096["relu"] and b4096["relu"]["suite_over_plain"], 1 / 0.95))
    rows.append(("GReLU cached masks / ReLU step", b4096["grelu"] and b4096["relu"]
                 and b4096["grelu"]["suite_ms"] / b4096["relu"]["suite_ms"], 1.00))
    rows.append(("GReLU recomputed gates / ReLU step", b4096["grelu_recompute"] and b4096["relu"]
                 and b4096["grelu_recompute"]["suite_ms"] / b4096["relu"]["suite_ms"], 1.30))
    small = bench("small_fullbatch", "relu")
    rows.append(("small full-batch n=100 m=1000 L=4: suite / plain", small and small["suite_over_plain"], 1.2))
    theory = bench("theory_width", "grelu")
    rows.append(("theory width m=40,000: peak GB (target 60)", theory and theory["suite_peak_gb"] and
                 theory["suite_peak_gb"] * 2**30 / 1e9, 60.0))
    rows.append(("theory width: suite / plain cached-mask step", theory and theory["suite_over_plain"], 1.1))
    rows.append(("RandAugment step / plain step, batch 4096", last("augmentation", "ratio"), 1.15))
    rows.append(("GReLU->ReLU conversion, in training epochs", last("conversion", "conversion_in_epochs"), 2.0))
    return [(name, value, limit, None if value is None else value <= limit) for name, value, limit in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/speed/paper")
    p.add_argument("--reference", default=str(HERE / "reference" / "gpu_anchor.py"))
    p.add_argument("--skip-tests", action="store_true")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: error: no CUDA GPU is visible here; run it on a GPU machine", file=sys.stderr)
        sys.exit(2)
    if not Path(a.reference).is_file():
        print(f"gpu-check: error: --reference {a.reference}: no such file", file=sys.stderr)
        sys.exit(2)
    log: list[str] = []
    ok = True
    if not a.skip_tests:
        ok &= run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(HERE.parent / "tests")], log, timeout=1200)
    for i, (case, precision) in enumerate(CASES):
        ref = ["--reference", a.reference] if i == 0 else []  # the anchor loop once, in the same run
        ok &= run([str(BIN / "grelu-bench"), "--case", case, "--device", "cuda", "--precision", precision,
                   "--out", a.out, *ref], log)
    ok &= run([sys.executable, str(HERE / "conversion.py"), "--out", a.out], log)
    ok &= run([sys.executable, str(HERE / "augmentation.py"), "--out", a.out], log)
    rows = verdict(Path(a.out))
    lines = [f"gpu-check on {hardware(torch.device('cuda'))}, torch {torch.__version__}", ""]
    lines += log + ["", f"{'target':64s} {'measured':>10s} {'limit':>7s}  verdict"]
    for name, value, limit, met in rows:
        shown = "-" if value is None else f"{value:.3g}"
        lines.append(f"{name:64s} {shown:>10s} {limit:>7.3g}  "
                     + ("not measured" if met is None else "met" if met else "MISSED"))
    text = "\n".join(lines)
    print(text)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_check.txt").write_text(text + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
