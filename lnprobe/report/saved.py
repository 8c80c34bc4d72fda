"""The saved JSON files `lnprobe report` and `lnprobe runs` read back, and the shape of every field they use
(`lnprobe.textio.check_shape`): a file that does not parse or does not fit is named with what is wrong
(`similarity.json: config: expected an object, got the string 'oops'`), never a traceback.

Fields the readers do not use are not checked; fields they use are optional where they read them with a
default. The claims and study reports' shapes are in `lnprobe.report.rerender`, beside the renderers that
need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lnprobe.errors import InputError
from lnprobe.textio import Array, check_shape, parse_json, read_json, read_text

NUM = (float, None)
CI = (None, Array(NUM, 2))  # a 95 % interval [lo, hi]
SUMMARY = {"value?": NUM, "ci95?": CI}  # a statistic with its interval
ANY_OBJECT = {str: object}
CONFIG = {"inputs?": ANY_OBJECT}  # a probe's config; its other fields are shown as they are
COMMON = {"config?": CONFIG, "provenance?": {str: object}}
LABEL = (str, float, bool, None)  # a value the index uses as a row's key

SIMILARITY = {**COMMON, "metrics?": {str: {"cross_layer_mean?": SUMMARY, "diagonal_mean?": SUMMARY}}}
GRADVAR = {**COMMON, "kinds?": {str: {"variance?": NUM, "variance_ci95?": CI}}}
LNSHIFT = {**COMMON, "summary?": ANY_OBJECT}
PATCH = {
    **COMMON,
    "gap?": SUMMARY,
    "accuracy?": (None, ANY_OBJECT),
    "summary?": ANY_OBJECT,
    "units?": [{"into_base?": {"recovered?": SUMMARY}}],
    "activations?": (None, [{"recovered?": SUMMARY}]),
}
ATTENTION_ENTRY = {"mean?": SUMMARY, "layer_mean?": {"value?": [object], "ci95?": [CI]}}
ATTENTION = {
    **COMMON,
    "models?": (None, {str: ATTENTION_ENTRY}),
    "differences?": (None, {str: ATTENTION_ENTRY}),
}
LINPROBE = {
    **COMMON,
    "config?": {**CONFIG, "models?": [str]},
    "summary?": {str: {"model?": LABEL, "probe": str, "ci95?": CI}},
}
EVAL = {**COMMON, "scores?": ANY_OBJECT}
FORGETTING = {
    **COMMON,
    "summary?": {"loss_before?": NUM, "loss_after?": NUM, "loss_change?": SUMMARY, "accuracy_before?": NUM,
                 "accuracy_after?": NUM, "accuracy_change?": SUMMARY, "perplexity_ratio?": SUMMARY},
}  # fmt: skip
CLAIMS_ROWS = {"claims?": [ANY_OBJECT]}
DEMO = {"config?": ANY_OBJECT, "rows?": [ANY_OBJECT]}

# each command's saved result: (file, shape)
RESULTS: dict[str, tuple[str, Any]] = {
    "similarity": ("similarity.json", SIMILARITY),
    "gradvar": ("gradvar.json", GRADVAR),
    "lnshift": ("lnshift.json", LNSHIFT),
    "patch": ("patch.json", PATCH),
    "attention": ("attention.json", ATTENTION),
    "linprobe": ("linprobe.json", LINPROBE),
    "forgetting": ("forgetting.json", FORGETTING),
    "eval": ("results.json", EVAL),
}


def read_saved(path: Path, shape: Any = ANY_OBJECT) -> dict:
    """The JSON object saved at `path`, checked against `shape`; InputError naming the file for a missing,
    unreadable, non-UTF-8 or malformed file and for a field of the wrong kind."""
    if not path.is_file():
        raise InputError(f"{path}: missing")
    record = read_json(path)
    check_shape(record, shape, str(path))
    return record


def read_saved_lines(path: Path, shape: Any = ANY_OBJECT) -> list:
    """The records of the JSON-lines file at `path` (metrics.jsonl), each checked against `shape`;
    InputError naming the file and line as for `read_saved`."""
    lines = read_text(path, "JSON-lines file").splitlines()
    records = [(i, parse_json(line, f"{path}: line {i}")) for i, line in enumerate(lines, 1) if line.strip()]
    for i, record in records:
        check_shape(record, shape, f"{path}: line {i}")
    return [record for _, record in records]
