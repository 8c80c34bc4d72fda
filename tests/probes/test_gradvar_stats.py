"""Gradient statistics: Welford against two-pass formulas and against a gradient distribution known
analytically."""

import pytest
import torch

from lnprobe.errors import InputError
from lnprobe.probes.gradvar.stats import GradStats, Welford, summarize


def samples(t, p, seed=0):
    return torch.randn(t, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3 + 7


def test_welford_equals_two_pass_in_any_chunking():
    x = samples(101, 9)
    kept = x.clone()
    one = Welford(9)
    for row in x:  # one sample at a time: Welford's in-place update on a float64 view of the caller's row
        one.update(row)
    assert torch.equal(x, kept)  # the samples themselves are never written to
    assert abs(one.sq_norm_sum - float(x.square().sum())) < 1e-9 * float(x.square().sum())
    chunks = Welford(9)
    for part in (x[:1], x[1:40], x[40:41], x[41:]):
        chunks.update(part)
    for acc in (one, chunks):
        assert acc.count == 101
        torch.testing.assert_close(acc.mean, x.mean(0))
        torch.testing.assert_close(acc.variance(), x.var(0, unbiased=True))


def test_summary_statistics_follow_their_definitions():
    x = samples(50, 4, seed=1)
    acc = Welford(4)
    acc.update(x)
    s = summarize(acc)
    var = x.var(0, unbiased=True)
    assert s.variance == pytest.approx(float(var.mean()))
    assert s.mean_sq == pytest.approx(float(x.square().sum(1).mean() / 4))
    assert s.noise_scale == pytest.approx(float(var.sum() / x.mean(0).square().sum()))


def test_known_gradient_distribution():
    """y = w·x with x ~ N(0, I_d) and targets t = w*·x + e, e ~ N(0, s²). At w = w* + a, the gradient of
    0.5 (y - t)² is (a·x - e) x, with mean a and per-element variance |a|² + a_j² + s² (Isserlis)."""
    d, s, n = 6, 0.5, 20000
    gen = torch.Generator().manual_seed(3)
    w_star = torch.randn(d, generator=gen)
    a = torch.tensor([0.3, -0.2, 0.0, 0.1, 0.5, -0.4])
    w = torch.nn.Parameter(w_star + a)
    stats = GradStats()
    x = torch.randn(n, d, generator=gen)
    t = x @ w_star + s * torch.randn(n, generator=gen)
    for i in range(0, n, 500):  # per-example gradients, computed in vectorised form per chunk
        xb, tb = x[i : i + 500], t[i : i + 500]
        grads = (xb @ w.detach() - tb).unsqueeze(1) * xb  # [500, d], the per-example gradient
        for g in grads:
            stats.update({"w": g})
    summary = stats.summary()["w"]
    expected_var = (a.square().sum() + a.square() + s**2).mean()
    # sampling error of a variance estimate ~ sqrt(2/n) relative; allow 4 sigma (with heavier tails)
    assert summary.variance == pytest.approx(float(expected_var), rel=0.06)
    torch.testing.assert_close(stats.groups["w"].mean.float(), a, atol=0.03, rtol=0)


def test_autograd_gradients_match_the_closed_form():
    """The same statistics from real backward passes of an nn.Linear equal the closed-form samples."""
    gen = torch.Generator().manual_seed(4)
    lin = torch.nn.Linear(5, 1, bias=False)
    x, t = torch.randn(64, 5, generator=gen), torch.randn(64, generator=gen)
    auto, closed = GradStats(), GradStats()
    for xi, ti in zip(x, t, strict=True):
        lin.zero_grad()
        (0.5 * (lin(xi).squeeze() - ti) ** 2).backward()
        auto.update({"w": lin.weight.grad})
        closed.update({"w": ((lin.weight.detach() @ xi) - ti) * xi})
    a, c = auto.summary()["w"], closed.summary()["w"]
    assert a.variance == pytest.approx(c.variance, rel=1e-6) and a.noise_scale == pytest.approx(
        c.noise_scale, rel=1e-6
    )


def test_bad_inputs():
    acc = Welford(3)
    acc.update(torch.ones(3))
    with pytest.raises(InputError, match="at least 2 gradient samples"):
        acc.variance()
    stats = GradStats()
    stats.update({"g": torch.ones(3)})
    with pytest.raises(InputError, match="gradient size changed"):
        stats.update({"g": torch.ones(4)})


def test_training_callback_records_micro_batch_gradient_statistics(tmp_path):
    import json

    from safetensors.torch import load_file

    from lnprobe.data.synth import SynthConfig, write_synth
    from lnprobe.train import Callback, TrainConfig, train
    from lnprobe.train.gradvar_callback import GradVarCallback

    data = write_synth(tmp_path / "d", SynthConfig(n=30, seed=1))

    class Recorder(Callback):  # an independent copy of what the callback should see
        wants_micro_grads = True

        def __init__(self):
            self.seen = []

        def on_micro_batch(self, trainer, step, micro, batch):
            p = dict(trainer.model.named_parameters())["model.language_model.layers.0.input_layernorm.weight"]
            q = dict(trainer.model.named_parameters())[
                "model.language_model.layers.0.post_attention_layernorm.weight"
            ]
            self.seen.append((step, torch.cat([p.grad.reshape(-1), q.grad.reshape(-1)]).double()))

    gv, rec = GradVarCallback(every=2), Recorder()
    config = TrainConfig(
        data=str(data / "instruct.json"),
        out=str(tmp_path / "r"),
        regime="ln-simp",
        lr=1e-2,
        max_steps=3,
        batch_size=2,
        grad_accum=2,
        progress=False,
    )
    train(config, [rec, gv])
    recorded = torch.stack(
        [g for step, g in rec.seen if step % 2 == 0]
    )  # steps 0 and 2, 2 micro-batches each
    acc = gv.stats.groups["norms.0"]
    assert acc.count == 4
    torch.testing.assert_close(acc.variance(), recorded.var(0, unbiased=True))
    lines = [json.loads(x) for x in (tmp_path / "r" / "gradvar.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 3] and lines[-1]["groups"]["norms.0"]["count"] == 4
    trace = load_file(str(tmp_path / "r" / "gradvar_trace.safetensors"))
    assert trace["steps"].tolist() == [1, 1, 3, 3] and trace["norm_grads"].shape == (4, 4 * 2 * 64 + 64)


def test_variance_intervals_equal_an_explicit_log_jackknife_and_cover():
    import math

    from lnprobe.probes.gradvar.stats import variance_intervals

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 30, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 2, 30)
    got = variance_intervals(x, {"a": (0, 10), "all": (0, 30)})
    for name, (a, b) in {"a": (0, 10), "all": (0, 30)}.items():
        est = float(x[:, a:b].var(0).mean())
        loo = torch.stack([torch.cat([x[:i], x[i + 1 :]])[:, a:b].var(0).mean() for i in range(12)]).log()
        se = float((11 / 12 * (loo - loo.mean()).square().sum()).sqrt())
        expected = (est * math.exp(-1.959964 * se), est * math.exp(1.959964 * se))
        assert got[name] == pytest.approx(expected, rel=1e-9)
        assert 0 < got[name][0] < est < got[name][1]  # positive by construction, around the estimate
    # Gaussian gradients with per-element variance 1: the interval covers 1 about 95 % of the time
    for t, p in ((16, 40), (64, 1)):
        hits = 0
        for s in range(300):
            g = torch.randn(t, p, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
            lo, hi = variance_intervals(g, {"v": (0, p)})["v"]
            hits += lo <= 1.0 <= hi
        assert 0.89 <= hits / 300 <= 0.99, (t, p, hits)
    assert variance_intervals(x[:2], {"a": (0, 10)}) == {}
