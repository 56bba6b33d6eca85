"""Member layers against plain torch: LocallyConnected2d against nn.Conv2d, and the feedback path of every layer family."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bioscale import population
from bioscale.layers import (
    Conv2d,
    Linear,
    LocallyConnected2d,
    Scratch,
    _WithFeedback,
    apply_with_feedback,
    conv2d_grads,
    conv2d_input_grad,
    conv2d_weight_grad,
    lc2d_input_grad,
)


def lc_like_convs(convs: list[nn.Conv2d], input_size: tuple[int, int]) -> LocallyConnected2d:
    """An LC layer of one member per conv, whose every location holds that conv's filter."""
    conv = convs[0]
    lc = LocallyConnected2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], input_size,
                            stride=conv.stride[0], padding=conv.padding[0], members=len(convs))
    with torch.no_grad():
        for k, conv in enumerate(convs):
            lc.weight[k].copy_(conv.weight.reshape(conv.out_channels, -1).expand_as(lc.weight[k]))
            lc.bias[k].copy_(conv.bias[:, None, None].expand_as(lc.bias[k]))
    return lc


@pytest.mark.parametrize("in_ch,out_ch,kernel,stride,padding,size", [
    (1, 4, 3, 1, 1, (8, 8)), (3, 5, 3, 2, 1, (9, 7)), (2, 3, 5, 2, 2, (10, 10)),
    (4, 2, 1, 1, 0, (5, 6)), (2, 6, 3, 1, 0, (7, 7)), (3, 2, 5, 3, 1, (11, 9)),
])
def test_lc_with_shared_weights_equals_conv(in_ch, out_ch, kernel, stride, padding, size):
    """Two members, each against its own nn.Conv2d on its own input."""
    torch.manual_seed(0)
    convs = [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding) for _ in range(2)]
    for conv in convs:
        nn.init.normal_(conv.bias)
    lc = lc_like_convs(convs, size)
    x = torch.randn(2, 4, in_ch, *size, requires_grad=True)
    y_lc = lc(x)
    g = torch.randn_like(y_lc)
    gx_lc, gw_lc, gb_lc = torch.autograd.grad(y_lc, (x, lc.weight, lc.bias), g)
    for k, conv in enumerate(convs):
        y_conv = conv(x[k])
        assert y_lc[k].shape == y_conv.shape
        torch.testing.assert_close(y_lc[k], y_conv, rtol=1e-5, atol=1e-5)
        gx_conv, gw_conv, gb_conv = torch.autograd.grad(y_conv, (x, conv.weight, conv.bias), g[k])
        torch.testing.assert_close(gx_lc[k], gx_conv[k], rtol=1e-4, atol=1e-5)
        # Shared-weight gradient = sum over locations of the per-location gradients.
        torch.testing.assert_close(gw_lc[k].sum(0).view_as(gw_conv), gw_conv, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gb_lc[k].sum((1, 2)), gb_conv, rtol=1e-4, atol=1e-4)


def make_linear(members: int = 1) -> Linear:
    return Linear(6, 4, members=members)


def make_conv(members: int = 1) -> Conv2d:
    return Conv2d(2, 3, 3, stride=2, padding=1, members=members)


def make_lc(members: int = 1) -> LocallyConnected2d:
    return LocallyConnected2d(2, 3, 3, (6, 6), stride=2, members=members)


def layer_input(layer, members: int, batch: int, **kwargs) -> torch.Tensor:
    return torch.randn(members, batch, 6, **kwargs) if isinstance(layer, Linear) else \
        torch.randn(members, batch, 2, 6, 6, **kwargs)


@pytest.mark.parametrize("make", [make_linear, make_conv, make_lc])
def test_layer_gradients_pass_gradcheck(make):
    torch.manual_seed(0)
    layer = make(members=2).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = layer_input(layer, 2, 2, dtype=torch.double).requires_grad_(True)
    fn = lambda x, w, b: _WithFeedback.apply(x, w, b, w, layer)  # the weight as its own feedback: BP
    assert torch.autograd.gradcheck(fn, (x, layer.weight, layer.bias))


def test_lc_weights_are_independent_per_location_and_per_member():
    lc = LocallyConnected2d(1, 1, 3, (4, 4), members=2)
    with torch.no_grad():
        lc.weight.zero_()
        lc.weight[0, 5] = 1.0  # only member 0's output location 5 = (1, 1) sees its patch
        lc.bias.zero_()
    y = lc(torch.ones(2, 1, 1, 4, 4))
    assert y[0, 0, 0, 1, 1] == 9 and y[0].sum() == 9
    assert y[1].abs().sum() == 0  # member 1 has only zero weights


def test_lc_defaults_keep_shape_at_stride_one_and_repr():
    lc = LocallyConnected2d(3, 8, 5, (12, 12))
    assert lc.weight.shape == (1, 144, 8, 3 * 25) and lc.bias.shape == (1, 8, 12, 12)
    assert lc(torch.randn(1, 2, 3, 12, 12)).shape == (1, 2, 8, 12, 12)
    assert "kernel_size=5" in repr(lc) and "input_size=(12, 12)" in repr(lc)
    assert LocallyConnected2d(3, 8, 3, (12, 12), bias=False).bias is None


