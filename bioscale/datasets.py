"""Every fact about each dataset in one registry: shape, classes, validation split, files, presets, the paper's name.

Data loading, the networks' presets, the architecture spaces, the CLI's help and the paper
comparison all read it; adding a dataset means one entry here and one reader in `bioscale.data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UsageError


@dataclass(frozen=True)
class Dataset:
    """What bioscale knows about one dataset."""

    name: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    n_classes: int
    val_size: float | int  # carved from the training set: a count, or a fraction when below 1
    examples: tuple[int, int]  # (training, test) examples as bioscale.data reads them, before the validation split
    files: str  # the files expected under the data root ("" when the data ships with a package)
    presets: dict[str, str] = field(default_factory=dict)  # "fc" and "lc" spec strings (Table 3 of the paper)
    paper_name: str | None = None  # its name in the paper's tables, when the paper ran it
    about: str = ""

    def splits(self) -> tuple[int, int, int]:
        """(train, validation, test) examples as bioscale.data splits them by default."""
        train, test = self.examples
        n_val = validation_count(self.val_size, train)
        return train - n_val, n_val, test

    def preset(self, family: str) -> str:
        """The spec string of the `family` preset ('fc', 'lc', or 'conv': the LC geometry with shared weights)."""
        if family == "conv":
            return self.presets["lc"].replace("lc:", "conv:")
        return self.presets[family]


DIGITS_TEST = 1797 // 5  # digits ships unsplit: bioscale.data holds out a fixed 20 % as its test set
_MNIST_PRESETS = {"fc": "5*fc:256", "lc": "lc:3:32:2,lc:3:64:2,fc:1024"}
_IDX = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"

# Table 3 of the paper. The third CIFAR LC layer's stride is not printed there: we use 1. The paper
# ran no FC net on ImageNet; the CIFAR FC shape stands in. Digits (8x8) gets scaled-down nets of the same kinds.
REGISTRY: dict[str, Dataset] = {d.name: d for d in (
    Dataset("digits", (1, 8, 8), 10, 0.2, (1797 - DIGITS_TEST, DIGITS_TEST), "",
            {"fc": "3*fc:128", "lc": "lc:3:16:2,lc:3:32:2,fc:128"},
            about="scikit-learn's bundled 8x8 digits (default, offline)"),
    Dataset("mnist", (1, 28, 28), 10, 10_000, (60_000, 10_000), f"{{root}}/MNIST/raw/ with {_IDX}", _MNIST_PRESETS, "mnist"),
    Dataset("fashion-mnist", (1, 28, 28), 10, 10_000, (60_000, 10_000), f"{{root}}/FashionMNIST/raw/ with {_IDX}", _MNIST_PRESETS),
    Dataset("cifar10", (3, 32, 32), 10, 5_000, (50_000, 10_000),
            "{root}/cifar-10-batches-py/ with data_batch_1 ... data_batch_5 and test_batch (the python pickle version)",
            {"fc": "3*fc:1024", "lc": "lc:5:64:2,lc:5:128:2,lc:3:256:1,fc:1024"}, "cifar10"),
    Dataset("imagenet32", (3, 32, 32), 1000, 10_000, (1_281_167, 50_000),
            "{root}/imagenet32/ with train_data_batch_*.npz and val_data.npz (Chrabaszcz et al. 2017, keys 'data' and 'labels')",
            {"fc": "3*fc:1024", "lc": "lc:9:48:4,lc:3:48:2,lc:5:96:1,lc:3:96:2,lc:3:192:1,lc:3:192:2,lc:3:384:1"},
            "imagenet", about="downsampled ImageNet, 32x32 (the paper used full-size images)"),
)}
NAMES = tuple(REGISTRY)


def validation_count(val_size: float | int, train: int) -> int:
    """The validation examples carved from `train` training examples: `val_size` is a count, or a fraction when below 1."""
    return int(round(val_size * train)) if isinstance(val_size, float) and val_size < 1 else int(val_size)


def get(name: str) -> Dataset:
    """The registry entry of `name`; an unknown name is a UsageError listing the known ones."""
    if name not in REGISTRY:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(NAMES)}")
    return REGISTRY[name]


def help_text() -> str:
    """The datasets for a command's --dataset help."""
    return ", ".join(f"{d.name} ({d.about})" if d.about and d.name == "digits" else d.name for d in REGISTRY.values())
