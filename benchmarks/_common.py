"""Shared by the benchmark scripts: device, timing and the record they append."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from lightning_grelu.bench import _sync, commit, hardware


def device_of(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def timed(fn, device: torch.device, repeats: int = 3) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def record(name: str, result: dict, device: torch.device, out: str | None, quiet: bool = False) -> dict:
    """Stamp ``result`` (command, commit, hardware, date), print it unless ``quiet``, append it to
    ``out/<name>.jsonl``; returns the stamped record."""
    result = {"benchmark": name, **result, "hardware": hardware(device), "commit": commit(), "torch": torch.__version__,
              "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    line = json.dumps(result)
    if not quiet:
        print(line)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / f"{name}.jsonl", "a") as f:
            f.write(line + "\n")
    return result
