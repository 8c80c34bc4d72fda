"""`lnprobe data synth | easy-vqa | verify | subset | fixture`: datasets on the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lnprobe.cli.core import console, group
from lnprobe.cli.options import REQUIRED, config_command
from lnprobe.data.easyvqa import EasyVqaConfig
from lnprobe.data.subset import SubsetConfig
from lnprobe.data.synth import SynthConfig
from lnprobe.errors import InputError

data = group("data", "Datasets: synthetic data, manifest checks, subsets.")


@data.command("synth")
@config_command(
    SynthConfig,
    extra={
        "out": (Annotated[Path, typer.Argument(help="Directory to write the dataset to.")], REQUIRED),
        "force": (Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")], False),
    },
)
def data_synth(config: SynthConfig, out: Path, force: bool) -> None:
    """Write the synthetic shapes task in LLaVA format (+ a text-only corpus from the same world)."""
    from lnprobe.data.synth import write_synth

    path = write_synth(out, config, overwrite=force)
    console.print(f"wrote {config.n} pictures: {path}/{{pretrain,instruct,eval}}.json, text.jsonl, images/")


@data.command("easy-vqa")
@config_command(
    EasyVqaConfig,
    extra={
        "out": (Annotated[Path, typer.Argument(help="Directory to write the dataset to.")], REQUIRED),
        "force": (Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")], False),
    },
)
def data_easy_vqa(config: EasyVqaConfig, out: Path, force: bool) -> None:
    """Write easy-VQA (PyPI easy-vqa: 64 px shapes, yes/no, shape and colour questions) in LLaVA format."""
    from lnprobe.data.easyvqa import write_easy_vqa

    s = write_easy_vqa(out, config, overwrite=force)
    images, records = s["images"], s["records"]
    console.print(
        f"wrote {records['train']} / {records['val']} / {records['eval']} questions on {images['train']} / "
        f"{images['val']} / {images['eval']} images (train / val / eval) and {s['captions']['images']} "
        f"captions: {out}/{{train,val,eval,captions}}.json, images/"
    )


@data.command("verify")
def data_verify(
    manifest: Annotated[str, typer.Argument(help="Manifest YAML, or a shipped name (e.g. pope).")],
    root: Annotated[Path, typer.Option(help="The dataset's local root directory.")] = Path("."),
) -> None:
    """Check a local dataset copy against its manifest: presence, sizes and sha256 of every file."""
    from lnprobe.data.manifest import read_manifest, verify

    m = read_manifest(manifest)
    if not root.is_dir():
        raise InputError(f"--root {root}: no such directory")
    rows = verify(m, root, progress=sys.stderr.isatty())
    table = Table(title=f"{m.name} under {root}")
    for col in ("file", "status", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["path"], r["status"], r["detail"])
    console.print(table)
    bad = [r for r in rows if r["status"] not in ("ok", "present")]
    if bad:
        raise InputError(f"{m.name}: {len(bad)} of {len(rows)} file(s) missing or mismatched under {root}")
    console.print(
        f"{m.name}: all {len(rows)} file(s) present"
        + ("" if all(r["status"] == "ok" for r in rows) else " (some sizes/hashes unknown, so not checked)")
    )


@data.command("subset")
@config_command(SubsetConfig)
def data_subset(cfg: SubsetConfig) -> None:
    """Draw a seeded subset of instruction data by kind: equal records or equal tokens per kind."""
    from lnprobe.data.subset import make_subset

    meta = make_subset(cfg)
    for kind, s in meta["kinds"].items():
        tokens = "" if s["tokens"] is None else f", {s['tokens']} tokens"
        console.print(f"{kind}: {s['records']} of {s['available']} records{tokens}")
    out = Path(cfg.out)
    console.print(f"wrote {out} and {out.with_suffix('.meta.json')}")


@data.command("fixture")
def fixture_command(
    bench: Annotated[str, typer.Argument(help="pope, mme, vqav2, coco or flickr30k.")],
    out: Annotated[Path, typer.Option(help="Folder to write (the benchmark's --data).")] = Path("data/bench"),
    n: Annotated[int, typer.Option("--n", help="Items (images) per file / subtask.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed for the drawn images.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Write a tiny benchmark folder in the official file format, images drawn locally (for trying eval)."""
    from lnprobe.eval.fixtures import write_fixture

    write_fixture(bench, out, n=n, seed=seed, force=force)
    console.print(f"wrote a tiny {bench} folder to {out}")
