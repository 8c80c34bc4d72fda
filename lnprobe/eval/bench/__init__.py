"""Benchmarks for `lnprobe eval`, one module each, registered on import: how to read the official files
into items, the default prompt and image folder, and how to score predictions."""

from lnprobe.eval.bench.base import BENCHES, Bench, EvalItem, folder, read_json, read_jsonl  # noqa: I001
from lnprobe.eval.bench import pope, mme, vqav2, captions  # noqa: F401

__all__ = ["BENCHES", "Bench", "EvalItem", "folder", "read_json", "read_jsonl"]
