"""How well can the shipped target classifiers label a *shape-preserving* MNIST <-> digits28 translation?

The label preservation of a cyclegan run on `mnist-digits` (genzoo evaluate, direction a2b) is the digits28
classifier's accuracy on G(MNIST). This script renders the same evaluation sources (the stratified 2,000 MNIST
test images `genzoo evaluate --n 2000` draws) into the digits domain by digits28's own pipeline, keeping every
digit's shape: the digit's 20x20 box (or its bounding box, stretched as NIST's preprocessing does) area-pooled
to 8x8, 17 grey levels, then digits28's upsampling to 28x28. The digits28 classifier's accuracy on these
renderings is what a translation that changes style but not shape can expect; b2a's analogue is the MNIST
classifier on the untranslated digits28 test images.

    GENZOO_DATA=/work/shared/data python benchmarks/cyclegan_digits_ceiling.py
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import genzoo.data as gd
from genzoo.data.unpaired import upsample_digits
from genzoo.evaluate.classifier import get_classifier
from genzoo.evaluate.subsets import random_subset


def accuracy(clf, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (clf(images.float() / 255).argmax(1) == labels).double().mean().item()


def render(box: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) float 0..255 -> digits28-style uint8 (N, 1, 28, 28): 8x8 area pooling, max to 255, 17 levels."""
    p8 = F.adaptive_avg_pool2d(box, 8)
    p8 = p8 / p8.amax(dim=(2, 3), keepdim=True).clamp(min=1) * 255
    p8 = (torch.round(p8 / 255 * 16) * 255 / 16).round().clamp(0, 255).to(torch.uint8)
    return upsample_digits(p8)


def bounding_boxes(x: torch.Tensor, size: int = 32) -> torch.Tensor:
    out = []
    for im in x[:, 0]:
        rows, cols = (im > 30).any(1).nonzero(), (im > 30).any(0).nonzero()
        r0, r1, c0, c1 = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
        out.append(F.interpolate(im[r0:r1, c0:c1][None, None], size=(size, size), mode="bilinear",
                                 align_corners=False)[0])
    return torch.stack(out)


def main() -> None:
    torch.set_num_threads(1)
    m = random_subset(gd.load("mnist", "test"), 2000, 0)  # the a2b sources of genzoo evaluate --n 2000
    x, y = m.x.float(), m.y
    d28, mn = get_classifier("digits28"), get_classifier("mnist")
    print(f"digits28 classifier on the raw MNIST sources:            {accuracy(d28, x, y):.2%}")
    print(f"digits28 classifier on them rendered via the 20x20 box:   {accuracy(d28, render(x[:, :, 4:24, 4:24]), y):.2%}")
    print(f"digits28 classifier on them rendered via bounding boxes: {accuracy(d28, render(bounding_boxes(x)), y):.2%}")
    dg = gd.load("digits28", "test")
    print(f"mnist classifier on the raw digits28 test images (n={len(dg)}): {accuracy(mn, dg.x, dg.y):.2%}")


if __name__ == "__main__":
    main()
