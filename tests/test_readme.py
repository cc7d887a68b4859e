"""The README's Python example runs as written (with fewer epochs and samples, to stay fast)."""
from __future__ import annotations

import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    fast = block.replace("epochs=5", "steps=5").replace("n=2000", "n=200, k=5")
    assert fast != block, "the README example changed: update this test's substitutions"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(fast, "README.md", "exec"), scope)
    assert scope["strip"].shape == (10, 1, 28, 28) and scope["samples"].shape == (64, 1, 28, 28)
    scores = scope["scores"]
    # each asked-for metric was computed (not merely named in a "skipped" entry), with sane values
    assert not scores["skipped"], scores["skipped"]
    m = scores["metrics"]
    assert {"fid", "elbo", "mse"} <= set(m) and scores["extractor"] == "mnist"
    assert math.isfinite(m["fid"]) and m["fid"] > 0  # 5 steps of training: far from the data
    assert m["elbo"] < 0 and 0 < m["mse"] < 1
    assert scores["n"] == 200
