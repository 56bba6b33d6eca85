"""Architecture spaces, one per family (fc, lc, conv), scaled around each dataset's preset.

fc:       `depth` hidden layers of `width` units.
lc, conv: `depth` spatial layers with `kernel` × `kernel` filters; the first has `channels`
          output channels and each next one doubles them (up to 8×); strides are 2 while the
          feature map is wider than 2, then 1 (the paper replaced pooling by strided layers);
          then one fully connected layer of `width` units where the dataset's preset has one.
"""

from __future__ import annotations

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from bioscale import datasets
from bioscale.errors import UsageError
from bioscale.nets import parse_spec, preset

FAMILIES = ("fc", "lc", "conv")


def _around(n: int) -> IntDistribution:
    """Sizes from a quarter to twice the preset's, log-scaled."""
    return IntDistribution(max(2, n // 4), 2 * n, log=True)


def space(family: str, dataset: str) -> dict[str, BaseDistribution]:
    """The architecture hyperparameters of `family` on `dataset`."""
    if family not in FAMILIES:
        raise UsageError(f"the architecture stage searches a family: choose one of {', '.join(FAMILIES)} (got {family!r})")
    layers = parse_spec(preset(dataset, "fc" if family == "fc" else "lc"))
    spatial = [layer for layer in layers if layer.kind != "fc"]
    dense = [layer for layer in layers if layer.kind == "fc"]
    if family == "fc":
        return {"depth": IntDistribution(1, max(6, len(dense) + 1)), "width": _around(dense[0].size)}
    out: dict[str, BaseDistribution] = {
        "depth": IntDistribution(1, max(4, len(spatial) + 1)),
        "channels": _around(spatial[0].size),
        "kernel": CategoricalDistribution((3, 5)),
    }
    if dense:
        out["width"] = _around(dense[0].size)
    return out


def build(family: str, dataset: str, params: dict[str, int]) -> str:
    """The spec string of one point of `family`'s space, e.g. 'lc:3:16:2,lc:3:32:2,fc:128'."""
    if family == "fc":
        return f"{int(params['depth'])}*fc:{int(params['width'])}"
    side, channels, layers = datasets.get(dataset).input_shape[-1], int(params["channels"]), []
    for i in range(int(params["depth"])):
        stride = 2 if side > 2 else 1
        side = -(-side // stride)
        layers.append(f"{family}:{int(params['kernel'])}:{min(channels * 2 ** i, channels * 8)}:{stride}")
    if "width" in params:
        layers.append(f"fc:{int(params['width'])}")
    return ",".join(layers)
