"""CIFAR-10, Fashion-MNIST and SGEMM from files in their official formats, and every bad input."""

import gzip
import os
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from fixtures import idx_bytes, write_cifar10, write_fashion_mnist, write_sgemm
from lightning_grelu.data import CIFAR10DataModule, DataError, FashionMNISTDataModule, SGEMMDataModule
from lightning_grelu.config_check import DEBIAN_FASHION_MNIST as DEBIAN_DIR
from lightning_grelu.data.sgemm import HEADER
from lightning_grelu.train import train


@pytest.mark.parametrize("style,archive", [("py2", False), ("py2", True), ("py3", False)])
def test_cifar10_reads_official_layouts(tmp_path, style, archive):
    write_cifar10(tmp_path, n=20, n_test=15, style=style, archive=archive)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=10, split_seed=1, batch_size=32)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 90, "val": 10, "test": 15}
    assert dm.splits["train"].x.dtype == torch.uint8 and dm.splits["train"].x.shape[1:] == (3, 32, 32)
    assert dm.d_in == 3072 and dm.d_out == 10 and dm.num_classes == 10
    y = dm.splits["train"].y
    assert torch.equal(y.sum(dim=1), torch.ones(90)) and set(y.unique().tolist()) == {0.0, 1.0}
    x = dm.train_inputs()
    assert x.shape == (90, 3072) and torch.allclose(x.norm(dim=1), torch.ones(90), atol=1e-5)
    # per-channel standardization uses train statistics only
    raw = dm.splits["train"].x.float() / 255
    assert torch.allclose(dm.mean, raw.mean(dim=(0, 2, 3)), atol=1e-6)
    no_norm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=10, split_seed=1, unit_norm=False)
    no_norm.setup()
    z = no_norm.train_inputs().view(90, 3, 1024)
    assert torch.allclose(z.mean(dim=(0, 2)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2)), torch.ones(3), atol=1e-2)


def test_cifar10_labels_decode_to_the_pickled_ones(tmp_path):
    write_cifar10(tmp_path, n=20)
    import pickle
    blob = (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()
    want = pickle.loads(blob, encoding="bytes")[b"labels"]
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    dm.setup()
    assert dm.splits["test"].y.argmax(dim=1).tolist() == want


def test_randaugment_changes_train_batches_only_and_is_per_sample(tmp_path):
    write_cifar10(tmp_path, n=20)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), augment=True, batch_size=100, shuffle=False)
    dm.setup()
    assert dm.augmented
    raw = dm.splits["train"].x[:50]
    torch.manual_seed(0)
    aug = dm.featurize(raw, train=True)
    plain = dm.featurize(raw, train=False)
    assert torch.equal(plain, dm.train_inputs()[:50])  # the solver and caches see unaugmented inputs
    changed = (aug - plain).abs().amax(dim=1) > 1e-6
    assert 0 < changed.sum() < 50 or changed.all()  # per-sample draws (identity ops leave some unchanged)
    assert torch.equal(dm.featurize(dm.splits["test"].x[:5], train=False), dm.inputs("test")[:5])


def test_fashion_mnist_reads_idx_gz_and_plain(tmp_path):
    for gz in (True, False):
        root = write_fashion_mnist(tmp_path / str(gz), n=60, n_test=20, gz=gz)
        dm = FashionMNISTDataModule(data_dir=str(root), val_size=12)
        dm.setup()
        assert {k: len(v) for k, v in dm.splits.items()} == {"train": 48, "val": 12, "test": 20}
        assert dm.splits["train"].x.shape[1:] == (1, 28, 28) and dm.d_in == 784 and dm.d_out == 10


def test_fashion_mnist_default_dir_is_debians(tmp_path):
    dm = FashionMNISTDataModule()
    assert dm.data_dir == (DEBIAN_DIR if Path(DEBIAN_DIR).is_dir() else str(Path("data/fashion_mnist")))


@pytest.mark.parametrize("archive", [False, True])
def test_sgemm_reads_csv_and_uci_zip(tmp_path, archive):
    write_sgemm(tmp_path, n=200, archive=archive)
    dm = SGEMMDataModule(data_dir=str(tmp_path), split_seed=3)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 160, "val": 20, "test": 20}
    assert (dm.d_in, dm.d_out) == (14, 1)
    tr = dm.splits["train"]
    assert torch.allclose(tr.x.mean(0), torch.zeros(14), atol=1e-5)
    assert torch.allclose(tr.y.mean(0), torch.zeros(1), atol=1e-5) and torch.allclose(tr.y.std(0), torch.ones(1))
    four = SGEMMDataModule(data_dir=str(tmp_path), target="log_runs", inputs="paper18")
    four.setup()
    assert (four.d_in, four.d_out) == (18, 4)


