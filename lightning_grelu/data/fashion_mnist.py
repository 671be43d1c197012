"""Fashion-MNIST from its original idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; gzipped or not) in ``data_dir``.

Debian's ``dataset-fashion-mnist`` package installs them in /usr/share/datasets/fashion-mnist/,
which is used when ``<paths.data_dir>/fashion_mnist`` does not exist: the one real image data set available
offline here.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from lightning_grelu.config_check import DEBIAN_FASHION_MNIST as DEBIAN_DIR, fashion_mnist_dir
from lightning_grelu.data.base import DataError
from lightning_grelu.data.images import ImageDataModule, check_labels

MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
HOW_TO_GET = ("put the four original files there (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; `apt-get install dataset-fashion-mnist` installs "
              f"them in {DEBIAN_DIR}), or set data.download=true where a network exists (GRELU_DATA_DIR=... or "
              "paths.data_dir=... moves the root of every data set)")
IMAGES_MAGIC, LABELS_MAGIC = 0x803, 0x801


def default_dir() -> str:
    """Where the files are when no data_dir is given (the config gives <paths.data_dir>/fashion_mnist)."""
    return fashion_mnist_dir(os.environ.get("GRELU_DATA_DIR", "data"))


def read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip ({e}); replace the file") from None
    ndim = 1 + len(item_shape)
    if len(raw) < 4 + 4 * ndim or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(f"{path}: not an idx file of {'images' if magic == IMAGES_MAGIC else 'labels'} "
                        f"(magic {raw[:4].hex() or 'missing'}, expected {magic:08x}); replace the file")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    if tuple(dims[1:]) != item_shape:
        raise DataError(f"{path}: items of shape {tuple(dims[1:])}, expected {item_shape}; not Fashion-MNIST")
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{path}: {len(body)} bytes of data for shape {dims}; the file is truncated, replace it")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


class FashionMNISTDataModule(ImageDataModule):
    def __init__(self, data_dir: str | None = None, **kwargs):
        super().__init__(data_dir=data_dir or default_dir(), **kwargs)

    def _path(self, stem: str) -> Path:
        root = Path(self.data_dir)
        for candidate in (root / f"{stem}.gz", root / stem):
            if candidate.is_file():
                return candidate
        if self.download:
            fetch(root, stem)
            return root / f"{stem}.gz"
        raise DataError(f"Fashion-MNIST file {stem}.gz not found in {root.resolve()}: {HOW_TO_GET}")

    def load_images(self):
        out = {}
        for split, (images, labels) in FILES.items():
            x = read_idx(self._path(images), IMAGES_MAGIC, (28, 28))
            y_path = self._path(labels)
            y = torch.from_numpy(read_idx(y_path, LABELS_MAGIC, ()).astype(np.int64))
            check_labels(y, x.shape[0], str(y_path))
            out[split] = (torch.from_numpy(x.copy()).unsqueeze(1), y)
        return out


def fetch(root: Path, stem: str) -> None:
    from torchvision.datasets.utils import download_url

    try:
        download_url(MIRROR + stem + ".gz", str(root))
    except Exception as e:
        raise DataError(f"could not download {stem}.gz ({type(e).__name__}: {e}); without a network, "
                        f"put the files in {root.resolve()} or `apt-get install dataset-fashion-mnist`") from None
