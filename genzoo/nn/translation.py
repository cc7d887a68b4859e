"""Networks of the image-to-image translation families: the pix2pix U-Net generator and PatchGAN
discriminator (Isola et al. 2017, after the official pytorch-CycleGAN-and-pix2pix `networks.py`), and the
SRResNet generator with sub-pixel upsampling (Ledig et al. 2017; Shi et al. 2016).

Every network here is fully convolutional, so it runs on images of any size: the U-Net pads its input to a
multiple of 2^depth (reflection) and crops the output back; the PatchGAN returns a map of patch logits whose
size follows the input; the SR generator upsamples whatever it is given by its scale.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("batch", "instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """batch: BatchNorm2d; instance: InstanceNorm2d without affine parameters or running statistics (as the
    official pix2pix/CycleGAN code); none: identity."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm={kind!r} is not valid; expected one of: {', '.join(NORMS)}")


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix's `init_type='normal'`: conv weights ~ N(0, std), biases 0; batch-norm scales ~ N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


# ---- U-Net ---------------------------------------------------------------------------------------------
def unet_depth(h: int, w: int, max_depth: int = 8) -> int:
    """Number of stride-2 levels from the image size: floor(log2(min(H, W))), at most `max_depth` (256 -> 8,
    the official `unet_256`; 28 -> 4, padded to 32 with a 2x2 bottleneck)."""
    return max(1, min(max_depth, int(math.floor(math.log2(max(2, min(h, w)))))))


class UNet(nn.Module):
    """The pix2pix U-Net: `depth` stride-2 4x4 convolutions down (LeakyReLU 0.2, norm except on the first and
    the innermost), `depth` stride-2 4x4 transposed convolutions up (ReLU, norm, dropout on the `n_dropout`
    innermost decoder levels except the outermost), a skip connection concatenating each encoder level to the
    decoder level of the same size, tanh at the end. Widths: base * min(2^i, 8) at level i.

        x (B, C_in, H, W) -> pad to (B, C_in, H', W'), H', W' multiples of 2^depth
          -> down: (B, base, H'/2, W'/2) ... (B, base*m, H'/2^depth, W'/2^depth)
          -> up with skips -> (B, C_out, H', W') -> crop to (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int, base: int = 64, norm: str = "batch",
                 dropout: float = 0.5, n_dropout: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"U-Net depth must be >= 1, got {depth}")
        norm_layer(norm, 1)  # validates `norm`
        self.depth = depth
        bias = norm != "batch"  # a conv followed by batch norm needs no bias
        chans = [base * min(2 ** i, 8) for i in range(depth)]  # encoder output widths
        self.downs = nn.ModuleList()
        for i in range(depth):
            c_in = in_channels if i == 0 else chans[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            innermost = i == depth - 1
            layers.append(nn.Conv2d(c_in, chans[i], 4, 2, 1, bias=bias or i == 0 or innermost))
            if 0 < i < depth - 1:
                layers.append(norm_layer(norm, chans[i]))
            self.downs.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList()  # ups[i] maps level i+1 (plus skip) to level i's size
        for i in reversed(range(depth)):
            c_in = chans[i] if i == depth - 1 else 2 * chans[i]  # the innermost has no skip to concatenate
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, chans[i - 1], 4, 2, 1, bias=bias),
                          norm_layer(norm, chans[i - 1])]
                if dropout > 0 and depth - 1 - i < n_dropout:
                    layers.append(nn.Dropout(dropout))
            self.ups.insert(0, nn.Sequential(*layers))

    @property
    def multiple(self) -> int:
        return 2 ** self.depth

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:  # reflection needs pad < size; fall back to replication for tiny inputs
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)  # (B, C, H', W')
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[-1](skips[-1])
        for i in reversed(range(self.depth - 1)):
            x = self.ups[i](torch.cat([skips[i], x], 1))  # (B, 2 * chans[i], ...) -> next level up
        if ph or pw:
            x = x[..., ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]  # (B, C_out, H, W)
        return x


# ---- PatchGAN --------------------------------------------------------------------------------------------
def patchgan_receptive_field(n_layers: int) -> int:
    """Receptive field (pixels) of one PatchGAN output: n_layers stride-2 4x4 convolutions, then two stride-1
    4x4 convolutions. Backwards from one output, r <- (r - 1) s + k gives r = 1 + 3 + 3 = 7 after the two
    stride-1 layers and r <- 2 r + 2 per stride-2 layer, so r(n) = 9 * 2^n - 2: 16, 34, 70, 142, 286 for
    n = 1..5 (the official 16x16, 34x34, 70x70 and 286x286 PatchGANs)."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    return 9 * 2 ** n_layers - 2


