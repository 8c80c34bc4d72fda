"""What finetuning cost the LLM's text ability: next-token loss and accuracy on held-out text, before
(BASE) and after (TUNED), compared window by window.

A window is a run of token ids w_0 .. w_{L-1} (L >= 2) that the model reads alone (its own forward pass
row, padding masked). For each model and window:
    loss      -1/(L-1) sum_{t=1}^{L-1} log p(w_t | w_<t)        (nats/token; log-softmax of float32 logits)
    accuracy   1/(L-1) sum_{t=1}^{L-1} [argmax_v p(v | w_<t) = w_t]
Both models score the same windows, so the comparison is paired: per window d_i = tuned_i - base_i, and
    change    mean_i d_i,  95 % interval mean ± t_{0.975, n-1} sd(d) / sqrt(n)   (paired t over windows)
    perplexity ratio   exp(mean loss change), its interval exp() of the loss change's interval
                       (= the ratio of the geometric-mean per-window perplexities)
Every mean is *window-weighted* (each window counts once, whatever its length): the windows are the
sampling units the interval is over. Windows are cut to equal lengths, so only a document's last, shorter
window weighs its tokens more than a token-weighted mean would. Identical models give d_i = 0 exactly: a
change of 0 with the interval [0, 0].
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lnprobe.progress import tracked


def window_losses(
    model: torch.nn.Module,
    windows: list[list[int]],
    batch_size: int,
    pad_id: int,
    *,
    progress: bool = False,
    description: str = "text loss",
) -> tuple[np.ndarray, np.ndarray]:
    """(loss [n], accuracy [n]) of `model` on each window (see the module docstring), in `batch_size`
    forward passes of right-padded rows with an attention mask (padding changes no window's numbers);
    float32 logits, no gradients. A multi-modal model runs its LLM alone (no pixel values)."""
    if any(len(w) < 2 for w in windows):
        raise ValueError("every window needs at least 2 tokens (one prediction)")
    device = next(model.parameters()).device
    losses, accuracy = np.empty(len(windows)), np.empty(len(windows))
    starts = range(0, len(windows), batch_size)
    with torch.no_grad():
        for start in tracked(starts, progress, description):
            chunk = windows[start : start + batch_size]
            ids = torch.full((len(chunk), max(map(len, chunk))), pad_id, dtype=torch.long)  # [b, t]
            mask = torch.zeros_like(ids)
            for row, window in enumerate(chunk):
                ids[row, : len(window)] = torch.tensor(window)
                mask[row, : len(window)] = 1
            ids, mask = ids.to(device), mask.to(device)
            out = model(input_ids=ids, attention_mask=mask, use_cache=False)
            loss, acc = _scores(out.logits.float(), ids, mask)
            losses[start : start + len(chunk)] = loss
            accuracy[start : start + len(chunk)] = acc
    return losses, accuracy


def _scores(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean next-token NLL and accuracy over the real next tokens. logits [b, t, vocab] (float32),
    ids and mask [b, t]."""
    pred, target = logits[:, :-1], ids[:, 1:]  # position t predicts token t + 1
    real = mask[:, 1:].bool()  # [b, t - 1]
    nll = torch.nn.functional.cross_entropy(pred.transpose(1, 2), target, reduction="none")  # [b, t - 1]
    hit = (pred.argmax(-1) == target).double()
    count = real.sum(1).double()
    loss = (nll.double() * real).sum(1) / count
    acc = (hit * real).sum(1) / count
    return loss.cpu().numpy(), acc.cpu().numpy()


def paired_change(before: np.ndarray, after: np.ndarray) -> dict:
    """{value, ci95}: the mean of after - before with its 95 % paired t interval (None bounds for n < 2)."""
    from scipy.stats import t

    d = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return {"value": mean, "ci95": [None, None]}
    half = float(t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return {"value": mean, "ci95": [mean - half, mean + half]}


def compare(
    base_loss: np.ndarray, tuned_loss: np.ndarray, base_acc: np.ndarray, tuned_acc: np.ndarray
) -> dict:
    """The headline numbers (window-weighted; module docstring): n, loss_before / loss_after (mean nats per
    token), loss_change {value, ci95} (tuned - base), perplexity_ratio {value, ci95} (exp of the loss
    change), accuracy_before / accuracy_after, accuracy_change {value, ci95}."""
    base_loss, tuned_loss = np.asarray(base_loss, float), np.asarray(tuned_loss, float)
    base_acc, tuned_acc = np.asarray(base_acc, float), np.asarray(tuned_acc, float)
    if not len(base_loss) == len(tuned_loss) == len(base_acc) == len(tuned_acc) > 0:
        raise ValueError("compare needs four equally long, non-empty per-window arrays")
    loss_change = paired_change(base_loss, tuned_loss)
    lo, hi = loss_change["ci95"]
    return {
        "n": len(base_loss),
        "loss_before": float(base_loss.mean()),
        "loss_after": float(tuned_loss.mean()),
        "loss_change": loss_change,
        "perplexity_ratio": {
            "value": math.exp(loss_change["value"]),
            "ci95": [None, None] if lo is None else [math.exp(lo), math.exp(hi)],
        },
        "accuracy_before": float(base_acc.mean()),
        "accuracy_after": float(tuned_acc.mean()),
        "accuracy_change": paired_change(base_acc, tuned_acc),
    }
