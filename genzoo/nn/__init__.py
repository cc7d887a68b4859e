"""Building blocks shared by the model families: activations, MLPs, strided conv encoders/decoders."""
from __future__ import annotations

import math

from torch import Tensor, nn

ACTIVATIONS = {
    "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "silu": nn.SiLU, "linear": nn.Identity,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation={name!r} is not valid; expected one of: {', '.join(ACTIVATIONS)}") from None


def mlp(sizes: list[int] | tuple[int, ...], act: str = "relu", out_act: str = "linear",
        norm: str | None = None) -> nn.Sequential:
    """Linear layers sizes[0] -> sizes[1] -> ... -> sizes[-1], `act` between them, `out_act` at the end."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        last = i == len(sizes) - 2
        if not last:
            if norm == "batch":
                layers.append(nn.BatchNorm1d(b))
            layers.append(activation(act))
        elif out_act != "linear":
            layers.append(activation(out_act))
    return nn.Sequential(*layers)


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def downsample_sizes(h: int, w: int, n: int) -> tuple[int, int]:
    """Spatial size after n stride-2 convolutions with kernel 4, padding 1 (floor halving)."""
    for _ in range(n):
        h, w = h // 2, w // 2
    return h, w


def conv_encoder(in_shape: tuple[int, int, int], channels: tuple[int, ...], out_dim: int, act: str = "relu",
                 batch_norm: bool = True, down: str = "stride") -> nn.Sequential:
    """(B, C, H, W) -> (B, out_dim): per layer H and W halve (floor), then a Linear. `down="stride"`: a
    stride-2 4x4 convolution; `down="pool"`: a 3x3 'same' convolution, the activation, then 2x2 max pooling."""
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for i, ch in enumerate(channels):
        conv = nn.Conv2d(c, ch, 4, 2, 1, bias=not (batch_norm and i > 0)) if down == "stride" else \
            nn.Conv2d(c, ch, 3, 1, 1, bias=not (batch_norm and i > 0))
        layers.append(conv)
        if batch_norm and i > 0:
            layers.append(nn.BatchNorm2d(ch))
        layers.append(activation(act))
        if down == "pool":
            layers.append(nn.MaxPool2d(2))
        c = ch
    h, w = downsample_sizes(h, w, len(channels))
    layers += [nn.Flatten(), nn.Linear(c * h * w, out_dim)]  # (B, c*h*w) -> (B, out_dim)
    return nn.Sequential(*layers)


def conv_decoder(in_dim: int, out_shape: tuple[int, int, int], channels: tuple[int, ...], act: str = "relu",
                 batch_norm: bool = True, up: str = "transpose") -> nn.Sequential:
    """(B, in_dim) -> (B, C, H, W) logits: a Linear to (channels[0], H/2^L, W/2^L), then per layer a doubling
    of the size, the last one to C channels. H and W must be divisible by 2^L. `up="transpose"`: a stride-2
    4x4 transposed convolution; `up="upsample"`: nearest-neighbour 2x upsampling, then a 3x3 'same' convolution."""
    c_out, h, w = out_shape
    L = len(channels)
    if h % 2 ** L or w % 2 ** L:
        raise ValueError(f"image size {h}x{w} is not divisible by 2^{L} for a {L}-layer conv decoder; "
                         f"use fewer channels entries or another image size")
    h0, w0 = h // 2 ** L, w // 2 ** L
    layers: list[nn.Module] = [nn.Linear(in_dim, channels[0] * h0 * w0), activation(act),
                               Reshape(channels[0], h0, w0)]  # (B, ch0, h0, w0)
    chans = list(channels[1:]) + [c_out]
    c = channels[0]
    for i, ch in enumerate(chans):
        last = i == len(chans) - 1
        if up == "transpose":
            layers.append(nn.ConvTranspose2d(c, ch, 4, 2, 1, bias=last or not batch_norm))
        else:
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(c, ch, 3, 1, 1, bias=last or not batch_norm)]
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(activation(act))
        c = ch
    return nn.Sequential(*layers)


def flat_dim(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))
