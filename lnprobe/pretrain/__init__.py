"""The paper pipeline's first two stages, before `lnprobe assemble`: a text LLM pre-trained on a text
corpus (`text.py`) and a CLIP vision tower pre-trained contrastively on image-caption pairs (`vision.py`).
At 7B these
are Vicuna and CLIP ViT-L, downloaded; the CPU miniature makes its own in seconds."""
