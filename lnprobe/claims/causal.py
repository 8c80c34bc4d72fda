"""The causal evidence the domain-adaptation claim cites: `lnprobe patch` of each LN-tuned seed against the
base on the claims' inputs. The claim's verdict stays the sign test on the image-vs-text gaps (a statistic
of the representations); the patching says whether the tuned norms *carry* the improvement in answer loss,
which norms, and through which tokens."""

from __future__ import annotations

from pathlib import Path

from lnprobe.claims.inputs import probe_inputs
from lnprobe.probes import PROBES


def run_patch(cfg, spec: str, out: Path) -> dict:
    """The patch record of LN-tuned `spec` against the claims' base, on the claims' inputs."""
    from lnprobe.probes.patch.config import PatchConfig

    config = PatchConfig(
        base=cfg.base, tuned=spec, inputs=probe_inputs(cfg), out=str(out), bootstrap=max(10, cfg.bootstrap)
    )
    return PROBES.get("patch").run(config).to_json()


def causal_summary(record: dict) -> dict:
    """The headline numbers of one patch record: the loss gap base - tuned; every decoder norm patched into
    the base together (the cumulative curve's last point); the single norm recovering most; per token kind,
    the norm output recovering most; answer accuracies of base, tuned and base + tuned decoder norms."""
    bottom = (record.get("cumulative") or {}).get("bottom") or []
    together = bottom[-1] if bottom else None
    summary = record["summary"]  # the picks `lnprobe patch` made; their intervals from the rows
    units = {r["unit"]: r for r in record["units"]}
    best = units.get(summary["best_unit"])
    outputs = {(r["unit"], r["tokens"]): r for r in record.get("activations") or []}
    tokens = {
        kind: {"unit": pick["unit"], "recovered": outputs[(pick["unit"], kind)]["recovered"]}
        for kind, pick in summary.get("activations_best", {}).items()
    }
    return {
        "gap": record["gap"],
        "decoder_norms": together
        and {"recovered": together["recovered"], "accuracy": together.get("accuracy")},
        "best_norm": best and {"unit": best["unit"], "recovered": best["into_base"]["recovered"]},
        "best_output_by_tokens": tokens,
        "accuracy": record.get("accuracy"),
        "examples": record["examples"],
    }


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _frac(f: dict) -> str:
    ci = f.get("ci95")
    return f"{_f(f.get('value'))} [{_f(ci[0])}, {_f(ci[1])}]" if ci else _f(f.get("value"))


def causal_lines(causal: dict[str, dict]) -> list[str]:
    """Markdown lines citing the patching of each LN-tuned seed (fractions with 95 % bootstrap intervals)."""
    head = ("**Causal evidence** (norm patching, `lnprobe patch`; recovered fraction of the base-minus-tuned"
            " loss gap, 95 % bootstrap interval over examples):")  # fmt: skip
    lines = [head, ""]
    for name, c in causal.items():
        gap = c["gap"]
        if not gap["value"]:
            lines.append(f"- {name}: base and tuned have the same answer loss; nothing to attribute")
            continue
        parts = [f"loss gap base − tuned {_frac(gap)} ({c['examples']} examples)"]
        if c["decoder_norms"]:
            parts.append(f"every decoder norm of the tuned model put into the base recovers "
                         f"{_frac(c['decoder_norms']['recovered'])}")  # fmt: skip
        if c["best_norm"]:
            parts.append(f"the single norm recovering most is {c['best_norm']['unit']} "
                         f"({_frac(c['best_norm']['recovered'])})")  # fmt: skip
        for tokens in ("image", "text"):
            t = c["best_output_by_tokens"].get(tokens)
            if t:
                parts.append(f"patching one norm's output at the {tokens} tokens recovers at most "
                             f"{_frac(t['recovered'])} ({t['unit']})")  # fmt: skip
        acc = c.get("accuracy")
        if acc:
            parts.append(f"answer accuracy base {_f(acc['base'])}, tuned {_f(acc['tuned'])}")
        lines.append(f"- {name}: " + "; ".join(parts))
    return [*lines, ""]
