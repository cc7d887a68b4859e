"""A small U-Net for denoising diffusion (the shape of Ho et al. 2020's network, sized for CPUs).

    eps_theta(x_t, t[, y]):  (B, C, H, W), (B,) [, (B,)] -> (B, C, H, W)

- time: a sinusoidal embedding of t (Vaswani et al. 2017, as in Ho et al.'s `get_timestep_embedding`),
      emb_i(t) = sin(t / 10000^(i / (d/2 - 1))),  emb_{d/2 + i}(t) = cos(t / 10000^(i / (d/2 - 1))),  i < d/2,
  then Linear -> SiLU -> Linear to 4 * widths[0]; a class embedding (num_classes + 1 rows, the last one the
  "no label" token of classifier-free guidance) is added to it when `num_classes` > 0.
- residual blocks: h = conv(SiLU(GN(x))); h += Linear(SiLU(emb)); h = conv(dropout(SiLU(GN(h)))); out = skip(x) + h,
  the last conv zero-initialised so every block starts as the identity.
- levels: one per entry of `widths`, `res_blocks` blocks each; the resolution halves between levels (3x3 stride-2
  conv; 28 -> 14 -> 7) while H and W are even, and the decoder mirrors it (nearest 2x upsampling + 3x3 conv),
  concatenating the encoder's activation of the same level before each block (res_blocks + 1 blocks per level).
- middle: block, self-attention (one head, GroupNorm, residual), block at the lowest resolution; `attention`
  also adds self-attention after each block of the lowest level.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): [sin(t w_i), cos(t w_i)], w_i = max_period^(-i / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                      / max(half - 1, 1))  # (half,)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], 1)  # (B, 2 * half)
    return F.pad(emb, (0, dim % 2))  # (B, dim)


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    if ch % groups:
        raise ValueError(f"GroupNorm: width {ch} is not divisible by groups={groups}; choose widths that are "
                         f"multiples of {groups} or another `groups`")
    return nn.GroupNorm(groups, ch)


class ResBlock(nn.Module):
    """GN-SiLU-conv, + time/class embedding, GN-SiLU-dropout-conv (zero-initialised), residual (1x1 if widths differ)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out, groups), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # (B, c_out, 1, 1) broadcast over H, W
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions: x + proj(softmax(q k^T / sqrt(C)) v), q, k, v from GN(x)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)  # 3 x (B, C, HW)
        h = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                           v.transpose(1, 2)[:, None])  # (B, 1, HW, C)
        h = h[:, 0].transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
        return x + self.proj(h)


class Step(nn.Module):
    """A residual block, optionally followed by attention (so both take the embedding the same way)."""

    def __init__(self, block: ResBlock, attn: Attention | None):
        super().__init__()
        self.block, self.attn = block, attn

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.block(x, emb)
        return self.attn(x) if self.attn is not None else x


class DiffusionUNet(nn.Module):
    """eps_theta(x_t, t, y): see the module docstring. `num_classes` > 0 adds a class embedding with an extra
    "no label" row (index num_classes) for classifier-free guidance."""

    def __init__(self, image_shape: tuple[int, int, int], widths: tuple[int, ...] = (32, 64, 64),
                 res_blocks: int = 1, attention: bool = False, groups: int = 8, dropout: float = 0.0,
                 num_classes: int = 0):
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one level, e.g. (32, 64, 64)")
        if res_blocks < 1:
            raise ValueError(f"res_blocks must be >= 1, got {res_blocks}")
        c, h, w = image_shape
        self.num_classes = num_classes
        emb_dim = 4 * widths[0]
        self.time_dim = widths[0]
        self.time_mlp = nn.Sequential(nn.Linear(widths[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        self.inp = nn.Conv2d(c, widths[0], 3, padding=1)
        L = len(widths)
        # which levels end in a downsampling: halve while both sides stay even
        self.down_after: list[bool] = []
        for i in range(L - 1):
            ok = h % 2 == 0 and w % 2 == 0
            self.down_after.append(ok)
            if ok:
                h, w = h // 2, w // 2
        self.down_after.append(False)
        low = L - 1
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [widths[0]]
        ch = widths[0]
        for i, wi in enumerate(widths):
            for _ in range(res_blocks):
                attn = Attention(wi, groups) if attention and i == low else None
                self.down.append(Step(ResBlock(ch, wi, emb_dim, groups, dropout), attn))
                ch = wi
                skips.append(ch)
            if i < L - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1) if self.down_after[i]
                                       else nn.Identity())
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb_dim, groups, dropout)
        self.mid_attn = Attention(ch, groups)
        self.mid2 = ResBlock(ch, ch, emb_dim, groups, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(L)):
            for _ in range(res_blocks + 1):
                attn = Attention(widths[i], groups) if attention and i == low else None
                self.up.append(Step(ResBlock(ch + skips.pop(), widths[i], emb_dim, groups, dropout), attn))
                ch = widths[i]
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.res_blocks = res_blocks
        self.out_norm = _norm(ch, groups)
        self.out = nn.Conv2d(ch, c, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed(self, t: Tensor, y: Tensor | None) -> Tensor:
        """(B,) timesteps [and (B,) class indices, num_classes = no label] -> (B, 4 * widths[0])."""
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((len(t),), self.num_classes, dtype=torch.long, device=t.device)
            emb = emb + self.class_emb(y)
        return emb

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.embed(t, y)
        h = self.inp(x)  # (B, widths[0], H, W)
        hs = [h]
        blocks = iter(self.down)
        L = len(self.down_after)
        for i in range(L):
            for _ in range(self.res_blocks):
                h = next(blocks)(h, emb)
                hs.append(h)
            if i < L - 1:
                h = self.downsample[i](h)  # (B, ch, H/2, W/2) when down_after[i]
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        blocks = iter(self.up)
        for j, i in enumerate(reversed(range(L))):
            for _ in range(self.res_blocks + 1):
                h = next(blocks)(torch.cat([h, hs.pop()], 1), emb)  # (B, ch + skip ch, H, W) -> (B, widths[i], H, W)
            if i > 0:
                if self.down_after[i - 1]:
                    h = F.interpolate(h, scale_factor=2.0, mode="nearest")  # (B, ch, 2H, 2W)
                h = self.upsample[j](h)
        return self.out(F.silu(self.out_norm(h)))  # (B, C, H, W)
