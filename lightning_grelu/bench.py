"""The benchmark behind ``grelu-bench``: time the suite's real training path against a plain PyTorch loop, in one run.

Suite path: the LightningModule inside a Lightning Trainer with the callbacks every run has (run
record, time to target, divergence guard, throughput), fed by the suite's device-tensor batches.
Plain path: the same network and batches, with a hand-written SGD loop. Both are timed over
``repeats`` windows of ``steps`` steps after ``warmup`` steps, synchronising the device only at
window edges; the median window gives the step time. A matmul measured in the same run gives the
ceiling that model TFLOP/s are compared with.

    grelu-bench --case cifar_d6_w10k_b4096 --precision bf16-mixed      # on a GPU
    grelu-bench --case tiny --device cpu                               # anywhere, seconds
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lightning_grelu.atomic import write_atomic
from lightning_grelu.bench_cases import CASES, MODES  # noqa: F401  (re-exported: bench.CASES, bench.MODES)


@dataclass
class Result:
    case: str
    mode: str
    precision: str
    device: str
    width: int
    depth: int
    batch: int
    inner_steps: int
    suite_ms: float
    plain_ms: float
    suite_over_plain: float
    samples_per_s: float
    model_tflops: float
    plain_model_tflops: float
    ceiling_tflops: float
    frac_of_ceiling: float
    suite_peak_gb: float | None
    plain_peak_gb: float | None
    suite_ms_min: float = float("nan")  # the spread of the timed windows: one run's ratio is trusted
    suite_ms_max: float = float("nan")  # only when its windows agree
    plain_ms_min: float = float("nan")
    plain_ms_max: float = float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def matmul_ceiling(device: torch.device, precision: str) -> float:
    """Dense matmul TFLOP/s on this device in the training precision (the ceiling)."""
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if (precision.startswith("bf16") and device.type == "cuda") else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(8):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e12


def _autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _module_class(mode: str):
    from lightning_grelu import modules

    name, kwargs = MODES[mode]
    return getattr(modules, name), kwargs


def _net_and_module(mode: str, d_in: int, d_out: int, width: int, depth: int, lr: float, inner_steps: int = 1):
    cls, kwargs = _module_class(mode)
    return cls(d_in=d_in, d_out=d_out, width=width, depth=depth, lr=lr, inner_steps=inner_steps, **kwargs)


def spec_of_mode(mode: str, d_in: int, d_out: int, width: int, depth: int):
    """The net's own description (FLOPs, whether it caches gates) for a bench mode."""
    cls, kwargs = _module_class(mode)
    return cls.describe({"width": width, "depth": depth, **kwargs}, d_in, d_out)


