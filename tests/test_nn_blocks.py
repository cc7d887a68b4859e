"""genzoo/nn/blocks.py against direct computations in numpy (or plain torch ops spelled out): self-attention,
conditional BN, the projection term, minibatch stddev, pixel norm, equalised LR, orthogonal regularisation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genzoo.nn import blocks as B


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def test_self_attention_matches_softmax_qkt_v_and_is_the_identity_at_init():
    torch.manual_seed(0)
    att = B.SelfAttention(16)
    assert (att.query.out_channels, att.key.out_channels) == (2, 2)  # C/8
    x = torch.randn(2, 16, 3, 5)
    assert att.gamma.item() == 0.0
    assert torch.equal(att(x), x)  # gamma = 0: y = x exactly
    with torch.no_grad():
        att.gamma.fill_(0.7)
    y = att(x)
    # the paper's equations, position by position, in numpy
    wq, wk = _np(att.query.weight)[:, :, 0, 0], _np(att.key.weight)[:, :, 0, 0]
    wv, wo = _np(att.value.weight)[:, :, 0, 0], _np(att.out.weight)[:, :, 0, 0]
    for b in range(2):
        X = _np(x[b]).reshape(16, -1)  # (C, N)
        f, g, h = wq @ X, wk @ X, wv @ X
        s = f.T @ g  # s[j, i] = f_j . g_i
        beta = np.exp(s - s.max(1, keepdims=True))
        beta /= beta.sum(1, keepdims=True)
        o = wo @ (h @ beta.T)  # o_j = W_o sum_i beta_ji h_i
        ref = X + 0.7 * o
        np.testing.assert_allclose(_np(y[b]).reshape(16, -1), ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_np(att.attention(x)[b]), beta, rtol=1e-5, atol=1e-6)


def test_conditional_bn_equals_a_separate_batch_norm_per_class():
    torch.manual_seed(0)
    K, C = 3, 4
    cbn = B.ConditionalBatchNorm2d(C, K)  # conditioning vector: one-hot class -> per-class gain and bias
    with torch.no_grad():
        cbn.gain.weight.normal_(0, 0.5)
        cbn.bias.weight.normal_()
    onehot = torch.eye(K)
    # train mode, one class per batch: a batch norm with weight 1 + W_gain[:, k] and bias W_bias[:, k]
    sep = [torch.nn.BatchNorm2d(C) for _ in range(K)]
    for k in range(K):
        with torch.no_grad():
            sep[k].weight.copy_(1 + cbn.gain.weight[:, k])
            sep[k].bias.copy_(cbn.bias.weight[:, k])
    x = torch.randn(6, C, 5, 5) * 3 + 1
    for k in range(K):
        out = cbn(x, onehot[k].expand(6, K))
        torch.testing.assert_close(out, sep[k](x), rtol=1e-5, atol=1e-5)
    # eval mode, mixed classes: each example normalised by the running statistics, then its class's affine
    cbn.eval()
    y = torch.tensor([0, 2, 1, 2, 0, 1])
    out = cbn(x, onehot[y])
    for k in range(K):
        sep[k].eval()
        sep[k].running_mean.copy_(cbn.bn.running_mean)
        sep[k].running_var.copy_(cbn.bn.running_var)
        ref = sep[k](x)
        torch.testing.assert_close(out[y == k], ref[y == k], rtol=1e-5, atol=1e-5)


def test_projection_term_is_embedding_dot_features():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(5, 7)
    phi, y = torch.randn(4, 7), torch.tensor([3, 0, 4, 3])
    out = B.projection_term(phi, y, emb)
    E = _np(emb.weight)
    ref = [sum(E[y[i], j] * _np(phi)[i, j] for j in range(7)) for i in range(4)]
    np.testing.assert_allclose(_np(out), ref, rtol=1e-5)


def test_minibatch_stddev_matches_numpy():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 2, 2)
    out = B.MinibatchStdDev(4)(x)
    assert out.shape == (8, 4, 2, 2)
    assert torch.equal(out[:, :3], x)
    X = _np(x)
    M = 8 // 4  # examples i and j share a group when i % M == j % M
    for i in range(8):
        members = X[[j for j in range(8) if j % M == i % M]]  # (4, 3, 2, 2)
        expect = np.sqrt(members.var(0) + 1e-8).mean()
        np.testing.assert_allclose(_np(out[i, 3]), np.full((2, 2), expect), rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        B.MinibatchStdDev(4)(torch.randn(6, 3, 2, 2))


def test_pixel_norm_matches_numpy():
    x = torch.randn(3, 5, 4, 2)
    X = _np(x)
    ref = X / np.sqrt((X ** 2).mean(1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(_np(B.PixelNorm()(x)), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose((_np(B.PixelNorm()(x)) ** 2).mean(1), 1.0, rtol=1e-4)


def test_equalized_lr_scales_unit_weights_by_he_constant_at_run_time():
    torch.manual_seed(0)
    conv = B.EqualizedConv2d(6, 10, 3, padding=1)
    assert conv.scale == pytest.approx(math.sqrt(2 / (6 * 9)))
    assert conv.weight.std().item() == pytest.approx(1.0, abs=0.15)  # stored weights ~ N(0, 1)
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        conv.bias.normal_()
    ref = F.conv2d(x, conv.weight * math.sqrt(2 / 54), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref)
    lin = B.EqualizedLinear(20, 3, gain=1.0)
    v = torch.randn(4, 20)
    np.testing.assert_allclose(_np(lin(v)), _np(v) @ (_np(lin.weight) / math.sqrt(20)).T + _np(lin.bias), rtol=1e-5,
                               atol=1e-6)
    # the gradient w.r.t. the stored weight carries the same constant: d y / d w = c x
    lin(v).sum().backward()
    np.testing.assert_allclose(_np(lin.weight.grad), np.tile(_np(v).sum(0) / math.sqrt(20), (3, 1)), rtol=1e-5)


def test_orthogonal_penalty_matches_the_formula():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 50), torch.nn.Conv2d(3, 6, 3))
    total = 0.0
    for w in (_np(net[0].weight), _np(net[1].weight).reshape(6, -1)):
        g = w @ w.T
        total += ((g * (1 - np.eye(len(g)))) ** 2).sum()
    assert B.orthogonal_penalty(net).item() == pytest.approx(total, rel=1e-5)
    # zero for orthonormal rows, whatever their scale
    lin = torch.nn.Linear(5, 5)
    with torch.no_grad():
        lin.weight.copy_(3 * torch.linalg.qr(torch.randn(5, 5))[0])
    assert B.orthogonal_penalty(lin).item() == pytest.approx(0.0, abs=1e-3)


def test_residual_blocks_double_and_halve_the_size():
    up, down = B.ResBlockUp(8, 4, cond_dim=3), B.ResBlockDown(4, 8)
    h = up(torch.randn(2, 8, 7, 7), torch.randn(2, 3))
    assert h.shape == (2, 4, 14, 14)
    assert down(h).shape == (2, 8, 7, 7)
    assert B.ResBlockDown(1, 4, first=True)(torch.randn(2, 1, 28, 28)).shape == (2, 4, 14, 14)
