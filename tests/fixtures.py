"""Small data sets written in the exact official on-disk formats (CIFAR-10 python batches, the
tar.gz, Fashion-MNIST idx.gz, the SGEMM CSV with its real header)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from lightning_grelu.data.sgemm import HEADER


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did for the original CIFAR-10 batches: every string (keys,
    file names, the array's raw bytes) is a py2 ``str`` (BINSTRING opcodes), protocol 2, and numpy
    is referenced as ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "")
        if module.startswith("numpy._core"):
            name = name or obj.__qualname__
            self.write(pickle.GLOBAL + module.replace("numpy._core", "numpy.core").encode() + b"\n"
                       + name.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(n: int, seed: int, style: str = "py2") -> bytes:
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    # class-dependent brightness, so that a short training run can learn something
    data = np.clip(data.astype(np.int32) // 2 + np.array(labels)[:, None] * 12, 0, 255).astype(np.uint8)
    batch = {"batch_label": f"fixture batch {seed}", "labels": labels, "data": data,
             "filenames": [f"img_{seed}_{i}.png" for i in range(n)]}
    if style == "py2":
        return py2_pickle(batch)
    return pickle.dumps(batch, protocol=4)  # a copy re-pickled by Python 3: str keys


def write_cifar10(root: Path, n: int = 20, n_test: int = 20, style: str = "py2", archive: bool = False) -> Path:
    blobs = {f"data_batch_{i}": cifar_batch(n, i, style) for i in range(1, 6)}
    blobs["test_batch"] = cifar_batch(n_test, 99, style)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            "num_cases_per_batch": n, "num_vis": 3072}
    blobs["batches.meta"] = py2_pickle(meta) if style == "py2" else pickle.dumps(meta)
    root.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(exist_ok=True)
        for name, blob in blobs.items():
            (folder / name).write_bytes(blob)
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x803 if array.ndim == 3 else 0x801
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_fashion_mnist(root: Path, n: int = 60, n_test: int = 20, gz: bool = True) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, size in (("train", n), ("t10k", n_test)):
        labels = rng.integers(0, 10, size)
        images = np.clip(rng.integers(0, 128, (size, 28, 28)) + labels[:, None, None] * 12, 0, 255)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            blob = idx_bytes(arr)
            if gz:
                with gzip.open(root / f"{stem}.gz", "wb") as f:
                    f.write(blob)
            else:
                (root / stem).write_bytes(blob)
    return root


def sgemm_rows(n: int, seed: int = 0) -> list[list]:
    """Legal kernel parameters (the values the SGEMM data set enumerates) and plausible runtimes."""
    rng = np.random.default_rng(seed)
    choice = lambda vals: vals[rng.integers(len(vals))]  # noqa: E731
    rows = []
    for _ in range(n):
        p = [choice([16, 32, 64, 128]), choice([16, 32, 64, 128]), choice([16, 32]), choice([8, 16, 32]),
             choice([8, 16, 32]), choice([8, 16, 32]), choice([8, 16, 32]), choice([2, 8]), choice([1, 2, 4, 8]),
             choice([1, 2, 4, 8]), choice([0, 1]), choice([0, 1]), choice([0, 1]), choice([0, 1])]
        base = 20 + 2000 / (p[0] * p[1]) * 64 + 3 * p[7] + 10 * p[12]
        rows.append(p + [round(base * rng.uniform(0.97, 1.03), 2) for _ in range(4)])
    return rows


def write_sgemm(root: Path, n: int = 200, archive: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = ",".join(HEADER) + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in sgemm_rows(n))
    if archive:
        import zipfile
        with zipfile.ZipFile(root / "sgemm_product_dataset.zip", "w") as z:
            z.writestr("sgemm_product.csv", text)
            z.writestr("Readme.txt", "SGEMM GPU kernel performance (fixture)\n")
    else:
        (root / "sgemm_product.csv").write_text(text)
    return root
