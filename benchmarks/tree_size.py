"""The size of a results tree (e.g. `lnprobe demo`'s), by kind of file: bytes (apparent) and disk use (4 KiB
blocks), largest first (issue 17, item 4: one plotly.min.js per tree, the demo tree small).

    python benchmarks/tree_size.py runs/demo [runs/demo-before]

Kinds: model weights (model/delta safetensors), optimizer state, other checkpoint state (RNG, trainer
state), plotly.min.js, images, data (JSON / JSONL under data/), figures (PNG, HTML), results (other JSON,
CSV, Markdown, logs). With two trees, the second column set is the other tree and a ratio is printed.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path


def kind(path: Path, root: Path) -> str:
    rel, name = path.relative_to(root), path.name
    if name == "optimizer.safetensors":
        return "optimizer state"
    if name in ("model.safetensors", "delta.safetensors", "adapter_model.safetensors"):
        return "model weights"
    if name in ("rng.safetensors", "trainer_state.json") or "shards" in rel.parts:
        return "other checkpoint state"
    if name == "plotly.min.js":
        return "plotly.min.js"
    if path.suffix in (".png", ".jpg", ".jpeg") and rel.parts[0] == "data":
        return "images"
    if rel.parts[0] == "data":
        return "data"
    if path.suffix in (".png", ".html"):
        return "figures"
    return "results"


def sizes(root: Path) -> dict[str, list[int]]:
    """kind -> [bytes, disk bytes, files]."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            row = out[kind(path, root)]
            row[0] += st.st_size
            row[1] += st.st_blocks * 512
            row[2] += 1
    return out


def main() -> None:
    trees = [Path(a) for a in sys.argv[1:3]]
    tables = [sizes(t) for t in trees]
    kinds = sorted(set().union(*tables), key=lambda k: -tables[0].get(k, [0])[0])
    head = "".join(f" | {t.name[:18]:>18} MB (disk, files)" for t in trees)
    print(f"{'kind':24}{head}")
    for k in [*kinds, "total"]:
        cells = []
        for table in tables:
            rows = list(table.values()) if k == "total" else [table.get(k, [0, 0, 0])]
            b, d, n = (sum(r[i] for r in rows) for i in range(3))
            cells.append(f" | {b / 1e6:8.2f} ({d / 1e6:6.2f}, {n:5d})")
        print(f"{k:24}{''.join(cells)}")
    if len(tables) == 2:
        a, b = (sum(r[0] for r in t.values()) for t in tables)
        print(f"bytes: {trees[0].name} / {trees[1].name} = {a / b:.2f}x")


if __name__ == "__main__":
    main()
