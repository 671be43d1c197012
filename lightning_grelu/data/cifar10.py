"""CIFAR-10 from the official "python version": the folder ``cifar-10-batches-py/`` (data_batch_1..5,
test_batch, batches.meta) or the archive ``cifar-10-python.tar.gz``, in ``data_dir``.

The batches were pickled by Python 2: they are loaded with ``encoding="bytes"``, the way they
really decode, and keys may come back as bytes or str (a re-pickled copy). ``download=true``
fetches the archive where a network exists.
"""

from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from lightning_grelu.data.base import DataError
from lightning_grelu.data.images import ImageDataModule, check_labels

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER, ARCHIVE = "cifar-10-batches-py", "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
HOW_TO_GET = (f"put the official CIFAR-10 python version there: the folder {FOLDER}/ (data_batch_1..5, test_batch, "
              f"batches.meta) or the archive {ARCHIVE} from https://www.cs.toronto.edu/~kriz/cifar.html, "
              "or set data.download=true where a network exists (GRELU_DATA_DIR=... or paths.data_dir=... moves the "
              "root of every data set)")


def unpickle(blob: bytes, where: str) -> dict:
    try:
        d = pickle.loads(blob, encoding="bytes")
    except Exception as e:  # truncated or corrupt pickles raise many types
        raise DataError(f"{where}: truncated or corrupt pickle ({type(e).__name__}: {e}); replace the file") from None
    if not isinstance(d, dict):
        raise DataError(f"{where}: not a CIFAR-10 batch (a pickled dict is expected); replace the file")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def read_batch(blob: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    d = unpickle(blob, where)
    if "data" not in d or "labels" not in d:
        raise DataError(f"{where}: no 'data'/'labels' entries; not a CIFAR-10 batch, replace the file")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: images have shape {data.shape} and dtype {data.dtype}, expected (n, 3072) uint8 "
                        "(32x32 RGB); replace the file")
    labels = torch.as_tensor(np.asarray(d["labels"], dtype=np.int64))
    check_labels(labels, data.shape[0], where)
    return torch.from_numpy(data.copy()).view(-1, 3, 32, 32), labels


class CIFAR10DataModule(ImageDataModule):
    def __init__(self, data_dir: str = "data/cifar10", **kwargs):
        super().__init__(data_dir=data_dir, **kwargs)

    def _blobs(self) -> dict[str, tuple[bytes, str]]:
        root = Path(self.data_dir)
        names = [*TRAIN_BATCHES, TEST_BATCH]
        folder, archive = root / FOLDER, root / ARCHIVE
        if not folder.is_dir() and not archive.is_file() and self.download:
            fetch(root)
        if folder.is_dir():
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise DataError(f"{folder}: missing {', '.join(missing)}; {HOW_TO_GET}")
            return {n: ((folder / n).read_bytes(), str(folder / n)) for n in names}
        if archive.is_file():
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    out = {}
                    for n in names:
                        try:
                            member = tar.extractfile(f"{FOLDER}/{n}")
                        except KeyError:
                            raise DataError(f"{archive}: has no {FOLDER}/{n}; {HOW_TO_GET}") from None
                        out[n] = (member.read(), f"{archive}:{FOLDER}/{n}")
                    return out
            except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
                raise DataError(f"{archive}: truncated or corrupt archive ({e}); download it again") from None
        raise DataError(f"CIFAR-10 not found in {root.resolve()}: {HOW_TO_GET}")

    def load_images(self):
        blobs = self._blobs()
        train = [read_batch(*blobs[n]) for n in TRAIN_BATCHES]
        return {"train": (torch.cat([t[0] for t in train]), torch.cat([t[1] for t in train])),
                "test": read_batch(*blobs[TEST_BATCH])}


def fetch(root: Path) -> None:
    from torchvision.datasets.utils import download_url

    try:
        download_url(URL, str(root), filename=ARCHIVE, md5=MD5)
    except Exception as e:
        raise DataError(f"could not download CIFAR-10 ({type(e).__name__}: {e}); without a network, "
                        f"{HOW_TO_GET.replace('or set data.download=true where a network exists', '')}"
                        f"in {root.resolve()}") from None
