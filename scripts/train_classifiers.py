"""Train the shipped domain classifiers and write genzoo/evaluate/weights/{mnist,fashion-mnist,digits28,thick-mnist}.safetensors plus
weights/provenance.json (data, command, recipe, test accuracy, CPU seconds).

Usage: GENZOO_DATA=../shared/data python scripts/train_classifiers.py [mnist] [fashion-mnist]
"""
from __future__ import annotations

import sys
from pathlib import Path

from genzoo._io import read_json, write_json
from genzoo.evaluate.classifier import WEIGHTS_DIR, save_classifier, train_classifier

# The recipe per dataset (everything else: train_classifier's defaults, seed 0, one thread).
RECIPES = {"mnist": {"epochs": 8, "width": 16}, "fashion-mnist": {"epochs": 10, "width": 32, "shift": 0},
           # CycleGAN's domains (genzoo/data/unpaired.py); hidden 64 keeps the files under 300 KB
           "digits28": {"epochs": 40, "width": 16, "hidden": 64},
           "thick-mnist": {"epochs": 3, "width": 16, "hidden": 64}}


def main(names: list[str]) -> None:
    prov_path = WEIGHTS_DIR / "provenance.json"
    prov = read_json(prov_path) if prov_path.exists() else {}
    for name in names or list(RECIPES):
        if name not in RECIPES:
            raise SystemExit(f"unknown classifier {name!r}; expected some of {list(RECIPES)}")
        out = WEIGHTS_DIR / f"{name}.safetensors"
        model, report = train_classifier(name, **RECIPES[name], log=lambda s: print(s, flush=True))
        report["command"] = f"GENZOO_DATA=../shared/data python scripts/train_classifiers.py {name}"
        report["data"] = f"{name} train split ({report['n_train']} images); accuracy on the test split ({report['n_test']})"
        save_classifier(model, out, report)  # the report travels inside the file as metadata
        prov[name] = report
        print(f"wrote {out}  (test accuracy {report['test_accuracy']:.4f})")
        print(f"wrote {write_json(prov_path, prov)}")


if __name__ == "__main__":
    main(sys.argv[1:])
