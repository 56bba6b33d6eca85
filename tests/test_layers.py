"""LocallyConnected2d against nn.Conv2d, and the feedback path of every layer family."""

import pytest
import torch
from torch import nn

from bioscale.layers import LocallyConnected2d, apply_with_feedback, lc2d_input_grad


def lc_like_conv(conv: nn.Conv2d, input_size: tuple[int, int]) -> LocallyConnected2d:
    """An LC layer whose every location holds the conv's filter."""
    lc = LocallyConnected2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], input_size,
                            stride=conv.stride[0], padding=conv.padding[0])
    with torch.no_grad():
        lc.weight.copy_(conv.weight.reshape(conv.out_channels, -1).expand_as(lc.weight))
        lc.bias.copy_(conv.bias[:, None, None].expand_as(lc.bias))
    return lc


@pytest.mark.parametrize("in_ch,out_ch,kernel,stride,padding,size", [
    (1, 4, 3, 1, 1, (8, 8)), (3, 5, 3, 2, 1, (9, 7)), (2, 3, 5, 2, 2, (10, 10)),
    (4, 2, 1, 1, 0, (5, 6)), (2, 6, 3, 1, 0, (7, 7)), (3, 2, 5, 3, 1, (11, 9)),
])
def test_lc_with_shared_weights_equals_conv(in_ch, out_ch, kernel, stride, padding, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding)
    nn.init.normal_(conv.bias)
    lc = lc_like_conv(conv, size)
    x = torch.randn(4, in_ch, *size, requires_grad=True)
    y_conv, y_lc = conv(x), lc(x)
    assert y_lc.shape == y_conv.shape
    torch.testing.assert_close(y_lc, y_conv, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_conv)
    gx_conv, gw_conv, gb_conv = torch.autograd.grad(y_conv, (x, conv.weight, conv.bias), g)
    gx_lc, gw_lc, gb_lc = torch.autograd.grad(y_lc, (x, lc.weight, lc.bias), g)
    torch.testing.assert_close(gx_lc, gx_conv, rtol=1e-4, atol=1e-5)
    # Shared-weight gradient = sum over locations of the per-location gradients.
    torch.testing.assert_close(gw_lc.sum(0).view_as(gw_conv), gw_conv, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb_lc.sum((1, 2)), gb_conv, rtol=1e-4, atol=1e-4)


def test_lc_gradients_pass_gradcheck():
    torch.manual_seed(0)
    lc = LocallyConnected2d(2, 3, 3, (5, 5), stride=2).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: lc2d_fn(lc, x, w, b), (x, lc.weight, lc.bias))


def lc2d_fn(lc, x, w, b):
    from bioscale.layers import _LocallyConnected

    return _LocallyConnected.apply(x, w, b, w, lc.geometry)


def test_lc_weights_are_independent_per_location():
    lc = LocallyConnected2d(1, 1, 3, (4, 4))
    with torch.no_grad():
        lc.weight.zero_()
        lc.weight[5] = 1.0  # only output location 5 = (1, 1) sees its patch
        lc.bias.zero_()
    y = lc(torch.ones(1, 1, 4, 4))
    assert y[0, 0, 1, 1] == 9 and y.sum() == 9


def test_lc_defaults_keep_shape_at_stride_one_and_repr():
    lc = LocallyConnected2d(3, 8, 5, (12, 12))
    assert lc(torch.randn(2, 3, 12, 12)).shape == (2, 8, 12, 12)
    assert "kernel_size=5" in repr(lc) and "input_size=(12, 12)" in repr(lc)
    assert LocallyConnected2d(3, 8, 3, (12, 12), bias=False).bias is None


def test_lc_input_grad_is_the_transpose_map():
    torch.manual_seed(1)
    lc = LocallyConnected2d(2, 3, 3, (6, 6), stride=2, bias=False)
    x, v = torch.randn(3, 2, 6, 6), torch.randn(3, 3, 3, 3)
    # <lc(x), v> = <x, lc^T(v)> for a linear map and its transpose.
    lhs = (lc(x) * v).sum()
    rhs = (x * lc2d_input_grad(v, lc.weight, x.shape, *lc.geometry)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [
    lambda: nn.Linear(6, 4),
    lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1),
    lambda: LocallyConnected2d(2, 3, 3, (6, 6), stride=2),
])
def test_feedback_path_uses_the_feedback_for_the_input_gradient_only(make):
    torch.manual_seed(0)
    layer = make()
    x = torch.randn(5, 6) if isinstance(layer, nn.Linear) else torch.randn(5, 2, 6, 6)
    x.requires_grad_(True)
    feedback = torch.randn_like(layer.weight)
    y = apply_with_feedback(layer, x, feedback)
    torch.testing.assert_close(y, layer(x))
    g = torch.randn_like(y)
    gx, gw, gb = torch.autograd.grad(y, (x, layer.weight, layer.bias), g)
    gx_bp, gw_bp, gb_bp = torch.autograd.grad(layer(x), (x, layer.weight, layer.bias), g)
    torch.testing.assert_close(gw, gw_bp)
    torch.testing.assert_close(gb, gb_bp)
    assert not torch.allclose(gx, gx_bp)
    # The input gradient is what BP would give if the weight were the feedback matrix.
    with torch.no_grad():
        layer.weight.copy_(feedback)
    gx_swapped, = torch.autograd.grad(layer(x), x, g)
    torch.testing.assert_close(gx, gx_swapped, rtol=1e-5, atol=1e-5)


def test_lc_peak_memory_is_one_unfolded_input():
    """Backward keeps the input, not its unfolded copy (saved tensors of the autograd graph)."""
    lc = LocallyConnected2d(4, 8, 3, (10, 10))
    x = torch.randn(16, 4, 10, 10, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        lc(x)
    unfolded = 16 * 4 * 9 * 100
    assert sum(saved) < unfolded  # only x and the weight are kept
