"""The floor: bioscale's BP step of one member against plain PyTorch's step on the same shapes.

    python benchmarks/bench_floor.py [--device cpu|cuda] [--threads 1] [--batch-size 128] [--rounds 30]
        [--cases mnist/fc,mnist/conv,cifar10/lc]

Plain PyTorch is an `nn.Sequential` of `nn.Linear` / `nn.Conv2d` and `nn.Tanh` with
`torch.optim.Adam` (its defaults), started from bioscale's initial weights; a locally connected
layer, which PyTorch does not have, is the `nn.Conv2d` of the same geometry there. Each round
times one step of each, in alternating order, on the same minibatch (on the CPU as the thread's
CPU time, `bench_rules.step_seconds`); the table gives the median step times and the median of
the rounds' ratios (bioscale / PyTorch), since these machines are noisy. Before timing, one
step of each from the same weights must give the same loss (fc and conv), so both time the
same maths.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from bioscale import rules
from bioscale.layers import Linear, LocallyConnected2d
from bioscale.nets import Net, build_net
from bench_rules import SHAPES, step_seconds

CASES = ("mnist/fc", "mnist/conv", "cifar10/lc")


def plain_model(net: Net) -> nn.Sequential:
    """`net` (one member) as plain PyTorch modules with its weights; an LC layer becomes the convolution of its geometry."""
    modules: list[nn.Module] = []
    for block in net.blocks:
        layer = block.layer
        if block.flatten:
            modules.append(nn.Flatten())
        if isinstance(layer, Linear):
            plain = nn.Linear(layer.in_features, layer.out_features)
        else:
            plain = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        if not isinstance(layer, LocallyConnected2d):
            with torch.no_grad():
                plain.weight.copy_(layer.weight[0])
                plain.bias.copy_(layer.bias[0])
        modules += [plain, nn.Tanh()]
    if net.flatten_output_input:
        modules.append(nn.Flatten())
    output = nn.Linear(net.output.in_features, net.output.out_features)
    with torch.no_grad():
        output.weight.copy_(net.output.weight[0])
        output.bias.copy_(net.output.bias[0])
    return nn.Sequential(*modules, output)


def plain_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One step of plain PyTorch: cross-entropy, backward, Adam."""
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()


def floor_case(dataset: str, family: str, batch_size: int, rounds: int, device: str) -> dict[str, float]:
    """Median step seconds of bioscale's BP and of plain PyTorch, and the median of their per-round ratios."""
    shape, classes = SHAPES[dataset]
    net = build_net(family, dataset, shape, classes).to(device)
    model = plain_model(net).to(device)
    bp = rules.create("bp", net)
    optimizer = torch.optim.Adam(model.parameters(), lr=bp.forward_lr)
    x = torch.randn(batch_size, *shape, device=device)
    y = torch.randint(0, classes, (batch_size,), device=device)
    ours, theirs = bp.step(x, y), plain_step(model, optimizer, x, y)  # also the warm-up
    if family != "lc" and not torch.allclose(ours[0], theirs, rtol=1e-5):
        raise AssertionError(f"{dataset}/{family}: bioscale's loss {ours[0].item()} is not PyTorch's {theirs.item()}")
    times: dict[str, list[float]] = {"bioscale": [], "torch": []}
    steps = {"bioscale": lambda: bp.step(x, y), "torch": lambda: plain_step(model, optimizer, x, y)}
    for r in range(rounds):
        for name in (("bioscale", "torch") if r % 2 == 0 else ("torch", "bioscale")):
            times[name].append(step_seconds(steps[name], device))
    ratios = [a / b for a, b in zip(times["bioscale"], times["torch"])]
    return {"bioscale": statistics.median(times["bioscale"]), "torch": statistics.median(times["torch"]),
            "ratio": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cases", default=",".join(CASES), help=f"dataset/family pairs (default {','.join(CASES)})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    name = (torch.cuda.get_device_name() if device.startswith("cuda")
            else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"# bioscale's BP against plain PyTorch, {datetime.date.today()}, {device} ({name}), "
          f"torch {torch.__version__}, batch {args.batch_size}, {args.rounds} interleaved rounds\n")
    print("| dataset | family | bioscale BP step (ms) | PyTorch step (ms) | ratio (median of rounds) | ratio range |")
    print("|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        dataset, family = case.split("/")
        t = floor_case(dataset, family, args.batch_size, args.rounds, device)
        plain = "conv" if family == "lc" else family
        print(f"| {dataset} | {family} (PyTorch: {plain}) | {1000 * t['bioscale']:.2f} | {1000 * t['torch']:.2f} | "
              f"{t['ratio']:.3f} | {t['low']:.2f}-{t['high']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
