"""LLaVA-format conversation data → token ids, label masks and pixel values.

A data file is a JSON list (or JSONL) of records `{id, image?, conversations: [{from: human|gpt, value}]}`
with `<image>` in the first human turn when the record has an image; a text-corpus line `{"text": ...}` is
read as a caption without image (with the `plain` template: plain language-model pre-training on the whole
text). Each record is rendered with a chat
template, tokenised segment by segment (so only assistant answers are labels; everything else is -100),
`<image>` is expanded to the exact number of image tokens the model produces, and sequences are truncated
to `max_length` from the end, never through the image tokens. Every record is checked when the data is
opened, so bad input fails before training starts, naming the file and the record.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from lnprobe.data.images import check_images, decode
from lnprobe.data.templates import EOS, TEMPLATES, Turn
from lnprobe.errors import InputError
from lnprobe.textio import parse_json, read_text

IMAGE = "<image>"
IGNORE = -100


@dataclass(frozen=True)
class Record:
    index: int  # position in the file
    id: str
    image: str | None
    turns: tuple[Turn, ...]


def _where(path: Path, index: int, rid: object = None) -> str:
    return f"{path}: record {index}" + (f" (id {rid})" if rid is not None else "")


def read_records(path: str | Path) -> list[Record]:
    """Parse and validate a LLaVA JSON / JSONL file."""
    path = Path(path)
    raw = raw_records(path)
    if not raw:
        raise InputError(f"{path}: the dataset is empty")
    return [_record(path, i, item) for i, item in enumerate(raw)]


def raw_records(path: str | Path) -> list:
    """The records of a LLaVA JSON / JSONL file as parsed, every field kept (not validated)."""
    return _parse(Path(path), read_text(path, "data file"))


def _parse(path: Path, text: str) -> list:
    if path.suffix == ".jsonl":
        return [
            parse_json(line, f"{path}: line {line_no}")
            for line_no, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    data = parse_json(text, str(path))
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records")
    return data


def _record(path: Path, index: int, item: object) -> Record:
    if not isinstance(item, dict):
        raise InputError(f"{_where(path, index)}: expected an object")
    rid = item.get("id", index)
    where = _where(path, index, rid)
    if "conversations" not in item and isinstance(item.get("text"), str):  # a text corpus line
        if IMAGE in item["text"]:
            raise InputError(f"{where}: a text record cannot hold '<image>'")
        return Record(index=index, id=str(rid), image=None, turns=(("", item["text"]),))
    convs = item.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise InputError(f"{where}: missing 'conversations'")
    roles = [c.get("from") if isinstance(c, dict) else None for c in convs]
    values = [c.get("value") if isinstance(c, dict) else None for c in convs]
    if any(not isinstance(v, str) for v in values):
        raise InputError(f"{where}: every turn needs a string 'value'")
    if roles[0] in ("system",):
        roles, values = roles[1:], values[1:]
    if "gpt" not in roles:
        raise InputError(f"{where}: conversation has no assistant ('gpt') turn")
    expected = ["human", "gpt"] * (len(roles) // 2)
    if len(roles) % 2 or roles != expected:
        raise InputError(f"{where}: turns must alternate human, gpt (got {roles})")
    turns = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
    image = item.get("image")
    if image is not None and not isinstance(image, str):
        raise InputError(f"{where}: 'image' must be a path string")
    placeholders = sum(v.count(IMAGE) for v in values)
    wanted = 1 if image else 0
    if placeholders != wanted or (image and IMAGE not in turns[0][0]):
        raise InputError(
            f"{where}: image-token count mismatch ({placeholders} '<image>' in the text, "
            f"{wanted} image{'s' if wanted != 1 else ''}; it belongs in the first human turn)"
        )
    return Record(index=index, id=str(rid), image=image, turns=turns)


def image_token_count(processor) -> int:
    """Image tokens per image for a LLaVA(-1.5) processor: patches, plus extra tokens, minus the CLS that
    the 'default' feature-selection strategy drops."""
    patch = getattr(processor, "patch_size", None)
    if not patch:
        raise InputError(
            f"{type(processor).__name__}: training data needs a LLaVA processor with a patch_size"
        )
    ip = processor.image_processor
    size = getattr(ip, "crop_size", None) or ip.size
    height, width = (
        size.get("height", size.get("shortest_edge")),
        size.get("width", size.get("shortest_edge")),
    )
    n = (height // patch) * (width // patch) + int(getattr(processor, "num_additional_image_tokens", 0) or 0)
    return n - 1 if getattr(processor, "vision_feature_select_strategy", None) == "default" else n


def _merged(segments: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Adjacent segments with the same role joined, so context is tokenised as one string (as LLaVA
    tokenises its prompts: "SYSTEM USER: ..." gives the same tokens as the whole text would)."""
    out: list[tuple[str, bool]] = []
    for text, target in segments:
        if out and out[-1][1] == target:
            out[-1] = (out[-1][0] + text, target)
        else:
            out.append((text, target))
    return out


