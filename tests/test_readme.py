"""The README's Python example runs as written (with fewer epochs and samples, to stay fast)."""
from __future__ import annotations

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
    assert "fid" in str(scores := scope["scores"]) and "elbo" in str(scores)
