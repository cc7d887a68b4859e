"""One shared test over every registered model: tiny preset builds and trains through the engine, a step changes
the weights with finite losses, seeds repeat bitwise, and save/load gives identical outputs."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import genzoo
from genzoo import registry
from genzoo.train import rundir as R

SETTINGS = {"log_every": 1, "sample_every": 0, "progress": False, "batch_size": 32, "validate": False}


def outputs(model, x):
    """Everything the model can produce from a fixed input / fixed noise, for comparisons."""
    out = []
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    with torch.no_grad():
        if model.can("reconstruct"):
            out.append(model.reconstruct(x))
        if model.can("sample"):
            labels = torch.arange(4) % model.config.num_classes if model.conditional else None
            out.append(model.sample(4, labels=labels, generator=g()))
        if model.can("encode"):
            out.append(model.code(x))
        if model.can("translate"):
            out.append(model.translate(x))
    return out


def data_for(entry) -> str:
    """A bundled dataset of the kind the model trains on: its class's `example_data`, else mnist-mini for
    images and the first bundled (mini) dataset of its kind."""
    if getattr(entry.model_class, "example_data", None):
        return entry.model_class.example_data
    kind = getattr(entry.model_class, "data_kind", "images")
    if kind == "images":
        return "mnist-mini"
    return next(n for n in genzoo.data.names_of_kind(kind) if "mini" in n)


@pytest.mark.parametrize("name", registry.names())
def test_every_model_trains_saves_and_loads(name, tmp_path, monkeypatch):
    from genzoo.train import engine
    entry = registry.get(name)
    assert "tiny" in entry.config_class.PRESETS, f"{name} has no tiny preset"
    data = data_for(entry)
    # the weights each run starts from (captured as the engine starts) and which parameters each phase trains
    starts: list[dict] = []
    real_fit = engine.Trainer.fit

    def fit(self):
        names = {id(p): n for n, p in self.model.named_parameters()}
        starts.append({"state": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                       "phases": {ph.name: [names[id(p)] for p in ph.params if id(p) in names]
                                  for ph in self.phases}})
        return real_fit(self)

    monkeypatch.setattr(engine.Trainer, "fit", fit)
    runs = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        model = genzoo.train(name, data, out=out, preset="tiny", steps=3, settings=SETTINGS)
        runs.append(out)
    w0, w1 = load_file(runs[0] / R.WEIGHTS), load_file(runs[1] / R.WEIGHTS)
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "same seed must give bitwise identical weights"
    # training changed the weights of every phase, compared with the weights the run started from
    init = starts[0]["state"]
    assert init.keys() == w0.keys()
    for phase, params in starts[0]["phases"].items():
        changed = [k for k in params if k in w0 and not torch.equal(init[k].cpu(), w0[k])]
        assert changed, f"phase {phase!r} changed none of its {len(params)} parameters in 3 steps"
    # every logged loss term is finite
    rows = R.read_metrics(runs[0])
    vals = [float(v) for r in rows for k, v in r.items() if v not in ("", None) and k not in ("step",)]
    assert vals and all(math.isfinite(v) for v in vals)
    # save/load round trip: identical outputs
    loaded = genzoo.load(runs[0])
    assert type(loaded) is type(model) and loaded.config == model.config
    x = loaded.prepare(genzoo.data.load(data, "test").x[:4])
    model.eval()
    for a, b in zip(outputs(model, x), outputs(loaded, x)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", registry.names())
def test_every_model_can_average_its_networks(name):
    """`ema` is a field of every model config: after one engine step with ema=0.5 and no warm-up the average is
    0.5 w0 + 0.5 w1 (w0 the live weights before the step, w1 after it), and in eval mode every capability gives
    what the live networks give once the averaged weights are loaded into them."""
    import copy

    from genzoo.train import build_model
    data = genzoo.data.load(data_for(registry.get(name)))
    model = build_model(name, data, preset="tiny", ema=0.5, ema_warmup=False)
    live = model.ema._live[0]
    w0 = {k: v.detach().clone() for k, v in live.named_parameters()}
    genzoo.train(model, data, steps=1, settings=SETTINGS)
    w1, avg = dict(live.named_parameters()), dict(model.ema.module.named_parameters())
    assert w0.keys() == avg.keys() and w0
    for k in w0:
        torch.testing.assert_close(avg[k], 0.5 * w0[k] + 0.5 * w1[k].detach())
    assert any(not torch.equal(w0[k], w1[k]) for k in w0), "the step moved none of the averaged weights"
    x = model.prepare(genzoo.data.load(data_for(registry.get(name)), "test").x[:4])
    plain = copy.deepcopy(model)
    plain.ema._live[0].load_state_dict(plain.ema.module.state_dict())  # the average, in the live networks
    del plain.ema
    model.eval(), plain.eval()
    for a, b in zip(outputs(model, x), outputs(plain, x), strict=True):
        torch.testing.assert_close(a, b)


def test_ema_on_a_tied_autoencoder_is_a_clear_error():
    from genzoo.train import build_model
    with pytest.raises(ValueError, match="tied autoencoder has no decoder of its own"):
        build_model("ae", genzoo.data.load("mnist-mini"), preset="tiny", ema=0.9, tied=True, arch="mlp", hidden=())
