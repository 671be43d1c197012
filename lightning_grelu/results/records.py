"""Read run records: a run directory (``summary.json``, ``metrics.csv``, ``config.yaml``), every run under
a directory, every trial of a sweep's study, or every run of a W&B project (public API, online only)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lightning_grelu.errors import ConfigError, MachineError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: a width scan has thousands of records


class RecordError(ConfigError):
    """A run record that cannot be read (an input of the command: its parameter); the message names the file
    and what to do."""


@dataclass
class Run:
    name: str
    summary: dict
    config: dict = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)  # column -> one value per epoch
    path: Path | None = None
    params: dict = field(default_factory=dict)  # a sweep trial's Optuna parameters (runs_from_study)
    worker: str | None = None  # "host:pid" of the worker that ran a study's trial (runs_from_study)

    def get(self, key: str, default=None):
        """A summary key (``train/sse``), else a dotted config key (``model.width``)."""
        if key in self.summary:
            return self.summary[key]
        node = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def keys(self) -> list[str]:
        """Every key :meth:`get` answers: the summary's, and the config's leaves as dotted keys."""
        def leaves(node, prefix=""):
            for k, v in node.items():
                yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
        return [*self.summary, *leaves(self.config)]

    def curve(self, column: str, x: str = "epoch") -> tuple[list[float], list[float]]:
        """Finite (x, y) pairs of one metrics column."""
        xs, ys = self.metrics.get(x, []), self.metrics.get(column, [])
        pairs = [(a, b) for a, b in zip(xs, ys) if _finite(a) and _finite(b)]
        return [a for a, _ in pairs], [b for _, b in pairs]


def _finite(v) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_metrics(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise RecordError(f"{path}: not a CSV file ({type(e).__name__}); re-run that job or delete the "
                          "directory") from None
    if rows and (None in rows[0] or "epoch" not in rows[0]):
        raise RecordError(f"{path}: not a run's metrics.csv (no epoch column, or ragged rows); re-run that job "
                          "or delete the directory")
    cols = list(rows[0]) if rows else []
    return {c: [_number(r.get(c) or "") for r in rows] for c in cols}


def load_run(path: str | Path) -> Run:
    path = Path(path)
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{summary_path}: no summary.json (not a run directory, or the run never started)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{summary_path}: corrupt ({e}); re-run that job or delete the directory") from None
    except OSError as e:
        raise RecordError(f"{summary_path}: unreadable ({e.strerror or e})") from None
    if not isinstance(summary, dict) or "status" not in summary:
        raise RecordError(f"{summary_path}: not a run summary (holds {type(summary).__name__}, no status); re-run "
                          "that job or delete the directory")
    config_path = path / "config.yaml"
    try:
        config = yaml.load(config_path.read_text(), Loader=_LOADER) if config_path.exists() else {}
    except yaml.YAMLError as e:
        raise RecordError(f"{config_path}: corrupt ({str(e).splitlines()[0]})") from None
    return Run(name=path.name, summary=summary, config=config or {}, metrics=read_metrics(path / "metrics.csv"),
               path=path)


def find_runs(root: str | Path) -> list[Run]:
    """Every run directory under ``root`` (or ``root`` itself), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise RecordError(f"{root}: no such directory")
    if root.is_file() and root.name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl(root)
    dirs = sorted({p.parent for p in root.rglob("summary.json")})
    return [load_run(d) for d in dirs] + [r for f in sorted(root.rglob("records.jsonl*")) for r in read_jsonl(f)]