def test_lc_input_grad_is_the_transpose_map():
    torch.manual_seed(1)
    lc = LocallyConnected2d(2, 3, 3, (6, 6), stride=2, bias=False, members=2)
    x, v = torch.randn(2, 3, 2, 6, 6), torch.randn(2, 3, 3, 3, 3)
    # <lc(x), v> = <x, lc^T(v)> for a linear map and its transpose, member by member.
    lhs = (lc(x) * v).flatten(1).sum(1)
    rhs = (x * lc2d_input_grad(v, lc.weight, x.shape, *lc.geometry)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-4)


def plain(layer, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The layer's map with the given weights, member by member in plain torch (autograd's own backward)."""
    if isinstance(layer, Linear):
        return torch.stack([F.linear(x[k], weight[k], bias[k]) for k in range(len(weight))])
    if isinstance(layer, Conv2d):
        return torch.stack([F.conv2d(x[k], weight[k], bias[k], stride=layer.stride, padding=layer.padding)
                            for k in range(len(weight))])
    # LC against its own pure map under autograd (that map is checked against nn.Conv2d above).
    return layer.map(x, weight, bias)


@pytest.mark.parametrize("make", [make_linear, make_conv, make_lc])
def test_feedback_path_uses_the_feedback_for_the_input_gradient_only(make):
    torch.manual_seed(0)
    layer = make(members=2)
    with torch.no_grad():
        layer.bias.normal_()
    x = layer_input(layer, 2, 5).requires_grad_(True)
    feedback = torch.randn_like(layer.weight)
    y = apply_with_feedback(layer, x, feedback)
    torch.testing.assert_close(y, plain(layer, x, layer.weight, layer.bias))
    torch.testing.assert_close(layer(x), y)
    g = torch.randn_like(y)
    gx, gw, gb = torch.autograd.grad(y, (x, layer.weight, layer.bias), g)
    gx_bp, gw_bp, gb_bp = torch.autograd.grad(plain(layer, x, layer.weight, layer.bias),
                                              (x, layer.weight, layer.bias), g)
    torch.testing.assert_close(gw, gw_bp)
    torch.testing.assert_close(gb, gb_bp)
    for k in range(2):
        assert not torch.allclose(gx[k], gx_bp[k])
    # The input gradient is what BP would give if the weight were the feedback matrix.
    gx_swapped, = torch.autograd.grad(plain(layer, x, feedback, layer.bias), x, g)
    torch.testing.assert_close(gx, gx_swapped, rtol=1e-5, atol=1e-5)


def test_members_start_from_their_own_generators():
    """Member k's initial weights are those of a one-member layer drawn from member k's generator."""
    seeds = (4, 9)
    for make in (make_linear, make_conv, make_lc):
        layer = make(members=2)
        layer.reset_parameters(population.generators(seeds, population.INIT))
        assert not torch.equal(layer.weight[0], layer.weight[1])
        for k, seed in enumerate(seeds):
            alone = make(members=1)
            alone.reset_parameters(population.generators((seed,), population.INIT))
            assert torch.equal(layer.weight[k], alone.weight[0])
            assert torch.all(layer.bias == 0)


def test_lc_peak_memory_is_one_unfolded_input():
    """Backward keeps the input, not its unfolded copy (saved tensors of the autograd graph)."""
    lc = LocallyConnected2d(4, 8, 3, (10, 10))
    x = torch.randn(1, 16, 4, 10, 10, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        lc(x)
    unfolded = 16 * 4 * 9 * 100
    assert sum(saved) < unfolded  # only x and the weight are kept


def test_scratch_hands_back_the_same_tensor_until_the_shape_dtype_or_device_changes():
    scratch, weight = Scratch(), torch.zeros(3, 4, 5)
    held = scratch("sign", weight)
    assert held.shape == weight.shape and held.is_contiguous()
    held.fill_(7.0)
    assert scratch("sign", weight) is held and scratch("sign", torch.ones(3, 4, 5)) is held  # contents are the caller's
    assert scratch("other", weight) is not held
    fewer = scratch("sign", weight[[0, 2]])  # members dropped: a new tensor of the new shape
    assert fewer is not held and fewer.shape == (2, 4, 5)
    assert scratch("sign", weight[[0, 2]].double()).dtype == torch.float64


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_grads_in_one_call_are_the_two_separate_gradients_bit_for_bit(stride):
    """Input gradient through a feedback matrix and weight gradient from one backward convolution, two members."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 9, 9, generator=g)
    feedback = torch.randn(2, 4, 3, 3, 3, generator=g)
    grad_out = torch.randn(2, 5, 4, *Conv2d(3, 4, 3, stride=stride).output_size((9, 9)), generator=g)
    grad_x, grad_w = conv2d_grads(grad_out, x, feedback, stride, 1)
    assert torch.equal(grad_x, conv2d_input_grad(grad_out, feedback, x.shape, stride, 1))
    assert torch.equal(grad_w, conv2d_weight_grad(grad_out, x, feedback.shape, stride, 1))
