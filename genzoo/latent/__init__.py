"""The latent-space toolbox: works for every model that can encode and/or decode (plain AEs, VAEs, ...).

It asks for capabilities (`model.can("encode")`, `model.code(x)`, `model.decode(z)`, `model.sample(n)`), never
for model types, so an AE and a VAE are compared on the same footing. Images come back as float tensors in
[0, 1] of shape (N, C, H, W) on the CPU; codes as float tensors (N, L).

    from genzoo import latent
    z, y = latent.encode_dataset(model, test, n=2000)         # codes (N, L) and labels (N,)
    imgs = latent.sample_prior(model, 64, seed=0)              # the model's own sampler (VAE: prior)
    imgs = latent.sample_code_gaussian(model, train, 64)       # decode z ~ N(mean, cov) of the data's codes
    imgs, zs = latent.manifold_grid(model, n=15, span=2.0)     # 2-D latent; or a plane of a larger one
    proj = latent.project(z, "pca"); proj.xy; proj.to_latent(xy); proj.to_plane(z)
    latent.save_latent_map("map.png", proj.xy, y, classes=test.classes)
    imgs, zs = latent.interpolate(model, xa, xb, steps=10, mode="slerp")
    d = latent.class_direction(z, y, target=7)                 # mean(class 7) - mean(the rest)
    imgs = latent.shift(x, d, [-2, -1, 0, 1, 2], model=model)  # (N, 5, C, H, W)
    zc = latent.arithmetic("a - b + c", {"a": za, "b": zb, "c": zc})
    latent.smoothness(model, test, n_pairs=200, steps=10)      # AE vs VAE as numbers
"""
from __future__ import annotations

from .attributes import (arithmetic, attribute_direction, class_direction, class_means, file_attribute_direction,
                         parse_expression, read_attributes, shift)
from .codes import as_input, decode, encode, encode_dataset, read_image, require
from .grid import axis_plane, default_plane, grid_values, manifold_grid, pca_plane
from .interpolate import interpolate, lerp, path, slerp
from .project import METHODS, Projection, latent_map_figure, project, save_latent_map
from .sampling import fit_gaussian, sample_code_gaussian, sample_gaussian, sample_prior
from .smoothness import random_pairs, smoothness

__all__ = [
    "arithmetic", "attribute_direction", "class_direction", "class_means", "file_attribute_direction",
    "parse_expression", "read_attributes", "shift", "as_input", "decode", "encode", "encode_dataset", "read_image",
    "require", "axis_plane", "default_plane", "grid_values",
    "manifold_grid", "pca_plane", "interpolate", "lerp", "path", "slerp", "METHODS", "Projection",
    "latent_map_figure", "project", "save_latent_map", "fit_gaussian", "sample_code_gaussian", "sample_gaussian",
    "sample_prior", "random_pairs", "smoothness",
]
