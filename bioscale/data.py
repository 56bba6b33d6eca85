"""Datasets as tensors on the training device: normalised once, sliced into minibatches there.

Files are read by torchvision (MNIST, Fashion-MNIST, CIFAR-10) or numpy (downsampled ImageNet's
`.npz` batches, which torchvision has no loader for); digits ships with scikit-learn.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import datasets
from .errors import UsageError, first_line

@dataclass
class Data:
    """A dataset split into train / validation / test tensors on one device."""

    name: str
    n_classes: int
    input_shape: tuple[int, int, int]
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor | None
    val_y: Tensor | None
    test_x: Tensor
    test_y: Tensor

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.train_x.device


def default_root() -> Path:
    """The data root: $BIOSCALE_DATA, else ./data."""
    return Path(os.environ.get("BIOSCALE_DATA", "data"))


@functools.lru_cache(maxsize=4)
def load(name: str, *, root: str | Path | None = None, val_size: float | int | None = None,
         split_seed: int = 0, device: str = "cpu", download: bool = False) -> Data:
    """Load dataset `name`, carve a seeded validation split from its training set, move it to `device`.

    `val_size` is a count or a fraction of the training set (default per dataset); 0 trains on
    the full training set. Inputs are standardised per channel with training-set statistics.
    """
    info = datasets.get(name)
    root = Path(root) if root is not None else default_root()
    (train_x, train_y), (test_x, test_y) = _READERS[name](root, download)
    val_size = info.val_size if val_size is None else val_size
    n_val = datasets.validation_count(val_size, len(train_x))
    if not 0 <= n_val < len(train_x):
        raise UsageError(f"validation size {val_size} does not fit a training set of {len(train_x)} examples")
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = order[:n_val], order[n_val:]
    train_x, val_x = train_x[train_idx], train_x[val_idx]
    train_y, val_y = train_y[train_idx], train_y[val_idx]
    dims = (0, 2, 3)
    mean, std = train_x.mean(dims, keepdim=True), train_x.std(dims, keepdim=True).clamp_min(1e-6)

    def prepare(x: Tensor) -> Tensor:
        return ((x - mean) / std).to(device)

    return Data(name, info.n_classes, tuple(train_x.shape[1:]), prepare(train_x), train_y.to(device),
                prepare(val_x) if n_val else None, val_y.to(device) if n_val else None,
                prepare(test_x), test_y.to(device))


def augment(x: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Random crop with zero padding and random horizontal flip, on the batch's own device."""
    batch, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
    out = padded[torch.arange(batch, device=x.device)[:, None, None, None],
                 torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    flip = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def _missing(name: str, root: Path, why: object) -> UsageError:
    layout = datasets.get(name).files.format(root=root)
    return UsageError(f"cannot read {name} ({why}); expected {layout}; point --data-root at the folder that holds it")


def _images(x: np.ndarray | Tensor) -> Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    x = torch.as_tensor(np.asarray(x))
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images (1797, 8, 8) in 0..16, labels), read from its file without importing sklearn."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")  # finding the package runs none of its (slow: SciPy) imports
    if spec is None or spec.origin is None:
        raise ImportError("scikit-learn is not installed; its digits are the default dataset (pip install scikit-learn)")
    with gzip.open(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz") as file:
        table = np.loadtxt(file, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def _read_digits(root: Path, download: bool) -> tuple:
    images, labels = digits_arrays()
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(labels)
    # A fixed 20 % test split, the same for every run, since digits ships unsplit.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(12345))
    n_test = datasets.DIGITS_TEST
    return (x[order[n_test:]], y[order[n_test:]]), (x[order[:n_test]], y[order[:n_test]])


def _torchvision_reader(name: str):
    def read(root: Path, download: bool) -> tuple:
        import torchvision.datasets as tvd

        klass = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": _cifar10_class()}[name]
        try:
            splits = [klass(str(root), train=train, download=download) for train in (True, False)]
        except Exception as error:  # torchvision raises RuntimeError, pickle/IO errors on corrupt files
            why = "files not found" if "not found" in str(error) else f"{type(error).__name__}: {first_line(error, '')}"
            raise _missing(name, root, why) from None
        return tuple((_images(s.data), torch.as_tensor(np.asarray(s.targets), dtype=torch.long)) for s in splits)

    return read


def _read_imagenet32(root: Path, download: bool) -> tuple:
    folder = root / "imagenet32"
    train_files = sorted(folder.glob("train_data_batch_*.npz"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not train_files or not (folder / "val_data.npz").exists():
        raise _missing("imagenet32", root, "files not found")

    def read(files: list[Path]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for f in files:
            try:
                with np.load(f) as batch:
                    xs.append(batch["data"].reshape(-1, 3, 32, 32))
                    ys.append(np.asarray(batch["labels"]).reshape(-1) - 1)  # files count classes from 1
            except Exception as error:
                raise _missing("imagenet32", root, f"{f.name}: {error}") from None
        x = torch.from_numpy(np.concatenate(xs)).float().div_(255)
        return x, torch.from_numpy(np.concatenate(ys)).long()

    return read(train_files), read([folder / "val_data.npz"])


def _cifar10_class():
    import torchvision.datasets as tvd

    class CIFAR10(tvd.CIFAR10):
        """torchvision's reader, judging files by reading them rather than by their MD5 sums."""

        train_list = [(name, None) for name, _ in tvd.CIFAR10.train_list]
        test_list = [(name, None) for name, _ in tvd.CIFAR10.test_list]
        meta = {**tvd.CIFAR10.meta, "md5": None}

    return CIFAR10


_READERS = {"digits": _read_digits, "imagenet32": _read_imagenet32,
            **{name: _torchvision_reader(name) for name in ("mnist", "fashion-mnist", "cifar10")}}
