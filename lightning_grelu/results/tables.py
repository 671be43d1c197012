"""Group runs and aggregate their final metrics into rows; write them as Markdown and CSV."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from lightning_grelu.results.records import Run


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    return str(v)


def _numbers(runs: list[Run], key: str) -> list[float]:
    out = []
    for r in runs:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def group_runs(runs: list[Run], by: list[str]) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])))


def aggregate(runs: list[Run], by: list[str], metrics: list[str]) -> list[dict]:
    """One row per group: its keys, the run count, completed/diverged counts, and per metric the mean,
    min and max over the group's runs (columns ``metric``, ``metric_min``, ``metric_max``)."""
    rows = []
    for key, members in group_runs(runs, by).items():
        row = dict(zip(by, key))
        row["runs"] = len(members)
        row["completed"] = sum(r.get("status") == "completed" for r in members)
        row["diverged"] = sum(r.get("status") == "diverged" for r in members)
        for m in metrics:
            vals = _numbers(members, m)
            row[m] = statistics.fmean(vals) if vals else None
            if len(members) > 1:
                row[f"{m}_min"] = min(vals) if vals else None
                row[f"{m}_max"] = max(vals) if vals else None
        rows.append(row)
    return rows


def columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def markdown(rows: list[dict], cols: list[str] | None = None) -> str:
    cols = cols or columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path, cols: list[str] | None = None) -> None:
    cols = cols or columns(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