def runs_from_study(storage: str, study_name: str) -> list[Run]:
    """The run records of a sweep's trials (each trial's ``run_dir`` user attribute)."""
    import optuna

    from lightning_grelu.errors import storage_failure
    from lightning_grelu.sweeps.storage import make_storage

    where = f"--study {study_name} --storage {storage}"
    try:
        opened = make_storage(storage, retry_dead=False, create=False)
        study = optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(opened) if ":" not in s.study_name)
        raise RecordError(f"{where}: no study {study_name!r} there (it holds "
                          f"{', '.join(map(repr, names)) if names else 'no study'})") from None
    except (ConfigError, MachineError) as e:  # a missing file, an unreachable server: named with the study
        told = str(e).replace(f"sweep.storage {storage!r}: ", "").replace(f"sweep.storage {storage!r} ", "the storage ")
        raise type(e)(f"{where}: {told}") from None
    except Exception as e:
        if storage_failure(e):  # a file that is not a study's storage, a damaged one
            raise MachineError(f"{where}: cannot be read ({str(e.__cause__ or e).splitlines()[0]})") from None
        raise
    runs = []
    for t in study.get_trials(deepcopy=False):
        run_dir = t.user_attrs.get("run_dir")
        if run_dir and (Path(run_dir) / "summary.json").exists():
            run = load_run(run_dir)
        elif t.state.is_finished() and t.user_attrs.get("record"):  # a width-scan trial run on another host
            run = from_record(t.user_attrs["record"])
        else:
            continue
        run.name = f"trial{t.number:05d}"
        run.params = dict(t.params or t.user_attrs.get("params") or {})
        run.worker = t.user_attrs.get("worker")
        run.summary.setdefault("trial_state", t.state.name.lower())
        runs.append(run)
    return runs


def from_record(record: dict) -> Run:
    """A run from its compact record (``{"summary", "curve": [[step, sse], ...], "overrides"}``), as a width
    scan keeps it in its study and ``records.jsonl.gz`` keeps it in results."""
    curve = record.get("curve") or []
    metrics = {"epoch": [float(t) for t, _ in curve], "step": [float(t) for t, _ in curve],
               "train/sse": [float(v) if v is not None else float("nan") for _, v in curve]}
    config = {"overrides": record.get("overrides", [])}
    return Run(name=str(record.get("name", "")), summary=dict(record["summary"]), config=config, metrics=metrics)


def write_jsonl(runs: list[Run], path: Path) -> None:
    """Every run as one compact record per line (gzip when the name ends in .gz): a width scan's thousands of
    runs in one file rather than thousands of directories."""
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for r in runs:
            xs, ys = r.curve("train/sse", x="step" if r.metrics.get("step") else "epoch")
            summary = {k: v for k, v in r.summary.items() if k not in ("run_dir", "loss_definition")
                       and not k.startswith("probe/")}
            for key in ("d_out", "d_in"):  # what a cell needs, when it was only in the config
                if summary.get(key) is None and r.get(f"data.{key}") is not None:
                    summary[key] = r.get(f"data.{key}")
            f.write(json.dumps({"name": r.name, "summary": summary, "curve": [[x, float(f"{y:.6g}")] for x, y in
                                                                             zip(xs, ys)],
                                "overrides": r.config.get("overrides") or []}, separators=(",", ":")) + "\n")


def read_jsonl(path: Path) -> list[Run]:
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return [from_record(json.loads(line)) for line in f if line.strip()]
    except (OSError, ValueError, KeyError) as e:
        raise RecordError(f"{path}: not a records file ({type(e).__name__}: {e})") from None


def runs_from_wandb(project: str, filters: dict | None = None) -> list[Run]:
    """``entity/project`` through W&B's public API (needs a network and an API key)."""
    import wandb

    try:
        api_runs = wandb.Api(timeout=30).runs(project, filters=filters or {})
        runs = []
        for r in api_runs:
            history = r.history(samples=100000, pandas=False)
            cols = sorted({k for row in history for k in row})
            metrics = {c: [float(row[c]) if isinstance(row.get(c), (int, float)) else float("nan") for row in history]
                       for c in cols}
            runs.append(Run(name=r.name, summary=dict(r.summary), config=dict(r.config), metrics=metrics))
    except Exception as e:  # no network, no key, unknown project
        raise RecordError(f"W&B project {project!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                          "(online access and `wandb login` are needed; local run directories work offline)") from None
    return runs
