"""The ResNet image-to-image generator of CycleGAN (Zhu et al. 2017, App. 7.2; after Johnson et al. 2016),
as in the official pytorch-CycleGAN-and-pix2pix `ResnetGenerator`: reflection padding, instance norm,
`n_down` stride-2 downsamplings, residual blocks at the bottleneck, as many transposed-conv upsamplings and
a 7x7 convolution with tanh.

    c7s1-b, d2b, d4b, R4b x n_blocks, u2b, u1b, c7s1-C   (b = base width; "c7s1-k": 7x7 conv, stride 1, k
                                                          filters, norm, ReLU; "dk": 3x3 stride-2; "Rk": a
                                                          residual block of two 3x3 convs; "uk": 3x3
                                                          fractionally strided, stride 1/2)
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .translation import norm_layer


def resnet_blocks(h: int, w: int) -> int:
    """Residual blocks from the image size, extending the official choice (6 blocks for 128x128 images,
    9 for 256x256 and larger) down to small images: 9 if min(H, W) >= 256, 6 if >= 128, 4 if >= 64, else 3
    (28x28 MNIST: 3 blocks at the 7x7 bottleneck, whose receptive field already spans the image)."""
    s = min(h, w)
    return 9 if s >= 256 else 6 if s >= 128 else 4 if s >= 64 else 3


class ResnetBlock(nn.Module):
    """x + [ReflectionPad(1), Conv3x3, norm, ReLU, (dropout), ReflectionPad(1), Conv3x3, norm](x)."""

    def __init__(self, channels: int, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   norm_layer(norm, channels), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H, W) in [-1, 1]. Fully convolutional: an input whose
    sides are not multiples of 2^n_down is reflection-padded up to the next multiple and the output cropped
    back, so images of any size work.

        (B, C_in, H, W) -> c7s1: (B, b, H, W) -> down: (B, 2b, H/2, W/2) -> (B, 4b, H/4, W/4)
          -> n_blocks residual blocks (B, 4b, H/4, W/4) -> up: (B, 2b, H/2, W/2) -> (B, b, H, W)
          -> c7s1 + tanh: (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, base: int = 64, n_blocks: int = 9, n_down: int = 2,
                 norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        if n_blocks < 0 or n_down < 0 or base < 1:
            raise ValueError(f"ResnetGenerator: base >= 1, n_blocks >= 0 and n_down >= 0 expected, got base={base}, "
                             f"n_blocks={n_blocks}, n_down={n_down}")
        bias = norm != "batch"
        self.n_down = n_down
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, base, 7, bias=bias),
                                   norm_layer(norm, base), nn.ReLU()]
        c = base
        for _ in range(n_down):  # (B, c, h, w) -> (B, 2c, h/2, w/2)
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), norm_layer(norm, 2 * c), nn.ReLU()]
            c *= 2
        layers += [ResnetBlock(c, norm, dropout) for _ in range(n_blocks)]
        for _ in range(n_down):  # (B, c, h, w) -> (B, c/2, 2h, 2w)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                       norm_layer(norm, c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    @property
    def multiple(self) -> int:
        return 2 ** self.n_down

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)  # (B, C, H', W')
        out = self.net(x)
        if ph or pw:
            out = out[..., ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]  # (B, C_out, H, W)
        return out


__all__ = ["ResnetGenerator", "ResnetBlock", "resnet_blocks"]
