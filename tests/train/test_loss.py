"""`answer_scores`: per-example loss sums, target counts and first-answer hits on planted logits."""

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from lnprobe.data.llava import IGNORE
from lnprobe.train.loss import answer_scores

EOS, V = 2, 10
X = IGNORE


class Planted(nn.Module):
    """Returns fixed logits whatever the input (a model without a separate body and head)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, **inputs):
        return SimpleNamespace(logits=self.logits)


def _logits(argmax: list[list[int]]) -> torch.Tensor:
    """Logits whose argmax at [row, position] is argmax[row][position], with varied margins."""
    g = torch.Generator().manual_seed(0)
    out = torch.randn(len(argmax), len(argmax[0]), V, generator=g)
    for r, row in enumerate(argmax):
        for t, tok in enumerate(row):
            out[r, t, tok] = out[r, t].max() + 1 + t
    return out


def test_answer_scores_on_planted_logits():
    labels = torch.tensor(
        [
            [X, X, X, 5, 6, EOS, X, X],  # predicted right, its end-of-turn token wrong: a hit
            [X, X, X, 5, 6, EOS, X, X],  # its second token wrong: a miss
            [X, X, 7, EOS, X, X, 8, EOS],  # first answer right, second wrong: a hit (first answer only)
            [X, X, X, X, X, 4, 4, EOS],  # first token wrong
            [3, 4, EOS, X, X, X, X, X],  # a target at position 0 (no BOS) is never predicted: from 4 on
        ]
    )
    # position t predicts the label at t + 1
    argmax = [
        [0, 0, 5, 6, 9, 0, 0, 0],
        [0, 0, 5, 1, EOS, 0, 0, 0],
        [0, 7, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 3, 4, EOS, 0],
        [4, 9, 0, 0, 0, 0, 0, 0],
    ]
    logits = _logits(argmax)
    batch = {"input_ids": torch.zeros_like(labels), "labels": labels}
    sites = SimpleNamespace(vision_tower=None, lm_head=None)
    for chunk in (1, 3, 4096):  # chunking does not change anything
        sums, counts, hits = answer_scores(Planted(logits), sites, batch, {EOS}, chunk=chunk)
        assert hits.tolist() == [True, False, True, False, True]
        assert counts.tolist() == [3, 3, 4, 3, 2]
        for r in range(5):
            keep = labels[r, 1:] != X
            by_hand = F.cross_entropy(logits[r, :-1][keep], labels[r, 1:][keep], reduction="sum")
            assert torch.allclose(sums[r], by_hand, atol=1e-5)
