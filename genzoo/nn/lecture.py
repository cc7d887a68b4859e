"""The lecture's convolutional autoencoder, layer for layer as its Keras model (`arch=lecture-conv`).

Keras summary of the lecture (input 28x28x1), 140,850 parameters of which 140,594 trainable (the 256 others are
the two BatchNormalization layers' moving mean and variance):

    Conv2D(32, 3x3, valid, relu)      (26, 26, 32)    320
    MaxPooling2D(2)                   (13, 13, 32)      0
    Conv2D(64, 3x3, valid, relu)      (11, 11, 64) 18,496
    MaxPooling2D(2)                   ( 5,  5, 64)      0
    Conv2D(64, 3x3, valid, relu)      ( 3,  3, 64) 36,928
    Flatten                           (576,)            0
    Dense(49, relu)                   (49,)        28,273
    Reshape(7, 7, 1)                  ( 7,  7,  1)      0
    Conv2DTranspose(64, 3x3, s2, same)(14, 14, 64)    640
    BatchNormalization                (14, 14, 64)    256
    Conv2DTranspose(64, 3x3, s2, same)(28, 28, 64) 36,928
    BatchNormalization                (28, 28, 64)    256
    Conv2DTranspose(32, 3x3, same, relu)(28, 28, 32) 18,464
    Conv2D(1, 3x3, same)              (28, 28,  1)    289

The Dense layer's ReLU is the autoencoder's `latent_activation` (so `latent_activation=linear` gives the working
"linear bottleneck" variant without touching anything else). Keras defaults are kept: Glorot-uniform weights,
zero biases, batch norm with eps 1e-3 and moving-average momentum 0.99 (PyTorch momentum 0.01).
"""
from __future__ import annotations

from torch import nn

from . import Reshape

LECTURE_SHAPE = (1, 28, 28)
LECTURE_LATENT = 49  # 7 x 7 x 1


def lecture_conv_encoder() -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, 49), before the bottleneck activation."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(),  # (B, 32, 26, 26)
        nn.MaxPool2d(2),  # (B, 32, 13, 13)
        nn.Conv2d(32, 64, 3), nn.ReLU(),  # (B, 64, 11, 11)
        nn.MaxPool2d(2),  # (B, 64, 5, 5)
        nn.Conv2d(64, 64, 3), nn.ReLU(),  # (B, 64, 3, 3)
        nn.Flatten(),  # (B, 576)
        nn.Linear(576, LECTURE_LATENT),  # (B, 49)
    )


def lecture_conv_decoder() -> nn.Sequential:
    """(B, 49) -> (B, 1, 28, 28). Keras' 'same' transposed convolution with stride 2 doubles the size: in
    PyTorch padding=1, output_padding=1 for a 3x3 kernel."""
    return nn.Sequential(
        Reshape(1, 7, 7),  # (B, 1, 7, 7)
        nn.ConvTranspose2d(1, 64, 3, stride=2, padding=1, output_padding=1),  # (B, 64, 14, 14)
        nn.BatchNorm2d(64, eps=1e-3, momentum=0.01),
        nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1),  # (B, 64, 28, 28)
        nn.BatchNorm2d(64, eps=1e-3, momentum=0.01),
        nn.ConvTranspose2d(64, 32, 3, padding=1), nn.ReLU(),  # (B, 32, 28, 28)
        nn.Conv2d(32, 1, 3, padding=1),  # (B, 1, 28, 28)
    )


def keras_init(module: nn.Module) -> None:
    """Keras' default initialisation: Glorot-uniform weights, zero biases (Linear, Conv, ConvTranspose)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
