"""COCO and Flickr30k captions, Karpathy test split: dataset_coco.json / dataset_flickr30k.json from
caption_datasets.zip in `--data` (images with split, filepath?, filename, sentences[raw]). Images are at
DATA/<filepath>/<filename> (COCO) or DATA/flickr30k-images/<filename> (Flickr30k)."""

from __future__ import annotations

from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.eval.bench.base import BENCHES, Bench, EvalItem, folder, read_json
from lnprobe.eval.captions import caption_scores

PROMPT = "Provide a one-sentence caption for the provided image."


def reader(dataset: str, split: str = "test"):
    def read(data: Path) -> list[EvalItem]:
        path = data / f"dataset_{dataset}.json" if data.is_dir() else data
        if not path.is_file():
            raise InputError(f"{data}: missing dataset_{dataset}.json (Karpathy caption split)")
        raw = read_json(path)
        images = raw.get("images") if isinstance(raw, dict) else None
        if not isinstance(images, list):
            raise InputError(f"{path}: not a Karpathy caption file (needs an 'images' list)")
        if raw.get("dataset") not in (None, dataset):
            raise InputError(f"{path}: holds dataset {raw['dataset']!r}, not {dataset!r}")
        items = []
        for i, img in enumerate(images):
            if not isinstance(img, dict) or not {"split", "filename", "sentences"} <= set(img):
                raise InputError(f"{path}: images[{i}]: needs split, filename, sentences")
            if img["split"] != split:
                continue
            refs = [s.get("raw") for s in img["sentences"] if isinstance(s, dict)]
            if not refs or not all(isinstance(r, str) for r in refs):
                raise InputError(f"{path}: images[{i}]: every sentence needs a 'raw' caption")
            rel = f"{img['filepath']}/{img['filename']}" if img.get("filepath") else img["filename"]
            key = str(img.get("cocoid", img.get("imgid", img["filename"])))
            items.append(EvalItem(key, rel, "", refs, {"filename": img["filename"]}))
        if not items:
            raise InputError(f"{path}: no image in split {split!r}")
        return items

    return read


def score(items: list[EvalItem], predictions: list[str]) -> dict:
    keys = [it.id for it in items]
    if len(set(keys)) != len(keys):
        raise InputError("caption data: duplicate image ids")
    s = caption_scores(dict(zip(keys, predictions, strict=True)), {it.id: it.reference for it in items})
    per_item = [{"cider_d": s["item_cider_d"][k]} for k in keys]
    scores = {k: v for k, v in s.items() if k != "item_cider_d"}
    return {"scores": {**scores, "unparsed": sum(not p.strip() for p in predictions)}, "items": per_item}


for _name, _folder in (("coco", None), ("flickr30k", "flickr30k-images")):
    BENCHES.add(
        _name,
        Bench(
            name=_name,
            summary=f"{_name} captions (Karpathy test): CIDEr-D, BLEU-1..4",
            read=reader(_name),
            images=folder if _folder is None else (lambda data, f=_folder: folder(data) / f),
            prompt=PROMPT,
            max_new_tokens=48,
            score=score,
            headline=("cider_d", "bleu_4"),
        ),
    )
