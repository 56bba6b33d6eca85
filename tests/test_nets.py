"""Presets, the spec grammar and Glorot initialisation."""

import math

import pytest
import torch
from torch import nn

from bioscale.errors import UsageError
from bioscale.layers import LocallyConnected2d
from bioscale.nets import Net, arch_family, build_net, parse_spec, preset


def test_paper_presets_have_table_3_shapes():
    mnist_lc = build_net("lc", "mnist", (1, 28, 28), 10)
    kinds = [type(b.layer) for b in mnist_lc.blocks]
    assert kinds == [LocallyConnected2d, LocallyConnected2d, nn.Linear]
    assert [b.layer.out_channels for b in mnist_lc.blocks[:2]] == [32, 64]
    assert mnist_lc.blocks[1].layer.output_size == (7, 7)  # two stride-2 layers: 28 -> 14 -> 7
    assert mnist_lc.blocks[2].layer.in_features == 64 * 7 * 7 and mnist_lc.blocks[2].layer.out_features == 1024
    fc = build_net("fc", "fashion-mnist", (1, 28, 28), 10)
    assert [b.layer.out_features for b in fc.blocks] == [256] * 5
    cifar = build_net("lc", "cifar10", (3, 32, 32), 10)
    assert [(b.layer.kernel_size, b.layer.out_channels, b.layer.stride) for b in cifar.blocks[:3]] == [(5, 64, 2), (5, 128, 2), (3, 256, 1)]
    imagenet = build_net("lc", "imagenet32", (3, 32, 32), 1000)
    assert len(imagenet.blocks) == 7 and imagenet.output.out_features == 1000
    assert imagenet(torch.zeros(2, 3, 32, 32)).shape == (2, 1000)


def test_conv_preset_is_the_lc_geometry_with_shared_weights():
    lc, conv = build_net("lc", "digits", (1, 8, 8), 10), build_net("conv", "digits", (1, 8, 8), 10)
    assert preset("digits", "conv") == preset("digits", "lc").replace("lc:", "conv:")
    for a, b in zip(lc.blocks, conv.blocks):
        if isinstance(a.layer, LocallyConnected2d):
            assert isinstance(b.layer, nn.Conv2d) and b.layer.stride[0] == a.layer.stride
            assert b.layer.kernel_size[0] == a.layer.kernel_size and b.layer.out_channels == a.layer.out_channels
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
    torch.manual_seed(0)
    net = Net("lc:3:40:1,fc:300", (20, 8, 8), 10, "relu")
    lc, fc = net.blocks[0].layer, net.blocks[1].layer
    bound_lc = math.sqrt(6 / (20 * 9 + 40 * 9))
    assert lc.weight.abs().max() <= bound_lc and lc.weight.abs().max() > 0.95 * bound_lc
    assert abs(lc.weight.var().item() - bound_lc**2 / 3) < 0.05 * bound_lc**2
    bound_fc = math.sqrt(6 / (fc.in_features + 300))
    assert fc.weight.abs().max() <= bound_fc and torch.all(fc.bias == 0)
    assert net.activation.name == "relu" and torch.all(net.blocks[0](torch.randn(4, 20, 8, 8)) >= 0)