class Encoder:
    """Record → (input_ids, labels), with the template, the image-token expansion and truncation."""

    def __init__(self, processor, template: str, max_length: int) -> None:
        self.template = TEMPLATES.get(template)
        self.tokenizer = processor.tokenizer
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE)
        self.n_image_tokens = image_token_count(processor)
        self.max_length = max_length
        if max_length < 2:
            raise InputError(f"--max-length must be >= 2, got {max_length}")

    def _segments(self, turns: list[Turn]) -> list[tuple[str, bool]]:
        """The template's segments with `EOS` written as this tokenizer's own end-of-sequence token."""
        eos = self.tokenizer.eos_token
        segments = _merged(self.template.render(turns))
        if not eos or eos == EOS:
            return segments
        return [(text.replace(EOS, eos), target) for text, target in segments]

    def _bos(self, segments: list[tuple[str, bool]]) -> list[int]:
        """[BOS] unless the tokenizer has none or the template's text already starts with it (ChatML with
        SmolLM2, whose BOS is `<|im_start|>`)."""
        tok = self.tokenizer
        if tok.bos_token_id is None or (
            segments and tok.bos_token and segments[0][0].startswith(tok.bos_token)
        ):
            return []
        return [tok.bos_token_id]

    def encode(self, record: Record) -> tuple[list[int], list[int]]:
        segments = self._segments(list(record.turns))
        ids = self._bos(segments)
        labels: list[int] = [IGNORE] * len(ids)
        for text, target in segments:
            piece_ids = self._text_ids(text)
            ids += piece_ids
            labels += [t if target and t != self.image_token_id else IGNORE for t in piece_ids]
        return self._truncate(record, ids, labels)

    def encode_prompt(self, human: str) -> list[int]:
        """Token ids of a one-turn conversation up to where the assistant's answer starts (generation)."""
        segments = self._segments([(human, "")])
        ids = self._bos(segments)
        for text, target in segments:
            if target:
                break
            ids += self._text_ids(text)
        return ids

    def _text_ids(self, text: str) -> list[int]:
        """Tokenise `text` with each `<image>` expanded to the model's image tokens."""
        ids: list[int] = []
        for j, piece in enumerate(text.split(IMAGE)):
            if j:
                ids += [self.image_token_id] * self.n_image_tokens
            ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
        return ids

    def _truncate(self, record: Record, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        if len(ids) > self.max_length:
            if record.image and ids.index(self.image_token_id) + self.n_image_tokens > self.max_length:
                raise InputError(
                    f"record {record.index} (id {record.id}): max_length {self.max_length} would "
                    "cut its image tokens"
                )
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(label == IGNORE for label in labels[1:]):
            raise InputError(
                f"record {record.index} (id {record.id}): no answer tokens within max_length "
                f"{self.max_length}"
            )
        return ids, labels


CACHE_BYTES = 256 * 2**20  # LlavaDataset keeps its processed items when all of them fit this
# processed items of recent datasets, by fingerprint (`_fingerprint`), least recently used first
_SHARED: OrderedDict[str, tuple[dict[int, dict], list[int]]] = OrderedDict()


def _fingerprint(ds: LlavaDataset) -> str | None:
    """What a dataset's items depend on: the data file and each image (path, size, modification time), the
    template, the length limit, the tokenizer's definition and the image processor's settings. None when the
    tokenizer cannot be serialised (nothing is shared then)."""
    tok, enc = ds.processor.tokenizer, ds.encoder
    backend = getattr(tok, "backend_tokenizer", None)
    image = getattr(ds.processor, "image_processor", None)
    if backend is None or image is None:
        return None
    h = hashlib.sha256()
    for path in [ds.path, *(ds.image_root / r.image for r in ds.records if r.image)]:
        st = path.stat()
        h.update(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    settings = (repr(enc.template), enc.max_length, tok.bos_token_id, enc.image_token_id, enc.n_image_tokens)
    h.update(repr(settings).encode())
    h.update(backend.to_str().encode())
    h.update(image.to_json_string().encode())
    return h.hexdigest()


class LlavaDataset(torch.utils.data.Dataset):
    """Encoded records with their images; `lengths` (token counts) drive length-grouped batching."""

    def __init__(
        self,
        data: str | Path,
        processor,
        template: str = "vicuna_v1",
        max_length: int = 2048,
        image_folder: str | Path | None = None,
        skip_missing: bool = False,
        progress: bool = False,
        decode_all: bool = True,
    ) -> None:
        self.path = Path(data)
        self.image_root = Path(image_folder) if image_folder else self.path.parent
        self.processor = processor
        self.encoder = Encoder(processor, template, max_length)
        records = read_records(self.path)
        self.records, self.skipped = self._check_images(records, skip_missing)
        if decode_all:  # a broken file is named before any work starts (`check` does a subset)
            self.check(range(len(self.records)), progress)
        if not self.records:
            raise InputError(f"{self.path}: no usable records ({self.skipped} skipped for missing images)")
        self._memo, self.lengths = self._shared_memo()
        if self.lengths is None:
            self.lengths = [len(self._encode(r)[0]) for r in self.records]
            if self._key is not None:
                _SHARED[self._key] = (self._memo, self.lengths)

    def _shared_memo(self) -> tuple[dict[int, dict] | None, list[int] | None]:
        """(processed items kept in memory, token counts if known). Items are kept when they all fit
        CACHE_BYTES, so a small dataset read over several epochs is decoded and tokenised once; they are
        shared in this process by every dataset with the same fingerprint (same data file, images,
        tokenizer and processing), so the runs of a sweep in one worker process do it once in all."""
        size = self._item_bytes() * len(self.records)
        self._key = _fingerprint(self) if size <= CACHE_BYTES else None
        if self._key is None:
            return ({} if size <= CACHE_BYTES else None), None
        if self._key in _SHARED:
            _SHARED.move_to_end(self._key)
            return _SHARED[self._key]
        while _SHARED and size + sum(len(n) for _, n in _SHARED.values()) * self._item_bytes() > CACHE_BYTES:
            _SHARED.popitem(last=False)  # least recently used first
        return {}, None

    def _item_bytes(self) -> float:
        """Bytes of one processed image (3 x height x width float32); unknown sizes never cache."""
        image = getattr(self.processor, "image_processor", None)
        crop = getattr(image, "crop_size", None) or getattr(image, "size", None) or {}
        h, w = crop.get("height"), crop.get("width")
        return 3 * h * w * 4 + 64 if h and w else float("inf")

    def _check_images(self, records: list[Record], skip_missing: bool) -> tuple[list[Record], int]:
        """Records whose image exists (a missing one stops unless `skip_missing`)."""
        kept = []
        for r in records:
            if r.image and not (self.image_root / r.image).is_file():
                if not skip_missing:
                    raise InputError(
                        f"{self.image_root / r.image}: image missing (record {r.index}, id {r.id}; "
                        "--skip-missing skips such records)"
                    )
                continue
            kept.append(r)
        return kept, len(records) - len(kept)

    def check(self, indices, progress: bool = False) -> None:
        """Decode the images of these records (InputError names the first broken one)."""
        chosen = [self.records[i] for i in indices]
        where = f"{self.path}: record {{}}, id {{}}"
        check_images(
            ((self.image_root / r.image, where.format(r.index, r.id)) for r in chosen if r.image), progress
        )

    def _encode(self, record: Record) -> tuple[list[int], list[int]]:
        try:
            return self.encoder.encode(record)
        except InputError as exc:
            raise InputError(f"{self.path}: {exc}") from None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        if self._memo is not None and i in self._memo:
            return self._memo[i]  # collate copies out of it; nothing writes into an item
        record = self.records[i]
        ids, labels = self._encode(record)
        item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "id": record.id}
        if record.image:
            item["pixel_values"] = self._image(record)
        if self._memo is not None:
            self._memo[i] = item
        return item

    def _image(self, record: Record) -> torch.Tensor:
        try:
            rgb = decode(self.image_root / record.image)
        except InputError as exc:
            raise InputError(f"{exc} (record {record.index}, id {record.id})") from None
        return self.processor.image_processor(images=[rgb], return_tensors="pt")["pixel_values"][0]


def reference_answer(labels: torch.Tensor, stop: set[int]) -> tuple[int, list[int]]:
    """(where the first answer starts, its tokens): the first run of target labels (the first assistant
    turn), its end-of-turn tokens (`stop`) dropped."""
    start = int((labels != IGNORE).nonzero()[0])
    answer = []
    for t in labels[start:].tolist():
        if t == IGNORE:
            break
        if t not in stop:
            answer.append(t)
    return start, answer


def collate(items: list[dict], pad_id: int, image_token_id: int, n_image_tokens: int) -> dict:
    """Right-pad a batch; stack the images of the rows that have one; check image tokens per row."""
    width = max(len(it["input_ids"]) for it in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it["input_ids"])
        input_ids[row, :n], labels[row, :n], attention[row, :n] = it["input_ids"], it["labels"], 1
        expected = n_image_tokens if "pixel_values" in it else 0
        found = int((it["input_ids"] == image_token_id).sum())
        if found != expected:  # transformers only checks the batch total
            raise InputError(f"record id {it['id']}: {found} image tokens, expected {expected}")
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    images = [it["pixel_values"] for it in items if "pixel_values" in it]
    if images:
        batch["pixel_values"] = torch.stack(images)
    return batch


class LengthGroupedBatches:
    """Deterministic batches of similar length: shuffle with (seed, epoch), cut into mega-batches of
    `group` batches, sort each by length (longest first), split into batches. Little padding is wasted
    while the order stays random across mega-batches."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, group: int = 16) -> None:
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        mega = self.batch_size * self.group
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.epoch(0))
