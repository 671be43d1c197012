"""Group runs and aggregate their final metrics into rows; write them as Markdown and CSV."""

from __future__ import annotations

import csv
import math
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


def _order(v):
    """Sort key: numbers by value (widths 14, 20, 118, 200, not "118" < "14"), then text, missing last."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def group_runs(runs: list[Run], by: list[str]) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: tuple(_order(x) for x in kv[0])))


def aggregate(runs: list[Run], by: list[str], metrics: list[str]) -> list[dict]:
    """One row per group (sorted numerically where the keys are numbers): its keys, the run count,
    completed/diverged counts, and per metric the mean over the runs that have a finite value, ``<m>_n``
    how many those are (``steps_to_eps`` exists only for runs that reached eps), and ``<m>_min``/``<m>_max``.
    A metric no run of the group has is missing (None), never 0 or NaN."""
    import pandas as pd

    frame = pd.DataFrame([{**{f"k{i}": r.get(k) for i, k in enumerate(by)}, "status": r.get("status"),
                           **{m: (v if _finite_number(v := r.get(m)) else None) for m in metrics}} for r in runs])
    keys = [f"k{i}" for i in range(len(by))]
    rows = []
    grouped = frame.groupby(keys, dropna=False, sort=False) if keys else [((), frame)]
    for key, members in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = {k: (None if pd.isna(v) else _plain(v)) for k, v in zip(by, key)}
        row["runs"] = len(members)
        row["completed"] = int((members["status"] == "completed").sum())
        row["diverged"] = int((members["status"] == "diverged").sum())
        for m in metrics:
            vals = pd.to_numeric(members[m], errors="coerce").dropna()
            row[m] = float(vals.mean()) if len(vals) else None
            row[f"{m}_n"] = int(len(vals))
            if len(members) > 1:
                row[f"{m}_min"] = float(vals.min()) if len(vals) else None
                row[f"{m}_max"] = float(vals.max()) if len(vals) else None
        rows.append(row)
    return sorted(rows, key=lambda r: tuple(_order(r[k]) for k in by))


def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _plain(v):
    """numpy scalars back to Python numbers (for CSV, JSON and sorting)."""
    return v.item() if hasattr(v, "item") else v


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
