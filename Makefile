# Two commands on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.faceforge-installed

.PHONY: install demo test docs bench clean

install: $(STAMP)

# Exact versions come from constraints.txt (torch 2.14.1 + torchvision 0.29.1, so that timm
# runs); the MTCNN weights are extracted from the facenet-pytorch wheel into src/faceforge/_data/mtcnn/.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all,test,docs]'
	$(VENV)/bin/faceforge install-weights
	touch $(STAMP)

demo: install
	$(VENV)/bin/faceforge demo --output demo-output

test: install
	$(PY) -m pytest -q

# The manual (docs/, API reference from the docstrings) into site/; strict: any warning fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

bench: install
	$(PY) bench/pipeline.py
	$(PY) bench/lfw.py --dlib-detector
	$(PY) bench/eval.py
	$(PY) bench/lfw_allpairs.py
	$(PY) bench/ijbc_scale.py
	$(PY) bench/train.py
	$(PY) bench/train_lfw.py --recipe scratch
	$(PY) bench/train_lfw.py --recipe dlib-finetune
	$(PY) bench/quality_lfw.py
	$(PY) bench/quality.py
	$(PY) bench/bn_finetune_lfw.py
	$(PY) bench/curation_data.py
	$(PY) bench/curation_lfw.py
	$(PY) bench/cluster_lfw.py
	$(PY) bench/cluster_scale.py
	$(PY) bench/gallery_lfw.py
	$(PY) bench/search.py
	$(PY) bench/serve.py

clean:
	rm -rf $(VENV) demo-output site .pytest_cache
