#!/usr/bin/env bash
# The CKA peers live in their own environment, never in lnprobe's: benchmarks/.peers-venv
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .peers-venv
.peers-venv/bin/python -m pip install --quiet torch==2.13.0 numpy safetensors
.peers-venv/bin/python -m pip install --quiet pytorch-cka ckatorch torch-cka
echo "peers installed in $(pwd)/.peers-venv"