def test_sgemm_target_is_log_of_mean_runtime(tmp_path):
    write_sgemm(tmp_path, n=50)
    dm = SGEMMDataModule(data_dir=str(tmp_path), val_frac=0, test_frac=0, standardize_y=False, shuffle=False)
    dm.setup()
    rows = [line.split(",") for line in (tmp_path / "sgemm_product.csv").read_text().splitlines()[1:]]
    want = torch.tensor([sum(float(v) for v in r[14:]) / 4 for r in rows], dtype=torch.float64).log()
    got = dm.splits["train"].y[:, 0].double()
    assert torch.allclose(got.sort().values, want.sort().values, atol=1e-5)


def _truncate(path: Path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _bad_cifar(tmp_path, what):
    root = write_cifar10(tmp_path, n=10, archive=what.startswith("archive"))
    folder = root / "cifar-10-batches-py"
    if what == "missing":
        (folder / "data_batch_3").unlink()
    elif what == "truncated_pickle":
        _truncate(folder / "data_batch_2")
    elif what == "not_a_pickle":
        (folder / "test_batch").write_bytes(b"hello, not a pickle")
    elif what == "wrong_shape":
        import numpy as np
        import pickle
        bad = {b"data": np.zeros((10, 3000), dtype=np.uint8), b"labels": [0] * 10}
        (folder / "data_batch_1").write_bytes(pickle.dumps(bad, protocol=2))
    elif what == "archive_truncated":
        _truncate(root / "cifar-10-python.tar.gz")
    return CIFAR10DataModule(data_dir=str(root))


@pytest.mark.parametrize("what,needle", [
    ("missing", "missing data_batch_3"), ("truncated_pickle", "data_batch_2: truncated or corrupt pickle"),
    ("not_a_pickle", "test_batch: truncated or corrupt pickle"), ("wrong_shape", "expected (n, 3072) uint8"),
    ("archive_truncated", "cifar-10-python.tar.gz: truncated or corrupt archive")])
def test_bad_cifar_files(tmp_path, what, needle):
    with pytest.raises(DataError, match=None) as err:
        _bad_cifar(tmp_path, what).setup()
    assert needle in str(err.value)


def test_cifar_not_found_says_where_to_put_files(tmp_path):
    with pytest.raises(DataError) as err:
        CIFAR10DataModule(data_dir=str(tmp_path / "nowhere")).setup()
    msg = str(err.value)
    assert "CIFAR-10 not found" in msg and "cifar-10-batches-py/" in msg and "cifar-10-python.tar.gz" in msg


def test_cifar_download_without_network_fails_clearly(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="could not download CIFAR-10"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=True).setup()
    assert not list(tmp_path.iterdir()) or all(p.stat().st_size == 0 for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("what,needle", [
    ("missing", "not found"), ("corrupt_gz", "truncated or corrupt gzip"), ("truncated_body", "truncated"),
    ("wrong_shape", "items of shape (27, 28)"), ("labels_as_images", "not an idx file of images")])
def test_bad_fashion_mnist_files(tmp_path, what, needle):
    import numpy as np
    root = write_fashion_mnist(tmp_path, n=30, n_test=10)
    images = root / "train-images-idx3-ubyte.gz"
    if what == "missing":
        (root / "t10k-labels-idx1-ubyte.gz").unlink()
    elif what == "corrupt_gz":
        _truncate(images, 0.3)
    elif what == "truncated_body":
        blob = idx_bytes(np.zeros((30, 28, 28), dtype=np.uint8))[:-100]
        images.write_bytes(gzip.compress(blob))
    elif what == "wrong_shape":
        images.write_bytes(gzip.compress(idx_bytes(np.zeros((30, 27, 28), dtype=np.uint8))))
    elif what == "labels_as_images":
        images.write_bytes((root / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError) as err:
        FashionMNISTDataModule(data_dir=str(root)).setup()
    assert needle in str(err.value)


@pytest.mark.parametrize("what,needle", [
    ("wrong_columns", "are not SGEMM's"), ("non_numeric", "line 5, column 'KWG': 'abc' is not a number"),
    ("short_row", "line 3 has 17 fields"), ("nonpositive_runtime", "runtimes must be finite and > 0"),
    ("empty", "no data rows"), ("bad_zip", "truncated or corrupt zip"), ("missing", "SGEMM not found")])
def test_bad_sgemm_files(tmp_path, what, needle):
    root = write_sgemm(tmp_path, n=20, archive=what == "bad_zip")
    csv_path = root / "sgemm_product.csv"
    if what != "bad_zip" and what != "missing":
        lines = csv_path.read_text().splitlines()
        if what == "wrong_columns":
            lines[0] = ",".join(HEADER[:-1] + ["Run5 (ms)"])
        elif what == "non_numeric":
            cells = lines[4].split(",")
            cells[2] = "abc"
            lines[4] = ",".join(cells)
        elif what == "short_row":
            lines[2] = ",".join(lines[2].split(",")[:-1])
        elif what == "nonpositive_runtime":
            lines[1] = ",".join(lines[1].split(",")[:-1] + ["0"])
        elif what == "empty":
            lines = lines[:1]
        csv_path.write_text("\n".join(lines) + "\n")
    elif what == "bad_zip":
        _truncate(root / "sgemm_product_dataset.zip")
    else:
        csv_path.unlink()
    with pytest.raises(DataError) as err:
        SGEMMDataModule(data_dir=str(root)).setup()
    assert needle in str(err.value)


@pytest.mark.parametrize("model", ["relu", "grelu", "grelu_to_relu"])
@pytest.mark.parametrize("data", ["cifar10", "fashion_mnist", "sgemm"])
def test_short_training_run_with_every_model(cfg_for, tmp_path, data, model):
    writers = {"cifar10": lambda p: write_cifar10(p, n=20, n_test=10), "sgemm": lambda p: write_sgemm(p, n=120),
               "fashion_mnist": lambda p: write_fashion_mnist(p, n=60, n_test=10)}
    root = writers[data](tmp_path / "data")
    s = train(cfg_for(f"data={data}", f"model={model}", f"data.data_dir={root}", "data.batch_size=32",
                      "model.width=64", "model.depth=2", "model.lr=1e-4", "trainer.max_epochs=2", "callbacks=none"))
    assert s["status"] == "completed" and s["steps"] > 2 and s["data"] == data
    assert s["train/sse"] is not None and ("test/sse" not in s or s["test/sse"] is not None)  # and binds first
    if model == "grelu_to_relu":
        assert s["switch/epoch"] == 1


def test_missing_data_from_the_cli_is_one_line_exit_2(tmp_path):
    out = run_cli("data=cifar10", f"data.data_dir={tmp_path / 'none'}", cwd=tmp_path)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "CIFAR-10 not found" in lines[0] and "Traceback" not in out.stderr


# CI installs the package, so there this test runs (and fails if the data are missing), never skips.
@pytest.mark.skipif(not Path(DEBIAN_DIR).is_dir() and not os.environ.get("CI"),
                    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
def test_grelu_learns_on_real_fashion_mnist(cfg_for, tmp_path):
    s = train(cfg_for("data=fashion_mnist", "model=grelu", "data.limit_train=3000", "data.batch_size=250",
                      "model.width=512", "model.depth=2", "model.lr=1e-4", "trainer.max_epochs=1", "callbacks=none"))
    assert s["status"] == "completed" and s["train/sse"] < 0.8 * s["initial/train_sse"]
    assert s["n_train"] == 3000


def test_batched_randaugment_equals_torchvisions_per_image_application():
    """Every (op, sign) of RandAugment's space, applied to a group at once, equals applying it image by
    image; so the batched path is RandAugment once per image, only faster."""
    from lightning_grelu.data.randaugment import BatchRandAugment

    aug = BatchRandAugment(num_ops=2, magnitude=9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    ops = len(aug.ops)
    # slot 1 covers every op with both signs; slot 2 random: groups of several images per (op, sign)
    first = (torch.arange(64) % ops, (torch.arange(64) // ops) % 2 == 1)
    draws = [first, (torch.randint(ops, (64,), generator=gen), torch.rand(64, generator=gen) <= 0.5)]
    batched, reference = aug.apply(x, draws), aug.per_image(x, draws)
    assert batched.dtype == torch.uint8 and batched.shape == x.shape
    assert torch.equal(batched, reference)
    assert not torch.equal(batched, x)  # it did augment
    torch.manual_seed(1)
    once = aug(x)
    assert once.shape == x.shape and not torch.equal(once, x)


def test_one_data_root_for_every_data_set_from_paths_or_the_environment(tmp_path, monkeypatch):
    from conftest import compose_cfg

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRELU_DATA_DIR", raising=False)
    cfg = compose_cfg(tmp_path / "run", "data=cifar10")
    assert cfg.paths.data_dir == str(tmp_path / "data")  # relative to where it runs, recorded absolute
    assert cfg.data.data_dir == str(tmp_path / "data" / "cifar10")
    monkeypatch.setenv("GRELU_DATA_DIR", str(tmp_path / "shared"))
    for name in ("cifar10", "sgemm"):
        assert compose_cfg(tmp_path / "run", f"data={name}").data.data_dir == str(tmp_path / "shared" / name)
    assert compose_cfg(tmp_path / "run", "data=sgemm", f"paths.data_dir={tmp_path / 'x'}").data.data_dir == \
        str(tmp_path / "x" / "sgemm")
    (tmp_path / "shared" / "fashion_mnist").mkdir(parents=True)  # one's own copy wins over Debian's
    assert compose_cfg(tmp_path / "run", "data=fashion_mnist").data.data_dir == str(tmp_path / "shared" / "fashion_mnist")


@pytest.mark.slow
def test_a_run_reads_its_files_under_grelu_data_dir_and_a_missing_set_says_where_they_go(tmp_path):
    from conftest import run_cli

    write_sgemm(tmp_path / "root" / "sgemm", n=200)
    env = {"GRELU_DATA_DIR": str(tmp_path / "root")}
    out = run_cli("data=sgemm", "model.width=32", "trainer.max_epochs=1", "callbacks=none",
                  f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    missing = run_cli("data=cifar10", f"paths.run_dir={tmp_path / 'run2'}", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and str(tmp_path / "root" / "cifar10") in missing.stderr
    assert "GRELU_DATA_DIR" in missing.stderr
