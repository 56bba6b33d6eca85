"""Presets, the spec grammar and Glorot initialisation."""

import math

import pytest
import torch

from bioscale.errors import UsageError
from bioscale.layers import Conv2d, Linear, LocallyConnected2d
from bioscale.nets import Net, arch_family, build_net, parse_spec, preset


def test_paper_presets_have_table_3_shapes():
    mnist_lc = build_net("lc", "mnist", (1, 28, 28), 10)
    kinds = [type(b.layer) for b in mnist_lc.blocks]
    assert kinds == [LocallyConnected2d, LocallyConnected2d, Linear]
    assert [b.layer.out_channels for b in mnist_lc.blocks[:2]] == [32, 64]
    assert mnist_lc.blocks[1].layer.output_size == (7, 7)  # two stride-2 layers: 28 -> 14 -> 7
    assert mnist_lc.blocks[2].layer.in_features == 64 * 7 * 7 and mnist_lc.blocks[2].layer.out_features == 1024
    fc = build_net("fc", "fashion-mnist", (1, 28, 28), 10)
    assert [b.layer.out_features for b in fc.blocks] == [256] * 5
    cifar = build_net("lc", "cifar10", (3, 32, 32), 10)
    assert [(b.layer.kernel_size, b.layer.out_channels, b.layer.stride) for b in cifar.blocks[:3]] == [(5, 64, 2), (5, 128, 2), (3, 256, 1)]
    imagenet = build_net("lc", "imagenet32", (3, 32, 32), 1000)
    assert len(imagenet.blocks) == 7 and imagenet.output.out_features == 1000
    assert imagenet(torch.zeros(2, 3, 32, 32)).shape == (1, 2, 1000)  # (members, batch, classes)


def test_conv_preset_is_the_lc_geometry_with_shared_weights():
    lc, conv = build_net("lc", "digits", (1, 8, 8), 10), build_net("conv", "digits", (1, 8, 8), 10)
    assert preset("digits", "conv") == preset("digits", "lc").replace("lc:", "conv:")
    for a, b in zip(lc.blocks, conv.blocks):
        if isinstance(a.layer, LocallyConnected2d):
            assert isinstance(b.layer, Conv2d) and b.layer.stride == a.layer.stride
            assert b.layer.kernel_size == a.layer.kernel_size and b.layer.out_channels == a.layer.out_channels
    x = torch.randn(3, 1, 8, 8)
    assert lc(x).shape == conv(x).shape


def test_spec_grammar():
    layers = parse_spec("2*lc:5:8:2, conv:3:4, fc:64")
    assert [str(l) for l in layers] == ["lc:5:8:2", "lc:5:8:2", "conv:3:4:1", "fc:64"]
    assert arch_family("3*fc:10") == "fc" and arch_family("lc:3:4,fc:5") == "lc" and arch_family("lc:3:4,conv:3:4") == "mixed"
    for bad in ["fc", "fc:0", "lc:4:8", "mlp:3", "lc:3:8:2:1", "0*fc:3"]:
        with pytest.raises(UsageError, match="bad layer"):
            parse_spec(bad)
    with pytest.raises(UsageError, match="cannot follow a fully connected layer"):
        Net("fc:10,lc:3:4", (1, 8, 8), 10)


def test_glorot_initialisation_and_activation():
    net = Net("lc:3:40:1,fc:300", (20, 8, 8), 10, "relu")
    lc, fc = net.blocks[0].layer, net.blocks[1].layer
    bound_lc = math.sqrt(6 / (20 * 9 + 40 * 9))
    assert lc.weight.abs().max() <= bound_lc and lc.weight.abs().max() > 0.95 * bound_lc
    assert abs(lc.weight.var().item() - bound_lc**2 / 3) < 0.05 * bound_lc**2
    bound_fc = math.sqrt(6 / (fc.in_features + 300))
    assert fc.weight.abs().max() <= bound_fc and torch.all(fc.bias == 0)
    assert net.activation.name == "relu" and torch.all(net.blocks[0](torch.randn(1, 4, 20, 8, 8)) >= 0)


def test_members_are_initialised_from_their_own_seeds_alone():
    """Member k of a population starts exactly as a one-member net of seed k; the global torch seed plays no part."""
    torch.manual_seed(0)
    population = Net("lc:3:4:2,fc:6", (1, 8, 8), 10, seeds=(3, 5))
    torch.manual_seed(1)
    alone = [Net("lc:3:4:2,fc:6", (1, 8, 8), 10, seeds=(seed,)) for seed in (3, 5)]
    assert population.members == 2 and all(net.members == 1 for net in alone)
    for k, net in enumerate(alone):
        for (name, p), q in zip(population.named_parameters(), net.parameters(), strict=True):
            assert p.shape == (2, *q.shape[1:]), name
            assert torch.equal(p[k], q[0]), name
    assert not torch.equal(population.output.weight[0], population.output.weight[1])
    x = torch.randn(4, 1, 8, 8)
    logits = population(x)
    assert logits.shape == (2, 4, 10)
    for k, net in enumerate(alone):
        torch.testing.assert_close(logits[k], net(x)[0])
