"""The miniature's results: one row per regime beside the baselines, the issue's goals checked, printed."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

GOALS = {
    "full_accuracy": "full-finetune held-out accuracy >= 0.90",
    "full_over_majority": "full-finetune held-out accuracy >= majority baseline + 0.25",
    "ln_near_full": "ln within 0.05 of full",
    "ln_simp_over_majority": "ln-simp >= majority baseline + 0.20",
    "above_blind": "every regime above the blind baseline by more than its interval",
}
# which goals a run checks: the synthetic task's (issue 12), or on a user's data (--data) those relative to
# its own baselines (issue 30)
GOALS_SYNTHETIC = ("full_accuracy", "ln_near_full", "ln_simp_over_majority", "above_blind")
GOALS_DATA = ("full_over_majority", "ln_near_full", "above_blind")


def shares(base: Path, regimes, lora_rank: int) -> dict[str, float]:
    from lnprobe.models import build_from_config, resolve_config
    from lnprobe.params import regime_report
    from lnprobe.regimes import RegimeOptions

    model = build_from_config(resolve_config(str(base)))
    return {r: regime_report(model, r, RegimeOptions(lora_rank=lora_rank)).percent for r in regimes}


def goals(accuracy: dict, regimes, synthetic: bool = True) -> dict[str, bool | None]:
    acc = {k: v["accuracy"] for k, v in accuracy.items()}
    blind = acc["blind"]
    every = {
        "full_accuracy": acc["full"] >= 0.90,
        "full_over_majority": acc["full"] >= acc["majority"] + 0.25,
        "ln_near_full": abs(acc["ln"] - acc["full"]) <= 0.05,
        "ln_simp_over_majority": acc["ln-simp"] >= acc["majority"] + 0.20 if "ln-simp" in acc else None,
        "above_blind": all(accuracy[r]["ci95"][0] > blind for r in regimes),
    }
    return {k: every[k] for k in (GOALS_SYNTHETIC if synthetic else GOALS_DATA)}


def regime_verdicts(results: dict, claims: dict) -> dict:
    """Every regime judged against full finetuning on the two statistics measured for all of them: cross-layer
    CKA (predicted lower) and the norm-gradient variance of its training run (log scale, predicted lower;
    regimes that train no norm have none). Per regime and statistic: the difference (regime minus full), its
    within-run 95 % interval and verdict; the study pools the differences over seeds. The paper's claims are
    about `ln`; the rest are the same test, for context."""
    from lnprobe.claims.config import MARGINS
    from lnprobe.claims.judge import Estimate, within_run
    from lnprobe.claims.run import _ci, _trace
    from lnprobe.probes.gradvar.stats import log_variance_se

    sims, estimates = claims["similarity"], {"cross_layer_similarity": {}, "gradient_variance": {}}
    for regime, r in results.items():
        cka = sims[regime]["cka"]
        estimates["cross_layer_similarity"][regime] = Estimate.from_ci(cka["value"], _ci(cka))
        trace = _trace(r["run"])
        if trace is not None and trace.shape[0] >= 3 and trace.shape[1] > 0:
            log_v = log_variance_se(trace, {"all": (0, trace.shape[1])}).get("all")
            if log_v:
                estimates["gradient_variance"][regime] = Estimate(*log_v)
    out = {}
    for regime in results:
        if regime == "full":
            continue
        for stat, by_regime in estimates.items():
            if regime not in by_regime or "full" not in by_regime:
                continue
            v = within_run(by_regime[regime], by_regime["full"], MARGINS[stat][0])
            out.setdefault(regime, {})[stat] = {"difference": v.statistic, "ci95": v.as_dict()["ci95"],
                                                "verdict": v.verdict}  # fmt: skip
    return out


def claim_tests(claims: dict) -> dict:
    """Per claim of one seed's claims record: its difference (LN minus reference), within-run interval and
    verdict, and for the domain claim the log gap ratio at each norm (what the study pools over seeds)."""
    out = {}
    for claim in claims["claims"]:
        test = claim.get("test") or {}
        entry = {"difference": test.get("statistic"), "ci95": test.get("ci95"), "verdict": claim["verdict"]}
        if claim.get("per_site"):
            entry["per_site"] = {s: e["log_ratio"] for s, e in claim["per_site"].items()}
        out[claim["id"]] = entry
    return out


def results_record(
    cfg, base: Path, results: dict, accuracy: dict, claims: dict, timings: dict, backbones: dict,
    forgetting: dict | None = None,
) -> dict:  # fmt: skip
    from lnprobe.miniature.forgetting import rows as forgetting_rows

    pct = shares(base, cfg.regimes, cfg.lora_rank)
    lost = forgetting_rows(forgetting)
    sims, grads = claims["similarity"], claims["gradients"]
    rows = []
    for regime, r in results.items():
        rows.append(
            {
                "regime": regime,
                "lr": r["lr"],
                "trainable_pct": pct[regime],
                **_acc(accuracy[regime]),
                "cross_layer_cka": sims[regime]["cka"]["value"],
                "norm_grad_variance": grads.get(regime, {}).get("variance"),
                "val_accuracy": r.get("val_accuracy"),
                "val_loss": r["val_loss"],
                "val_loss_before": r["val_loss_before"],
                "checkpoint": r["checkpoint"],
                **lost.get(regime, {}),
            }
        )
    baselines = {
        name: {"regime": name, **_acc(accuracy[name])} for name in ("majority", "blind", "pretrained")
    }
    baselines["pretrained"]["cross_layer_cka"] = sims["base"]["cka"]["value"]
    return {
        "config": asdict(cfg),
        "backbones": backbones,  # the vision tower and text LLM the run started from
        "rows": rows,
        "baselines": baselines,
        "goals": goals(accuracy, cfg.regimes, cfg.synthetic),
        "forgetting": forgetting,
        "claims": {c["id"]: c["verdict"] for c in claims["claims"]},
        "claim_tests": claim_tests(claims),
        "regime_verdicts": regime_verdicts(results, claims),
        "timings": timings,
    }


def saved_record(record: dict, folder: Path) -> dict:
    """`record` (results_record's, or any with `rows` and `backbones`) as a JSON file in `folder` saves it:
    checkpoints and backbones relative to the folder when they lie in the results tree, else absolute
    (`lnprobe.io.saved_path`)."""
    from lnprobe.io import saved_paths

    saved = dict(record)
    if "rows" in saved:
        saved["rows"] = saved_rows(saved["rows"], folder)
    if saved.get("backbones"):
        saved["backbones"] = saved_paths(saved["backbones"], folder)
    return saved


def saved_rows(rows: list[dict], folder: Path) -> list[dict]:
    """The results rows with each checkpoint as a JSON file in `folder` records it."""
    from lnprobe.io import saved_path

    return [
        {**r, "checkpoint": saved_path(r["checkpoint"], folder)} if "checkpoint" in r else r for r in rows
    ]


def _acc(entry: dict) -> dict:
    return {
        "accuracy": entry["accuracy"],
        "ci95": list(entry["ci95"]),
        "n": entry["n"],
        "by_type": entry.get("by_type"),
    }


def print_results(record: dict, console: Console, title: str) -> None:
    table = Table(title=title)
    for col in (
        "regime",
        "lr",
        "trainable %",
        "held-out accuracy [95% CI]",
        "cross-layer CKA",
        "norm-grad variance",
        "val accuracy",
        "val loss",
        "text loss change [95% CI]",
    ):
        table.add_column(col, justify="left" if col == "regime" else "right")

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    named = {
        "majority": "majority answer per type",
        "blind": "blind (full FT, no images)",
        "pretrained": "pretrained (connector only)",
    }
    for name, b in record["baselines"].items():
        table.add_row(named[name], "-", "-", _ci(b), f(b.get("cross_layer_cka"), ".3f"), "-", "-", "-", "-")
    for r in record["rows"]:
        table.add_row(
            r["regime"],
            f(r["lr"], "g"),
            f(r["trainable_pct"], ".3f"),
            _ci(r),
            f(r["cross_layer_cka"], ".3f"),
            f(r["norm_grad_variance"], ".2e"),
            f(r.get("val_accuracy"), ".3f"),
            f(r["val_loss"], ".3f"),
            _change(r),
        )
    console.print(table)
    for key, ok in record["goals"].items():
        mark = "-" if ok is None else ("met" if ok else "NOT met")
        console.print(f"goal: {GOALS[key]}: {mark}")
    for cid, verdict in record["claims"].items():
        console.print(f"claim {cid}: {verdict}")
    for regime, verdicts in record["regime_verdicts"].items():
        text = ", ".join(f"{k} {v['verdict']} ({v['difference']:+.3g})" for k, v in verdicts.items())
        console.print(f"  {regime} vs full (lower predicted): {text}")
    if record.get("timings"):
        console.print("stage seconds: " + ", ".join(f"{k} {v:g}" for k, v in record["timings"].items()))


def _ci(entry: dict) -> str:
    lo, hi = entry["ci95"]
    return f"{entry['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"


def _change(row: dict) -> str:
    """The text loss change (nats/token, tuned minus base) with its interval, or '-'."""
    if row.get("text_loss_change") is None:
        return "-"
    lo, hi = row["text_loss_change_ci95"]
    ci = "" if lo is None else f" [{lo:+.3f}, {hi:+.3f}]"
    return f"{row['text_loss_change']:+.3f}{ci}"
