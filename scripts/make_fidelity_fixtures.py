#!/usr/bin/env python3
"""Outputs of official attention modules on fixed inputs, for the tests that pin the
compatibility options to the code behind the PyTorch-LRA tables: `nystrom` `padding =
"official"` and `linear` `normalize = false`.

Each module is imported from a copy of the official file, not reproduced here:

    git --git-dir=<mirror of pkuzengqi/Skyformer> show 1a677cb:src/models/attention_nystrom.py \
        > /tmp/off/attention_nystrom.py
    git --git-dir=<mirror of mlpen/Nystromformer> show 56893131:LRA/code/attention_linear.py \
        > /tmp/off/attention_linear.py
    python scripts/make_fidelity_fixtures.py nystrom /tmp/off/attention_nystrom.py \
        crates/lra-model/src/mixer/fixtures/nystrom_official.json
    python scripts/make_fidelity_fixtures.py linear /tmp/off/attention_linear.py \
        crates/lra-model/src/mixer/fixtures/linear_official.json

(mlpen/Nystromformer's LRA/code/attention_nystrom.py computes the same as Skyformer's, apart
from the config key it reads the length from.) Made once with torch 2.15 on CPU, in float32.
"""
import importlib.util
import json
import sys

import torch

BATCH, HEADS, SEQ, HEAD_DIM, LANDMARKS = 2, 2, 16, 8, 4
REAL = [16, 11]  # real tokens per row; the second row is padded


SOURCES = {
    "nystrom": "pkuzengqi/Skyformer@1a677cb src/models/attention_nystrom.py",
    "linear": "mlpen/Nystromformer@56893131 LRA/code/attention_linear.py",
}


def main(method, module_path, out_path):
    spec = importlib.util.spec_from_file_location("official_" + method, module_path)
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)
    if method == "nystrom":
        attention = official.NystromAttention(
            {"head_dim": HEAD_DIM, "num_head": HEADS, "num_landmarks": LANDMARKS,
             "max_seq_len": SEQ}
        )
    else:
        attention = official.LinearAttention({})
    generator = torch.Generator().manual_seed(0)
    shape = (BATCH, HEADS, SEQ, HEAD_DIM)
    q, k, v = (torch.randn(shape, generator=generator) for _ in range(3))
    mask = torch.tensor([[1.0 if j < n else 0.0 for j in range(SEQ)] for n in REAL])
    with torch.no_grad():
        out = attention(q, k, v, mask)
    flat = lambda t: [float(x) for x in t.reshape(-1)]
    fixture = {
        "source": SOURCES[method] + ", torch " + torch.__version__,
        "shape": list(shape),
        "landmarks": LANDMARKS,
        "real": REAL,
        "q": flat(q),
        "k": flat(k),
        "v": flat(v),
        "out": flat(out),
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
