"""The core's dataset kinds (images / paired / unpaired), the one Batch type and the engine-level EMA."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import genzoo
from genzoo.data import Dataset
from genzoo.models.base import EMA, Batch, GenerativeModel, ModelConfig, Phase


@dataclass(frozen=True)
class _Cfg(ModelConfig):
    ema: float = 0.0


class _Recorder(GenerativeModel):
    """A 1-parameter model that records every batch the engine hands it."""

    config_class = _Cfg

    def __init__(self, config, kind: str):
        super().__init__(config)
        self.body = nn.Module()
        self.body.w = nn.Parameter(torch.zeros(()))
        self.seen: list[Batch] = []
        type(self).data_kind = kind
        self.init_ema(self.body)

    def prepare(self, x):
        return x.float()

    def _loss(self, b: Batch):
        if self.training:
            self.seen.append(b)
        return (self.body.w - 1.0) ** 2, {}

    def phases(self):
        return [Phase("all", [self.body.w], self._loss, {"name": "sgd", "lr": 0.1})]


def _kinds_model(kind: str, **cfg) -> _Recorder:
    cls = type(f"Rec_{kind}", (_Recorder,), {})
    return cls(_Cfg(image_shape=(1, 1, 1), **cfg), kind)


def _ids(n: int, offset: int = 0) -> torch.Tensor:
    # each image holds its own index, so a batch tells which examples it contains
    return (torch.arange(n) + offset).reshape(n, 1, 1, 1).to(torch.uint8)


def test_paired_batches_keep_source_and_target_aligned():
    ds = Dataset("pairs", "train", _ids(40), torch.arange(40) % 10, [str(i) for i in range(10)],
                 target=_ids(40, offset=100))
    assert ds.kind == "paired" and ds.target_shape == (1, 1, 1)
    m = _kinds_model("paired")
    genzoo.train(m, ds, steps=6, batch_size=8, progress=False, validate=False)
    for b in m.seen:
        assert torch.equal(b.target, b.x + 100)  # the target of example i is i + 100
        assert torch.equal(b.y, b.x.reshape(-1).long() % 10)
    # an epoch is a permutation of the 40 examples
    first_epoch = torch.cat([b.x.reshape(-1) for b in m.seen[:5]])
    assert sorted(first_epoch.long().tolist()) == list(range(40))


def test_unpaired_domains_are_drawn_independently_and_domain_b_is_cycled():
    b_dom = Dataset("b", "train", _ids(12, offset=200), torch.arange(12) % 3)
    ds = Dataset("two", "train", _ids(40), None, domain_b=b_dom)
    assert ds.kind == "unpaired" and ds.target_shape == (1, 1, 1) and len(ds.domain_b) == 12
    m = _kinds_model("unpaired")
    genzoo.train(m, ds, steps=5, batch_size=8, progress=False, validate=False)  # one epoch of A = 5 steps
    a = torch.cat([b.x.reshape(-1) for b in m.seen]).long()
    bb = torch.cat([b.target.reshape(-1) for b in m.seen]).long() - 200
    assert sorted(a.tolist()) == list(range(40))  # epoch = one pass over domain A
    assert bb.min() >= 0 and bb.max() < 12
    # domain B is cycled: its 12 examples appear 40 // 12 = 3 or 4 times each, every one of them
    counts = torch.bincount(bb, minlength=12)
    assert counts.min() >= 3 and counts.max() <= 4
    # labels travel with domain B's images
    assert torch.equal(torch.cat([b.y_target for b in m.seen]), bb % 3)
    # independence: B's order is not a function of A's (pairing changes between epochs)
    assert not torch.equal(bb[:40] % 12, a % 12)


def test_a_model_refuses_a_dataset_of_the_wrong_kind_naming_one_that_fits():
    m = _kinds_model("paired")
    with pytest.raises(ValueError, match=r"trains on paired \(source, target\) images, but mnist-mini holds images"):
        genzoo.train(m, "mnist-mini", steps=1, progress=False)


def test_dataset_rejects_misaligned_targets():
    with pytest.raises(genzoo.data.DataError, match="one target image"):
        Dataset("bad", "train", _ids(4), target=_ids(3))


def test_ema_update_formula_and_buffers():
    lin = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(lin, 0.9, warmup=False)
    w0 = ema.module[0].weight.clone()
    with torch.no_grad():
        lin[0].weight.add_(1.0)
        lin[1].running_mean.fill_(5.0)
    ema.update()
    # w_avg <- 0.9 w_avg + 0.1 w
    torch.testing.assert_close(ema.module[0].weight, 0.9 * w0 + 0.1 * lin[0].weight)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 5.0))  # buffers copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="ema=1.5"):
        EMA(lin, 1.5)


def test_ema_warmup_follows_the_num_updates_rule_and_survives_a_reload():
    """d_n = min(decay, (1 + n) / (10 + n)) (TensorFlow's ExponentialMovingAverage): the average of a weight
    that moves 0 -> 1 -> 2 -> ... is the closed-form recursion; a state dict restores n, and one written
    before n existed loads as an average past its warm-up."""
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, 0.5)
    want = 0.0
    for n in range(6):
        with torch.no_grad():
            lin.weight.fill_(float(n + 1))
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.1818, 0.25, 0.3077, 0.3571, 0.4, then 0.5 from n = 8
        want = d * want + (1 - d) * (n + 1)
        ema.update()
        assert ema.module.weight.item() == pytest.approx(want)
    assert int(ema.updates) == 6
    again = EMA(lin, 0.5)
    again.load_state_dict(ema.state_dict())
    assert again.current_decay() == pytest.approx(min(0.5, 7 / 16))
    old = {k: v for k, v in ema.state_dict().items() if k != "updates"}
    legacy = EMA(lin, 0.5)
    legacy.load_state_dict(old)
    assert legacy.current_decay() == 0.5


def test_ema_recompute_bn_estimates_the_copy_s_own_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2))
    ema = EMA(net, 0.5)
    with torch.no_grad():
        ema.module[0].weight.copy_(torch.eye(2) * 3)  # the averaged weights differ from the live ones
    x = torch.randn(4000, 2) + torch.tensor([1.0, -2.0])
    chunks = x.chunk(20)
    it = iter(chunks)
    ema.recompute_bn(lambda m: m(next(it)), n_batches=20)
    bn = ema.module[1]
    torch.testing.assert_close(bn.running_mean, (x @ (torch.eye(2) * 3)).mean(0), atol=1e-4, rtol=1e-4)
    assert bn.momentum == 0.1  # restored


def test_ema_is_saved_with_the_model_and_updated_by_the_engine(tmp_path):
    ds = Dataset("pairs", "train", _ids(16), target=_ids(16))
    m = _kinds_model("paired", ema=0.5)
    genzoo.train(m, ds, out=tmp_path / "run", steps=2, batch_size=8, progress=False, validate=False)
    # sgd lr 0.1 on (w - 1)^2: w1 = 0.2, w2 = 0.36; EMA (decay 0.5, warm-up d = 1/10, then 2/11) of the copy
    # made at w = 0: 0.18, then 0.3273
    assert m.body.w.item() == pytest.approx(0.36)
    d0, d1 = 1 / 10, 2 / 11
    assert m.ema.module.w.item() == pytest.approx(d1 * (d0 * 0 + (1 - d0) * 0.2) + (1 - d1) * 0.36)
    assert m.averaged(m.body) is m.ema.module
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert saved["ema.module.w"].item() == pytest.approx(d1 * 0.18 + (1 - d1) * 0.36)
    assert saved["ema.updates"].item() == 2


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_labels_given_to_an_unconditional_model_are_an_error(name):
    from genzoo.train import build_model
    m = build_model(name, genzoo.data.load("mnist-mini"), preset="tiny")
    with pytest.raises(ValueError, match="is unconditional: it takes no labels"):
        m.sample(3, labels=torch.tensor([3, 3, 7]))
    assert m.sample(2).shape[0] == 2  # without labels it samples


def test_fold_ema_puts_the_averaged_weights_in_the_live_networks():
    """A model fine-tuned as part of another (applications.finetune) folds its EMA first: afterwards eval mode
    computes with the live weights, which hold what the average held."""
    import copy

    from genzoo import data as gd
    from genzoo.train import build_model
    ae = build_model("ae", gd.load("mnist-mini"), preset="tiny", ema=0.9)
    with torch.no_grad():
        for p in ae.ema.module.parameters():
            p.add_(0.5)  # the average differs from the live weights
    x = ae.prepare(gd.load("mnist-mini").x[:4])
    ae.eval()
    want = ae.code(x)
    folded = copy.deepcopy(ae)
    folded.fold_ema()
    assert "ema" not in folded._modules
    torch.testing.assert_close(folded.code(x), want)
    torch.testing.assert_close(folded.encoder[1][0].weight, ae.ema.module["encoder"][1][0].weight)
    folded.train()
    torch.testing.assert_close(folded.code(x), want)  # training now moves the weights eval mode uses
