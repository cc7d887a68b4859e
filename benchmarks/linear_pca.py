"""Linear autoencoder = PCA (Baldi & Hornik 1989), on MNIST with k = 16.

Trains the linear AE (genzoo.applications.train_linear_ae: Adam, cosine schedule) on the 60,000 training
images, then compares it with scikit-learn's PCA (same k, same images): per-pixel MSE ratio and the principal
angles between the decoder's column span and the top-k principal directions. Targets: MSE within 2% of PCA's,
largest principal angle under 5 degrees. Also writes a figure:

    row 1   the 16 principal directions (PCA components)
    row 2   each principal direction projected onto the span of the AE decoder's columns, W (W^+ v)
    row 3   the AE decoder's raw columns: a basis of the same subspace, not the principal directions
    row 4-6 16 test digits, their PCA reconstructions, their linear-AE reconstructions

    OMP_NUM_THREADS=1 GENZOO_DATA=/work/shared/data python benchmarks/linear_pca.py \
        [--data mnist] [-k 16] [--epochs 10] [--figure docs/figures/linear_ae_vs_pca.png]

The same check from the command line: genzoo pca-check --data mnist -k 16 --epochs 10
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import genzoo.data as gd
from genzoo.applications import compare_with_pca, decoder_basis, train_linear_ae
from genzoo.images import save_grid


def unit_scale(rows: np.ndarray) -> np.ndarray:
    """Each row to [0, 1] (a basis vector's sign and scale are arbitrary)."""
    lo, hi = rows.min(1, keepdims=True), rows.max(1, keepdims=True)
    return (rows - lo) / np.maximum(hi - lo, 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist")
    ap.add_argument("-k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default="docs/figures/linear_ae_vs_pca.png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.process_time()
    train, test = gd.load(args.data, "train"), gd.load(args.data, "test")
    model = train_linear_ae(train, args.k, args.epochs, args.lr, args.batch_size, args.seed)
    res = {"data": args.data, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
           **compare_with_pca(model, train), "cpu_s": round(time.process_time() - t0, 1)}
    print(json.dumps(res))
    print(f"{args.data}, k={args.k}: linear AE MSE {res['ae_mse']:.6f} vs PCA {res['pca_mse']:.6f} "
          f"(ratio {res['mse_ratio']:.5f}); largest principal angle {res['max_angle_deg']:.3f} degrees; "
          f"{res['cpu_s']:.0f} CPU s")

    from sklearn.decomposition import PCA
    X = train.x.flatten(1).double().numpy() / 255
    pca = PCA(n_components=args.k).fit(X)
    V = pca.components_.T  # (D, k) orthonormal principal directions
    W = decoder_basis(model)  # (D, k)
    projected = (W @ np.linalg.lstsq(W, V, rcond=None)[0]).T  # (k, D): each v_i projected onto span(W)
    xt = test.x[:args.k].flatten(1).double().numpy() / 255
    with torch.no_grad():
        ae_rec = model.reconstruct(model.prepare(test.x[:args.k])).flatten(1).double().numpy()
    rows = [unit_scale(V.T), unit_scale(projected), unit_scale(W.T), xt,
            pca.inverse_transform(pca.transform(xt)).clip(0, 1), ae_rec.clip(0, 1)]
    shape = train.shape
    imgs = torch.from_numpy(np.concatenate(rows)).float().reshape(-1, *shape)
    print(f"wrote {save_grid(imgs, args.figure, nrow=args.k, scale=2)}")


if __name__ == "__main__":
    main()