def receptive_field(module: nn.Module) -> int:
    """Receptive field of a plain stack of Conv2d layers (in module order), by the recursion
    r <- (r - 1) * stride + (kernel - 1) * dilation + 1 from the output backwards."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    r = 1
    for m in reversed(convs):
        r = (r - 1) * m.stride[0] + (m.kernel_size[0] - 1) * m.dilation[0] + 1
    return r


class PatchGAN(nn.Module):
    """The pix2pix N-layer discriminator: a map of real/fake logits, one per overlapping patch of
    `patchgan_receptive_field(n_layers)` pixels (70x70 for n_layers = 3).

        (B, in_channels, H, W) -> Conv4 s2 LReLU -> [Conv4 s2, norm, LReLU] x (n_layers - 1)
          -> Conv4 s1, norm, LReLU -> Conv4 s1 -> (B, 1, H', W') logits
    Widths base * min(2^i, 8). pix2pix feeds it the (source, image) pair concatenated on channels.
    """

    def __init__(self, in_channels: int, base: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchGAN n_layers must be >= 1, got {n_layers}")
        norm_layer(norm, 1)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = base
        for n in range(1, n_layers):
            c_out = base * min(2 ** n, 8)
            layers += [nn.Conv2d(c, c_out, 4, 2, 1, bias=bias), norm_layer(norm, c_out), nn.LeakyReLU(0.2)]
            c = c_out
        c_out = base * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(c, c_out, 4, 1, 1, bias=bias), norm_layer(norm, c_out), nn.LeakyReLU(0.2),
                   nn.Conv2d(c_out, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        self.n_layers = n_layers

    @property
    def receptive_field(self) -> int:
        return patchgan_receptive_field(self.n_layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, 1, H', W')

    @staticmethod
    def min_size(n_layers: int) -> int:
        """Smallest input side giving at least a 1x1 output: each stride-2 layer floor-halves, each stride-1
        4x4 layer (padding 1) removes one pixel."""
        s = 3  # needs >= 3 before the two stride-1 layers
        for _ in range(n_layers):
            s = 2 * s
        return s


# ---- SRResNet --------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """SRResNet block: x + BN(Conv3(PReLU(BN(Conv3(x))))) (Ledig et al. 2017, Fig. 4)."""

    def __init__(self, channels: int, batch_norm: bool = True):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=not batch_norm), norm(),
                                  nn.PReLU(channels),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=not batch_norm), norm())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRResNet generator (Ledig et al. 2017): a `head`x`head` conv + PReLU, `blocks` residual blocks, a 3x3
    conv + BN with a long skip, then log2(scale) sub-pixel stages (3x3 conv to 4C channels, PixelShuffle(2)
    turning (B, 4C, h, w) into (B, C, 2h, 2w), PReLU; Shi et al. 2016), and a `head`x`head` conv to the output.

        (B, C_in, h, w) -> (B, ch, h, w) -> blocks -> (B, ch, h * scale, w * scale) -> (B, C_out, h*s, w*s)
    The output is linear (unbounded); with `residual` the bicubic upsampling of the input is added to it, so
    the network learns only the detail bicubic misses (off by default, as in the paper).
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int, channels: int = 64, blocks: int = 16,
                 head: int = 9, batch_norm: bool = True, residual: bool = False):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale={scale}: the SR generator upsamples by 2, 4 or 8 (powers of 2)")
        self.scale, self.residual = scale, residual
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, head, 1, head // 2), nn.PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels, batch_norm) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=not batch_norm),
                                  nn.BatchNorm2d(channels) if batch_norm else nn.Identity())
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            up += [nn.Conv2d(channels, 4 * channels, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(channels)]
        self.up = nn.Sequential(*up)
        self.tail = nn.Conv2d(channels, out_channels, head, 1, head // 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)  # (B, ch, h, w)
        h = h + self.body(h)  # long skip
        out = self.tail(self.up(h))  # (B, C_out, h * scale, w * scale)
        if self.residual:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out


__all__ = ["UNet", "PatchGAN", "SRResNet", "ResidualBlock", "unet_depth", "patchgan_receptive_field",
           "receptive_field", "norm_layer", "init_normal", "NORMS"]
