"""Building blocks of the GAN lineage after DCGAN: SAGAN's self-attention, BigGAN's conditional batch norm and
residual blocks, the projection discriminator's class term, and ProGAN's minibatch standard deviation, pixel
norm and equalised learning rate. Each block states its equation and source; genzoo/models/gan.py assembles them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """Self-attention over the positions of a feature map (Zhang et al. 2019, SAGAN, s.3):

        f = W_f x, g = W_g x  (1x1 convolutions to C/8 channels: query and key), h = W_h x  (value, C/2),
        beta_{j,i} = softmax_i(f_j^T g_i)   (where position j looks: a distribution over the N = H*W positions)
        o_j = W_v sum_i beta_{j,i} h_i      (1x1 convolution back to C channels)
        y = gamma * o + x,  gamma a learnt scalar initialised to 0 (the block starts as the identity).

    The value at C/2 with an output convolution W_v follows the authors' released code; the paper's
    key/query width C/8 is `channels // 8` (at least 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.qk = max(1, channels // 8)
        self.v = max(1, channels // 2)
        self.query = nn.Conv2d(channels, self.qk, 1, bias=False)
        self.key = nn.Conv2d(channels, self.qk, 1, bias=False)
        self.value = nn.Conv2d(channels, self.v, 1, bias=False)
        self.out = nn.Conv2d(self.v, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))
        self.last_attention: Tensor | None = None  # set when `keep_attention` is True (for the attention map)
        self.keep_attention = False

    def attention(self, x: Tensor) -> Tensor:
        """beta (B, N, N): row j = softmax over positions i of f_j . g_i, positions in row-major order."""
        q = self.query(x).flatten(2)  # (B, C/8, N)
        k = self.key(x).flatten(2)  # (B, C/8, N)
        return torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, N)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        beta = self.attention(x)  # (B, N, N)
        if self.keep_attention:
            self.last_attention = beta.detach()
        v = self.value(x).flatten(2)  # (B, C/2, N)
        o = torch.bmm(v, beta.transpose(1, 2)).reshape(b, self.v, h, w)  # o_j = sum_i beta_ji v_i: (B, C/2, H, W)
        return x + self.gamma * self.out(o)


class ConditionalBatchNorm2d(nn.Module):
    """Conditional batch norm (de Vries et al. 2017; BigGAN, Brock et al. 2019, s.3 and App. B):

        y = (1 + gamma(c)) * (x - mu_B) / sqrt(var_B + eps) + beta(c),

    mu_B, var_B the batch statistics (running averages in eval mode) of an affine-free batch norm; gamma and beta
    linear in the conditioning vector c. BigGAN's c is [shared class embedding, chunk of z] (hierarchical z),
    so the per-class gains come from one embedding shared by all blocks rather than one table per layer.
    The gain is 1 + gamma(c) so the block starts near plain batch norm."""

    def __init__(self, num_features: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        g = 1 + self.gain(c)[:, :, None, None]  # (B, C, 1, 1)
        return self.bn(x) * g + self.bias(c)[:, :, None, None]


class ResBlockUp(nn.Module):
    """Generator residual block (Miyato et al. 2018, App. B; BigGAN Fig. 15a), spatial size x2:

        y = conv3(relu(BN(conv3(up(relu(BN(x))))))) + conv1(up(x)),

    BN conditional (`cond_dim` > 0) or plain, up = nearest-neighbour 2x upsampling."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int = 0):
        super().__init__()
        self.cond = cond_dim > 0
        self.bn1 = ConditionalBatchNorm2d(c_in, cond_dim) if self.cond else nn.BatchNorm2d(c_in)
        self.bn2 = ConditionalBatchNorm2d(c_out, cond_dim) if self.cond else nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def _bn(self, bn: nn.Module, x: Tensor, c: Tensor | None) -> Tensor:
        return bn(x, c) if self.cond else bn(x)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(self._bn(self.bn1, x, c)), scale_factor=2.0)  # (B, C_in, 2H, 2W)
        h = self.conv2(F.relu(self._bn(self.bn2, self.conv1(h), c)))  # (B, C_out, 2H, 2W)
        return h + self.skip(F.interpolate(x, scale_factor=2.0))


class ResBlockDown(nn.Module):
    """Discriminator residual block (Miyato et al. 2018, App. B), spatial size /2 when `down`:

        y = pool(conv3(relu(conv3(relu(x))))) + pool(conv1(x)),   pool = 2x2 average pooling.

    `first=True`: the optimised input block, y = pool(conv3(relu(conv3(x)))) + conv1(pool(x)) (no ReLU on the
    raw image)."""

    def __init__(self, c_in: int, c_out: int, down: bool = True, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or down) else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)  # (B, C_out, H/2, W/2)
        s = x
        if self.first:
            s = F.avg_pool2d(s, 2) if self.down else s
            s = self.skip(s) if self.skip is not None else s
        else:
            s = self.skip(s) if self.skip is not None else s
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


def projection_term(features: Tensor, labels: Tensor, embedding: nn.Embedding) -> Tensor:
    """The class term of the projection discriminator (Miyato & Koyama 2018, eq. 3):
    D(x, y) = psi(phi(x)) + embed(y)^T phi(x); this returns embed(y)^T phi(x), (B,), for features phi(x) (B, F)."""
    return (embedding(labels) * features).sum(1)


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN, s.3): split the batch into groups of `group`
    (the batch size must be divisible by min(group, B)), take for every feature and pixel the standard deviation
    over each group, sigma = sqrt(mean_g (x - mean_g x)^2 + 1e-8), average it over C, H and W, and append the
    average as one more constant feature map to every example of its group: (B, C, H, W) -> (B, C + 1, H, W)."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = min(self.group, b)
        if b % g:
            raise ValueError(f"minibatch stddev: batch size {b} is not divisible by the group size {g}")
        y = x.reshape(g, b // g, c, h, w)  # (G, M, C, H, W): example m of every group at y[:, m]
        y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt()  # (M, C, H, W): std over the group
        y = y.mean((1, 2, 3))  # (M,)
        y = y.repeat(g)[:, None, None, None].expand(b, 1, h, w)  # (B, 1, H, W)
        return torch.cat([x, y], 1)


class PixelNorm(nn.Module):
    """Pixelwise feature vector normalisation (Karras et al. 2018, s.4.2): b_xy = a_xy / sqrt(mean_c a_xy^2 + eps),
    eps = 1e-8, over the channels of each pixel (or the features of a (B, F) vector)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class EqualizedConv2d(nn.Module):
    """Convolution with equalised learning rate (Karras et al. 2018, s.4.1): weights initialised N(0, 1) and
    scaled at run time, w_hat = w * c, c = gain / sqrt(fan_in), fan_in = C_in * k * k, gain = sqrt(2) (He's
    constant); biases start at 0. With Adam the effective step is then the same for every layer."""

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int = 0, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = gain / math.sqrt(c_in * kernel * kernel)
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Linear layer with equalised learning rate: y = x (w c)^T + b, w ~ N(0, 1), c = gain / sqrt(fan_in)
    (Karras et al. 2018, s.4.1)."""

    def __init__(self, d_in: int, d_out: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out))
        self.scale = gain / math.sqrt(d_in)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def orthogonal_penalty(module: nn.Module) -> Tensor:
    """BigGAN's orthogonal regularisation (Brock et al. 2019, eq. 3): R(W) = || W W^T o (1 - I) ||_F^2 summed over
    the weight matrices W (C_out, C_in k k) of `module`'s Linear and Conv2d layers (the raw weights, before
    spectral normalisation, as in the released code), which pushes filters towards orthogonality without
    constraining their norms. Multiply by beta (1e-4 in the paper) and add to G's loss.
    Computed as ||W^T W||_F^2 - sum_i ||w_i||^4 (the same number, since ||W W^T||_F = ||W^T W||_F), with the Gram
    matrix on the smaller side of W: BigGAN's first Linear has thousands of outputs."""
    total = torch.zeros(())
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            p = getattr(m, "parametrizations", None)
            w = (p.weight.original if p is not None and "weight" in p else m.weight).flatten(1)  # (C_out, C_in*k*k)
            gram = w.t() @ w if w.shape[0] > w.shape[1] else w @ w.t()  # the smaller Gram matrix
            total = total.to(w) + gram.pow(2).sum() - w.pow(2).sum(1).pow(2).sum()
    return total