def time_plain(mode, dm, width, depth, lr, precision, device, warmup, steps, repeats) -> tuple[list[float], float | None]:
    """The same step as the suite's, in a plain loop: batches by index, cached or recomputed gates."""
    from lightning_grelu.modules.grelu import mask_dtype
    from lightning_grelu.nets import GateCache

    module = _net_and_module(mode, dm.d_in, dm.d_out, width, depth, lr).to(device)
    net = module.net
    _reset_peak(device)
    x, y = dm.splits["train"].x.to(device), dm.splits["train"].y.to(device)
    caches = spec_of_mode(mode, dm.d_in, dm.d_out, width, depth).gate_cache_bytes_per_sample > 0
    cache = GateCache.build(net, x) if caches else None
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    bs = dm.batch_size or x.shape[0]
    order = torch.arange(x.shape[0], device=device)
    batches = [order[i:i + bs] for i in range(0, x.shape[0], bs)]

    last = {}  # as the suite: a batch's gates are unpacked when the batch changes (once a run at full batch)

    def step(i):
        idx = batches[i % len(batches)]
        with _autocast(device, precision):
            if cache is not None and last.get("index") is not idx:
                last.update(index=idx, masks=cache.lookup(idx, mask_dtype(net, x)))
            pred = net(x[idx], last["masks"]) if cache is not None else net(x[idx])
            loss = 0.5 * ((pred.float() - y[idx]) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    windows = []
    for r in range(repeats):
        _sync(device)
        t = time.perf_counter()
        for i in range(steps):
            step(i)
        _sync(device)
        windows.append((time.perf_counter() - t) / steps)
    return windows, _peak_gb(device)


def time_suite(mode, dm, width, depth, lr, precision, device, warmup, steps, repeats,
               inner_steps: int = 1) -> tuple[list[float], float | None]:
    import lightning as L

    from lightning_grelu.callbacks import DivergenceGuard, RunRecord, Throughput, TimeToTarget

    marks: list[tuple[float, int]] = []  # (time, optimizer steps so far) at window edges

    class WindowTimer(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            step = trainer.global_step  # optimizer steps (several per batch with inner steps)
            if step >= warmup + steps * len(marks):
                _sync(device)
                marks.append((time.perf_counter(), step))

    module = _net_and_module(mode, dm.d_in, dm.d_out, width, depth, lr, inner_steps)
    _reset_peak(device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = L.Trainer(accelerator=device.type if device.type == "cuda" else "cpu", devices=1,
                            precision=precision, max_steps=warmup + steps * repeats, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, default_root_dir=run_dir,
                            callbacks=[RunRecord(run_dir), TimeToTarget(1e-3), DivergenceGuard(), Throughput(),
                                       WindowTimer()])
        trainer.fit(module, datamodule=dm)
    windows = [(tb - ta) / (sb - sa) for (ta, sa), (tb, sb) in zip(marks, marks[1:])]
    return windows, _peak_gb(device)


def run_case(case: str, modes, precision: str, device: torch.device, warmup: int, steps: int, repeats: int,
             lr: float = 1e-6, dims=None, inner_steps: int = 1) -> list[Result]:
    from lightning_grelu.data.synthetic import SyntheticDataModule

    width, depth, batch, d_in, d_out, per_epoch = dims or CASES[case]
    ceiling = matmul_ceiling(device, precision)
    inner = inner_steps if per_epoch == 1 else 1

    def data():
        dm = SyntheticDataModule(n=batch * per_epoch, d_in=d_in, d_out=d_out, batch_size=batch, shuffle=False)
        dm.setup()
        return dm

    # Warm every mode on both paths before any timed window: the first Trainer, kernel selection and
    # the allocator's growth otherwise land in whichever mode happens to be timed first. One mode alone
    # has no such order (its own warm-up steps do the rest), and each warm run draws two more nets: for the
    # theory width that is minutes of host-side drawing.
    for mode in modes if len(modes) > 1 else ():
        time_suite(mode, data(), width, depth, lr, precision, device, 2, 1, 1, inner)
        time_plain(mode, data(), width, depth, lr, precision, device, 2, 1, 1)
    results = []
    for mode in modes:
        flops = spec_of_mode(mode, d_in, d_out, width, depth).flops_per_sample * batch
        suite_w, suite_peak = time_suite(mode, data(), width, depth, lr, precision, device, warmup, steps, repeats,
                                         inner)
        plain_w, plain_peak = time_plain(mode, data(), width, depth, lr, precision, device, warmup, steps, repeats)
        suite, plain = statistics.median(suite_w), statistics.median(plain_w)
        tflops = flops / suite / 1e12
        results.append(Result(case, mode, precision, device.type, width, depth, batch, inner, suite * 1e3, plain * 1e3,
                              suite / plain, batch / suite, tflops, flops / plain / 1e12, ceiling,
                              tflops / ceiling, suite_peak, plain_peak, min(suite_w) * 1e3, max(suite_w) * 1e3,
                              min(plain_w) * 1e3, max(plain_w) * 1e3))
    return results


def hardware(device: torch.device) -> str:
    """The device in words; for a GPU with its driver version (every record and results README says it)."""
    if device.type == "cuda":
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30).stdout.split()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            driver = "unknown"
        return f"{torch.cuda.get_device_name(device)}, driver {driver}, CUDA {torch.version.cuda}"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def commit() -> str:
    """This checkout's commit; where git cannot tell (a copy without .git, as on the device machine), the
    one GRELU_COMMIT names."""
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                               cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    return found or os.environ.get("GRELU_COMMIT", "unknown")


def write_results(out: Path, results: list[Result], argv: str, device: torch.device, reference: list[dict],
                  append: bool = False):
    """``<case>_<precision>_inner<K>.jsonl`` in ``out`` (with ``append``, after the runs already there: a measured
    run is never replaced by a later one) and the folder's README."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": argv, "commit": commit(), "hardware": hardware(device), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    lines = [json.dumps({"kind": "meta", **meta})] + [json.dumps({"kind": "bench", **asdict(r)}) for r in results]
    lines += [json.dumps({"kind": "reference", **r}) for r in reference]
    path = out / f"{results[0].case}_{results[0].precision}_inner{results[0].inner_steps}.jsonl"
    before = path.read_text() if append and path.exists() else ""
    write_atomic(path, before + "\n".join(lines) + "\n")  # an interrupted run leaves the previous file
    write_readme(out)


def write_readme(out: Path) -> None:
    """``README.md`` of a results folder, rebuilt from every .jsonl in it (never typed by hand)."""
    cols = ["case", "mode", "precision", "inner_steps", "suite_ms", "suite_ms_min", "suite_ms_max", "plain_ms",
            "plain_ms_min", "plain_ms_max", "suite_over_plain", "samples_per_s", "model_tflops", "frac_of_ceiling",
            "suite_peak_gb"]
    text = ["# grelu-bench results", "", "Written by `grelu-bench --out` from the .jsonl files beside this file; "
            "suite = the Lightning training path, plain = a hand-written loop of the same net, same run.", ""]
    for path in sorted(out.glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not any(r.get("kind") == "bench" for r in records):
            continue  # another benchmark's records (conversion, augmentation, active entries): not grelu-bench's table
        runs: list[list[dict]] = []  # each run starts with its meta line
        for r in records:
            if r.get("kind") == "meta" or not runs:
                runs.append([])
            runs[-1].append(r)
        text += [f"## {path.name}", ""]
        for run in runs:
            meta = next((r for r in run if r.get("kind") == "meta"), {})
            text += [f"`{meta.get('command')}` at commit `{meta.get('commit')}` on "
                     f"{meta.get('hardware')} (torch {meta.get('torch')}), {meta.get('date')}", "",
                     "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in (r for r in run if r.get("kind") == "bench"):
                cells = [r.get(c, "-") for c in cols]  # records from before the spread was kept have no min/max
                text.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells) + " |")
            refs = [r for r in run if r.get("kind") == "reference"]
            if refs:
                text += ["", f"Reference loop in the same run: {len(refs)} records (see the .jsonl)."]
            text.append("")
    write_atomic(out / "README.md", "\n".join(text))


def print_table(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    from rich.markup import escape

    table = Table(title=escape("grelu-bench (suite = Lightning path, plain = hand-written loop; "
                               "medians [min, max] of the timed windows)"))
    cols = ["case", "mode", "precision", "inner_steps", "suite_ms", "plain_ms", "suite_over_plain", "samples_per_s",
            "model_tflops", "frac_of_ceiling", "suite_peak_gb"]  # the rest (ceiling, plain peak) is in --out's jsonl
    for c in cols:
        table.add_column(c, no_wrap=True)
    for r in results:
        d = asdict(r)
        cells = [f"{d[c]:.4g}" if isinstance(d[c], float) else str(d[c]) for c in cols]
        for i, c in ((4, "suite_ms"), (5, "plain_ms")):  # the spread beside the median
            cells[i] += escape(f" [{d[c + '_min']:.3g}, {d[c + '_max']:.3g}]")
        table.add_row(*cells)
    Console(width=200).print(table)
