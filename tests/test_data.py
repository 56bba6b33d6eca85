"""Dataset loaders on real files in each dataset's own format."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bioscale.data import augment, digits_arrays, load
from bioscale.errors import UsageError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_cifar10(root: Path, per_batch: int = 20) -> None:
    """CIFAR-10's python version: protocol-2 pickles of dicts with 'data' (N, 3072 uint8) and 'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist(), "batch_label": name}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f, protocol=2)


def write_imagenet32(root: Path, per_batch: int = 30) -> None:
    """Downsampled ImageNet: .npz batches with 'data' (N, 3072 uint8) and 1-based 'labels'."""
    folder = root / "imagenet32"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ["train_data_batch_1", "train_data_batch_2", "val_data"]:
        np.savez(folder / f"{name}.npz", data=rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 labels=rng.integers(1, 1001, per_batch), mean=np.zeros(3072))


def test_digits_splits_are_disjoint_seeded_and_standardised():
    data = load("digits")
    assert data.input_shape == (1, 8, 8) and data.n_classes == 10
    assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 1797
    assert abs(data.train_x.mean().item()) < 1e-4 and abs(data.train_x.std().item() - 1) < 1e-3
    other = load("digits", split_seed=1)
    assert not torch.equal(data.val_y, other.val_y)
    assert torch.equal(other.test_y, data.test_y)  # the test set never moves
    full = load("digits", val_size=0)
    assert full.val_x is None and len(full.train_x) == len(data.train_x) + len(data.val_x)


def test_digits_read_from_the_file_equal_scikit_learns_loader_without_importing_it():
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    images, labels = digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    assert images.dtype == reference.images.dtype and labels.dtype == reference.target.dtype
    code = "import sys; from bioscale.data import digits_arrays; digits_arrays(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.skipif(not (SHARED / "MNIST").exists(), reason="needs ../shared/data")
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_family_from_the_shared_idx_files(name):
    data = load(name, root=SHARED)
    assert data.train_x.shape == (50_000, 1, 28, 28) and data.val_x.shape == (10_000, 1, 28, 28)
    assert data.test_x.shape == (10_000, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and set(data.test_y.unique().tolist()) == set(range(10))


def test_cifar10_from_pickle_batches(tmp_path):
    write_cifar10(tmp_path)
    data = load("cifar10", root=tmp_path, val_size=10)
    assert data.input_shape == (3, 32, 32)
    assert len(data.train_x) == 90 and len(data.val_x) == 10 and len(data.test_x) == 20
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb"))
    assert data.test_y.tolist() == raw["labels"]
    assert abs(data.train_x.mean((0, 2, 3))).max() < 1e-4  # standardised per channel


def test_imagenet32_from_npz_batches(tmp_path):
    write_imagenet32(tmp_path)
    data = load("imagenet32", root=tmp_path, val_size=6)
    assert data.n_classes == 1000 and data.input_shape == (3, 32, 32)
    assert len(data.train_x) == 54 and len(data.test_x) == 30
    labels = np.load(tmp_path / "imagenet32" / "val_data.npz")["labels"]
    assert data.test_y.tolist() == (labels - 1).tolist()
    # Channel-first rows: the first 1024 bytes of a row are the red plane.
    row = np.load(tmp_path / "imagenet32" / "val_data.npz")["data"][0]
    red = torch.tensor(row[:1024], dtype=torch.float32).view(32, 32)
    x = data.test_x[0, 0]
    corr = torch.corrcoef(torch.stack([x.flatten(), red.flatten()]))[0, 1]
    assert corr > 0.999


@pytest.mark.parametrize("name,expected", [
    ("mnist", "MNIST/raw/"), ("fashion-mnist", "FashionMNIST/raw/"),
    ("cifar10", "cifar-10-batches-py/"), ("imagenet32", "imagenet32/"),
])
def test_missing_files_name_the_expected_layout(tmp_path, name, expected):
    with pytest.raises(UsageError, match=f"{tmp_path}/{expected}.*--data-root"):
        load(name, root=tmp_path)


def test_corrupt_files_give_one_clear_error(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="cannot read cifar10"):
        load("cifar10", root=tmp_path)
    write_imagenet32(tmp_path / "i")
    (tmp_path / "i" / "imagenet32" / "val_data.npz").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="val_data.npz"):
        load("imagenet32", root=tmp_path / "i")


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(UsageError, match="choose one of: digits, mnist"):
        load("svhn")


def test_augment_crops_and_flips_on_device():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape and out.device == x.device
    assert not torch.equal(out, x)
    # Every output is a shifted (possibly mirrored) window of the zero-padded input.
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(2):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)
