"""SGEMM GPU kernel performance (UCI #440, Nugteren & Codreanu 2015): ``sgemm_product.csv``, or the
UCI archive ``sgemm_product_dataset.zip`` that holds it, in ``data_dir``. 241,600 rows: 14 kernel
parameters and 4 runtimes of the same kernel.

Task options (config, not code):
  * ``target=log_mean`` (default): log of the mean of the 4 runs, a scalar; the data set's own
    README recommends the log because runtimes span orders of magnitude.
    ``target=log_runs``: the 4 log-runtimes as a 4-d target.
  * ``inputs=params`` (default): the 14 parameters, d = 14. ``inputs=paper18``: the paper's literal
    "d = 18", the 14 parameters plus the 4 log-runtimes. It contains the target's ingredients, so it
    is only for reproducing that literal setting, not a prediction task.
Split: seeded train/val/test fractions; inputs and targets standardized with train statistics.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from pathlib import Path

import torch

from lightning_grelu.data.base import DataError, Split, TensorDataModule
from lightning_grelu.errors import ConfigError

PARAMS = ["MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN", "STRM", "STRN", "SA", "SB"]
RUNS = ["Run1 (ms)", "Run2 (ms)", "Run3 (ms)", "Run4 (ms)"]
HEADER = PARAMS + RUNS
CSV, ZIP = "sgemm_product.csv", "sgemm_product_dataset.zip"
URL = "https://archive.ics.uci.edu/static/public/440/sgemm+gpu+kernel+performance.zip"
HOW_TO_GET = (f"put {CSV} (or the UCI archive {ZIP}) there, from "
              "https://archive.ics.uci.edu/dataset/440/sgemm+gpu+kernel+performance, "
              "or set data.download=true where a network exists (GRELU_DATA_DIR=... or paths.data_dir=... moves "
              "the root of every data set)")


def parse_csv(text: str, where: str) -> torch.Tensor:
    """All rows as float64 (n, 18); one clear error for a wrong header, row or value."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if header != HEADER:
        raise DataError(f"{where}: columns {header} are not SGEMM's {HEADER}; give the original file")
    rows = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(HEADER):
            raise DataError(f"{where}: line {line} has {len(row)} fields, expected {len(HEADER)}; the file is damaged")
        try:
            rows.append([float(v) for v in row])
        except ValueError:
            bad = next(i for i, v in enumerate(row) if not _is_number(v))
            raise DataError(f"{where}: line {line}, column {HEADER[bad]!r}: {row[bad]!r} is not a number; "
                            "the file is damaged") from None
    if not rows:
        raise DataError(f"{where}: no data rows; the file is truncated, give the original file")
    data = torch.tensor(rows, dtype=torch.float64)
    if not torch.isfinite(data).all() or (data[:, len(PARAMS):] <= 0).any():
        raise DataError(f"{where}: runtimes must be finite and > 0 (log targets); the file is damaged")
    return data


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


class SGEMMDataModule(TensorDataModule):
    def __init__(self, data_dir: str = "data/sgemm", download: bool = False, target: str = "log_mean",
                 inputs: str = "params", val_frac: float = 0.1, test_frac: float = 0.1, split_seed: int = 0,
                 limit_train: int | None = None, **base):
        base.setdefault("standardize_x", True)
        base.setdefault("standardize_y", True)
        super().__init__(**base)
        if target not in ("log_mean", "log_runs"):
            raise ConfigError(f"data.target must be 'log_mean' or 'log_runs', got {target!r}")
        if inputs not in ("params", "paper18"):
            raise ConfigError(f"data.inputs must be 'params' or 'paper18', got {inputs!r}")
        if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
            raise ConfigError(f"data.val_frac and data.test_frac must be in [0, 1) with a sum < 1, "
                            f"got {val_frac} and {test_frac}")
        self.data_dir, self.download, self.target, self.input_set = data_dir, download, target, inputs
        self.val_frac, self.test_frac, self.split_seed, self.limit_train = val_frac, test_frac, split_seed, limit_train

    def read(self) -> torch.Tensor:
        root = Path(self.data_dir)
        csv_path, zip_path = root / CSV, root / ZIP
        if not csv_path.is_file() and not zip_path.is_file() and self.download:
            fetch(root)
        if csv_path.is_file():
            try:
                return parse_csv(csv_path.read_text(), str(csv_path))
            except UnicodeDecodeError:
                raise DataError(f"{csv_path}: not a text CSV file; give the original file") from None
        if zip_path.is_file():
            try:
                with zipfile.ZipFile(zip_path) as z:
                    name = next((n for n in z.namelist() if n.endswith(CSV)), None)
                    if name is None:
                        raise DataError(f"{zip_path}: has no {CSV}; {HOW_TO_GET}")
                    text = z.read(name).decode()
            except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError) as e:
                raise DataError(f"{zip_path}: truncated or corrupt zip ({e}); download it again") from None
            return parse_csv(text, f"{zip_path}:{name}")
        raise DataError(f"SGEMM not found in {root.resolve()}: {HOW_TO_GET}")

    def load(self) -> dict[str, Split]:
        data = self.read()
        params, log_runs = data[:, :len(PARAMS)], data[:, len(PARAMS):].log()
        y = log_runs if self.target == "log_runs" else data[:, len(PARAMS):].mean(dim=1, keepdim=True).log()
        x = torch.cat([params, log_runs], dim=1) if self.input_set == "paper18" else params
        n = x.shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(self.split_seed)))
        n_val, n_test = math.floor(self.val_frac * n), math.floor(self.test_frac * n)
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        if self.limit_train is not None:
            parts["train"] = parts["train"][:self.limit_train]
        return {k: Split(x[i], y[i]) for k, i in parts.items() if len(i)}  # the base casts to the training dtype


def fetch(root: Path) -> None:
    from torchvision.datasets.utils import download_url

    try:
        download_url(URL, str(root), filename=ZIP)
    except Exception as e:
        raise DataError(f"could not download SGEMM ({type(e).__name__}: {e}); without a network, put {CSV} "
                        f"or {ZIP} in {root.resolve()}") from None
