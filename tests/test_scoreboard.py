"""benchmarks/scoreboard.py and `genzoo compare` cover the translation models: in the scoreboard each on its
task derived from the base dataset, in its own table per data kind, with the metrics that apply (checked
against an independent computation)."""
from __future__ import annotations

import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

import genzoo
import genzoo.data as gd

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sb():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("scoreboard", REPO / "benchmarks" / "scoreboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_models_and_tasks(sb):
    images, translation = sb.image_models(), sb.translation_models()
    assert {"pix2pix", "srgan", "cyclegan"} <= set(translation)
    assert not set(images) & set(translation) and "ae" in images
    assert sb.task_data("ae", "mnist") == "mnist"
    assert sb.task_data("pix2pix", "mnist-mini") == "mnist-mini-edges"
    assert sb.task_data("srgan", "fashion-mnist") == "fashion-mnist-sr4"
    assert sb.task_data("cyclegan", "mnist") == "mnist-thick"
    assert sb.task_data("cyclegan", "fashion-mnist") is None  # no fashion-mnist-thick: left out


def test_translation_tables_have_their_own_columns(sb):
    paired = {"model": "srgan", "kind": "paired", "data": "mnist-sr4", "preset": "p", "cpu_min": 1.0, "steps": 5,
              "img_per_cpu_s": 10.0, "psnr": 21.234, "bicubic_psnr": 14.7, "ssim": 0.81234}
    t = sb.table([paired]).splitlines()
    assert "PSNR (dB)" in t[0] and "bicubic PSNR" in t[0] and "domain FID" in t[0] and "NLL" not in t[0]
    assert "| 21.23 | 14.70 | 0.812 |" in t[2] and t[2].count("| - ") == 4  # L1, MSE, labels, FID not given
    unpaired = {"model": "cyclegan", "kind": "unpaired", "data": "mnist-thick", "preset": "p", "cpu_min": 1.0,
                "steps": 5, "img_per_cpu_s": 10.0, "label_preservation_a2b": 0.9, "cycle_l1_b2a": 0.05}
    t = sb.table([unpaired]).splitlines()
    assert "label pres. a2b" in t[0] and "cycle L1 b2a" in t[0] and "FID identity a2b" in t[0]


def test_score_a_translation_model(sb, tmp_path, monkeypatch):
    monkeypatch.setitem(sb.PRESET, "srgan", "tiny")
    args = Namespace(budget=1.0, seed=0, probe_steps=1, root=None, n=40, nll_n=0, k=5, work=tmp_path)
    row = sb.score("srgan", "mnist-mini", args, tmp_path, tmp_path / "img")
    assert row["kind"] == "paired" and row["data"] == "mnist-mini-sr4" and row["steps"] >= 1
    assert (tmp_path / "img" / "scoreboard-mnist-mini-srgan.png").exists()
    # PSNR and bicubic PSNR of the row against a numpy computation over evaluate's seeded sample of 40 test pairs
    model = genzoo.load(tmp_path / "mnist-mini-sr4-srgan")
    from genzoo.evaluate.subsets import random_subset
    test = random_subset(gd.load("mnist-mini-sr4", "test"), 40, seed=0)  # evaluate's sample (seed 0)
    src, tgt = test.x, test.target.numpy().astype(np.float64) / 255
    with torch.no_grad():
        out = model.to_unit(model.translate(model.prepare(src))).numpy().astype(np.float64)
    psnr = np.mean(10 * np.log10(1 / ((out - tgt) ** 2).mean(axis=(1, 2, 3))))
    assert row["psnr"] == pytest.approx(psnr, abs=1e-3)
    assert row["bicubic_psnr"] == pytest.approx(14.7, abs=1.0)  # x4 bicubic on MNIST digits (docs: 14.70 dB)
    assert row["label_accuracy"] is not None and 0 <= row["label_accuracy"] <= 1
    table = sb.table([row])
    assert f"{row['psnr']:.2f}" in table and "mnist-mini-sr4" in table


def test_compare_shows_translation_runs(tiny_train, tmp_path):
    """`genzoo compare` over a paired and an unpaired run: each row has its own metrics, '-' for the others',
    and the PSNR shown is the numpy PSNR of the run's outputs."""
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401  (registers the commands)
    from genzoo.cli._app import app
    from genzoo.evaluate import evaluate

    p2p, p2p_run = tiny_train("pix2pix", "mnist-mini-edges", steps=2)
    _, cyc_run = tiny_train("cyclegan", "mnist-mini-thick", steps=2)
    for run in (p2p_run, cyc_run):
        evaluate(run, n=20, out=run / "metrics.json")
    res = CliRunner().invoke(app, ["compare", str(p2p_run), str(cyc_run)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {ln.split("|")[2].strip(): [c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]}
    for key in ("l1", "psnr", "ssim", "cycle_l1_a2b", "label_preservation_b2a"):
        assert key in head
    p, c = rows["pix2pix"], rows["cyclegan"]
    assert c[head.index("psnr")] == "-" and p[head.index("cycle_l1_a2b")] == "-"
    from genzoo.evaluate.subsets import random_subset
    test = random_subset(gd.load("mnist-mini-edges", "test"), 20, seed=0)  # evaluate's sample (seed 0)
    with torch.no_grad():
        out = p2p.to_unit(p2p.translate(p2p.prepare(test.x))).numpy().astype(np.float64)
    tgt = test.target.numpy().astype(np.float64) / 255
    psnr = np.mean(10 * np.log10(1 / ((out - tgt) ** 2).mean(axis=(1, 2, 3))))
    assert float(p[head.index("psnr")]) == pytest.approx(psnr, rel=2e-3)


@pytest.fixture(scope="module")
def budget(sb):
    spec = importlib.util.spec_from_file_location("scoreboard_budget", REPO / "benchmarks" / "scoreboard_budget.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_budget_scoreboard_rows_accumulate_under_one_protocol(budget):
    """Rows from separate calls merge into one store (a rerun replaces its row), the tables list every stored
    row and name the registered models not yet run; a row measured under another protocol is refused."""
    models = budget.all_models()
    assert {"ddpm", "sagan", "biggan", "progan", "vae", "pix2pix", "cyclegan"} <= set(models)
    proto = {"preset": "recommended", "budget_cpu_s": 600.0, "n": 10000, "nll_n": 1000, "k": 1000, "seed": 0}
    row = _row
    store = budget.merge(None, proto, [row("vae", "mnist", 50.0), row("dcgan", "mnist", 70.0)])
    store = budget.merge(store, proto, [row("vae", "mnist", 40.0)])  # rerun: replaces
    store = budget.merge(store, proto, [row("vae", "fashion-mnist", 90.0)])
    assert len(store["rows"]) == 3 and store["rows"]["mnist/vae"]["fid"] == 40.0
    md = budget.render(store, models, "docs/img")
    mnist_table = md.split("**mnist**")[1].split("**fashion-mnist**")[0]
    assert "| vae | recommended |" in mnist_table and "| 40.00 |" in mnist_table and "| 50.00 |" not in mnist_table
    order = [m for m in models if m in ("vae", "dcgan")]  # rows follow the models' order
    assert (mnist_table.index("| vae |") < mnist_table.index("| dcgan |")) == (order == ["vae", "dcgan"])
    todo = md.split("Not yet run on mnist at this budget: ")[1].split(".")[0].split(", ")
    assert "vae" not in todo and "dcgan" not in todo and "ddpm" in todo and "cyclegan" in todo
    fashion_todo = md.split("Not yet run on fashion-mnist at this budget: ")[1].split(".")[0].split(", ")
    assert "cyclegan" not in fashion_todo and "vae" not in fashion_todo  # no fashion-mnist-thick task
    assert "3 rows" in md and "37.5 CPU minutes" in md
    with pytest.raises(SystemExit, match="budget_cpu_s.*600.*300"):
        budget.merge(store, {**proto, "budget_cpu_s": 300.0}, [row("ae", "mnist", 1.0)])


def test_budget_scoreboard_store_keeps_rows_of_processes_side_by_side(budget, tmp_path):
    """Two processes adding rows to one store (read-merge-write under a lock) keep both's rows; --merge joins a
    store measured elsewhere and refuses one of another protocol."""
    import multiprocessing as mp
    proto = {"preset": "recommended", "budget_cpu_s": 600.0, "n": 10000, "nll_n": 1000, "k": 1000, "seed": 0}
    path = tmp_path / "store.json"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(budget.add_rows, path, proto, f"m{i}")) for i in range(2)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
    assert [pr.exitcode for pr in procs] == [0, 0]
    rows = json.loads(path.read_text())["rows"]
    assert set(rows) == {f"mnist/m{i}-{k}" for i in range(2) for k in range(20)}
    work = tmp_path / "work"
    work.mkdir()
    (work / "scoreboard_budget.json").write_text(path.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"protocol": proto, "rows": {"fashion-mnist/vae": _row("vae", "fashion-mnist", 12.5,
                                                                                        steps=9)}}))
    budget.main(["--work", str(work), "--merge", str(other)])
    assert len(json.loads((work / "scoreboard_budget.json").read_text())["rows"]) == 41
    assert "| vae | recommended | 10.0 | 9 |" in (work / "scoreboard_budget.md").read_text()
    other.write_text(json.dumps({"protocol": {**proto, "n": 500}, "rows": {}}))
    with pytest.raises(SystemExit, match="'n': 10000.*'n': 500"):
        budget.main(["--work", str(work), "--merge", str(other)])


def _row(model: str, base: str, fid: float, **kw) -> dict:
    """A scoreboard row as score() + the store give it (made-up numbers)."""
    return {"model": model, "base": base, "kind": "images", "preset": "recommended", "data": base, "cpu_min": 10.0,
            "steps": 100, "img_per_cpu_s": 5.0, "extractor": base, "fid": fid, "measured": "2026-12-02",
            "total_cpu_min": 12.5, **kw}


def _add_many(add_rows, path, proto, prefix):
    for k in range(20):
        add_rows(path, proto, [_row(f"{prefix}-{k}", "mnist", 1.0)], str(path))


def _on_fake_clock(sb, monkeypatch, cpu_cost) -> list[tuple[int, Path | None, dict]]:
    """Replace the scoreboard's `train` with one that only advances a fake CPU clock by
    `cpu_cost(steps, settings)` (and makes the run directory, as train does); returns the calls
    (steps, out, settings) as they are made."""
    clock, calls = [0.0], []

    def fake_train(name, data, out=None, steps=0, settings=None, **kw):
        clock[0] += cpu_cost(steps, settings)
        if out is not None:
            assert not out.exists(), "a run's directory is removed before it is trained again"
            out.mkdir()
        calls.append((steps, out, settings))

    monkeypatch.setattr(sb, "train", fake_train)
    monkeypatch.setattr(sb.time, "process_time", lambda: clock[0])
    return calls


def test_a_run_far_under_its_budget_is_trained_again_at_its_own_rate(sb, tmp_path, monkeypatch):
    """A model whose first steps are slow (as small ones are) looks 10x dearer per step in the 10- and 30-step
    probes than over a long run; the run then uses a fifth of its budget and is trained again from scratch."""
    # CPU s: 0.5 fixed, 0.1 per step for 20 steps, then 0.01
    calls = _on_fake_clock(sb, monkeypatch, lambda n, _: 0.5 + 0.1 * min(n, 20) + 0.01 * max(n - 20, 0))
    steps, cpu = sb.train_for_budget("ae", "mnist-mini", tmp_path / "run", 100.0, 0, 10, None)
    runs = [c for c in calls if c[1] is not None]
    first = 0.5 + 0.1 * 20 + 0.01 * (runs[0][0] - 20)
    assert len(runs) == 2 and first < 0.25 * 100  # the probes' estimate: ~1,800 steps, ~20 CPU s
    assert steps == runs[1][0] and 100 <= cpu <= 1.12 * 100  # ~9,700 steps, ~100 CPU s: at least the budget


def test_the_probes_grow_until_their_difference_is_measurable(sb, tmp_path, monkeypatch):
    """1 ms per step: 10- and 30-step probes differ by 0.02 CPU s, lost in timer noise on a real machine; the
    probes grow until they differ by 1% of the budget, and one run then meets it."""
    calls = _on_fake_clock(sb, monkeypatch, lambda n, _: 0.5 + 0.001 * n)
    steps, cpu = sb.train_for_budget("ae", "mnist-mini", tmp_path / "run", 100.0, 0, 10, None)
    probes = [s for s, out, _ in calls if out is None]
    assert 2 * probes[-2] * 0.001 >= 1.0 and probes[-1] == 3 * probes[-2]  # the last pair: 2p ms >= 1 CPU s
    assert [s for s, out, _ in calls if out is not None] == [steps] and 100 <= cpu <= 111  # aimed at 1.1x


def test_progan_is_probed_at_its_last_resolution(sb, tmp_path, monkeypatch):
    """A progan step costs 4x more once it reaches its last resolution (after ~420 steps of the recommended
    schedule); probed with its own schedule the 10/30-step probes price the cheap first stage and the run
    overshoots its budget ~3x. Probed with phase_images=1 (at the last resolution from step 1) it does not."""
    def cost(n, settings):
        early = 0 if settings.get("phase_images") == 1 else min(n, 420)
        return 1.0 + 0.025 * early + 0.1 * (n - early)

    log = _on_fake_clock(sb, monkeypatch, cost)
    steps, cpu = sb.train_for_budget("progan", "mnist-mini", tmp_path / "run", 600.0, 0, 10, None)
    calls = [(n, out, st.get("phase_images")) for n, out, st in log]
    assert all(p == 1 for s, out, p in calls if out is None) and {p for s, out, p in calls if out} == {None}
    assert 600 <= cpu <= 1.15 * 600, cpu  # the whole run: 420 cheap steps, the rest at the last stage


def test_a_progan_run_under_its_budget_adds_its_steps_at_the_last_resolution(sb, tmp_path, monkeypatch):
    """Where the cheap early stages are a large share of the run (700 of ~1,000 steps), the first run, priced at
    the last resolution, uses half its budget. The steps added for the second run are all at the last resolution:
    priced at the first run's average step (0.05 CPU s) the second run would take ~1.6x the budget."""
    def cost(n, settings):
        early = 0 if settings.get("phase_images") == 1 else min(n, 700)
        return 1.0 + 0.025 * early + 0.1 * (n - early)

    log = _on_fake_clock(sb, monkeypatch, cost)
    steps, cpu = sb.train_for_budget("progan", "mnist-mini", tmp_path / "run", 100.0, 0, 10, None)
    runs = [n for n, out, _ in log if out is not None]
    assert len(runs) == 2 and cost(runs[0], {}) < 0.6 * 100  # the first run: ~1,040 steps, ~53 CPU s
    assert steps == runs[1] and 100 <= cpu <= 1.11 * 100, cpu  # ~1,600 steps: ~110 CPU s


def test_a_run_cheaper_than_its_probes_is_trained_again_until_it_meets_the_budget(sb, tmp_path, monkeypatch):
    """The probes ran while a process on the other core slowed every step by 30%; it ended before the run, whose
    steps are then cheaper than priced, so the run falls short of the budget the rows promise ("at least 10 CPU
    minutes"). It is trained again from scratch at its own rate until it has used at least the budget."""
    loaded = {"probe": True}
    log = _on_fake_clock(sb, monkeypatch, lambda n, _: 1.0 + 0.1 * n * (1.0 if loaded["probe"] else 0.7))
    fake_train = sb.train

    def train(name, data, out=None, **kw):
        loaded["probe"] = out is None
        return fake_train(name, data, out=out, **kw)

    monkeypatch.setattr(sb, "train", train)
    steps, cpu = sb.train_for_budget("ae", "mnist-mini", tmp_path / "run", 100.0, 0, 10, None)
    runs = [n for n, out, _ in log if out is not None]
    assert len(runs) == 2 and 1.0 + 0.07 * runs[0] < 100  # the first run: ~1,090 steps, ~77 CPU s
    assert steps == runs[1] and 100 <= cpu <= 1.11 * 100, cpu


def test_a_third_progan_run_is_priced_by_the_difference_of_the_first_two(sb, tmp_path, monkeypatch):
    """The probes ran under load (0.1 CPU s per last-resolution step); the runs' last-resolution steps cost 0.06.
    Two runs priced at the probes' rate stay under the budget (~42, ~83 CPU s); the third is priced by the two
    runs' difference (0.06 per added step) and meets it. Priced at the probes' rate again it would use ~99 CPU s,
    short of the budget."""
    def cost(n, settings):
        if settings.get("phase_images") == 1:  # a probe: at the last resolution from step 1, under load
            return 1.0 + 0.1 * n
        early = min(n, 700)
        return 1.0 + 0.025 * early + 0.06 * (n - early)

    log = _on_fake_clock(sb, monkeypatch, cost)
    steps, cpu = sb.train_for_budget("progan", "mnist-mini", tmp_path / "run", 100.0, 0, 10, None)
    runs = [n for n, out, _ in log if out is not None]
    assert len(runs) == 3 and cost(runs[1], {}) < 100  # the second run, priced at the probes' rate, falls short
    assert steps == runs[2] and 100 <= cpu <= 1.11 * 100, cpu  # ~2,225 steps: ~110 CPU s
