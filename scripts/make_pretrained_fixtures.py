"""Writes the pretrained-checkpoint fixtures of `crates/lra/tests/encode.rs` and their reference
hidden states.

Under `crates/lra/tests/fixtures/pretrained/`:
* `bert/`: a tiny random `BertForPreTraining` (so the file holds the `bert.` prefix and the unused
  `cls.*` heads, as `bert-base-uncased` on the hub does): vocabulary = the `bert-uncased` tokenizer
  fixture's `vocab.txt`, hidden 32, 2 layers, 4 heads, intermediate 37, 64 positions, 2 token
  types, `gelu`, LayerNorm epsilon 1e-12; saved by `save_pretrained` as `config.json` +
  `model.safetensors`, next to the tokenizer fixture's files.
* `roberta/`: a tiny random `RobertaForMaskedLM` (the `roberta.` prefix, `lm_head.*`, no pooler, as
  `roberta-base`): the `roberta` tokenizer fixture's vocabulary, the same sizes, 66 positions (64
  usable: RoBERTa's first `pad_token_id + 1` = 2 rows are never used by right-padded inputs), 1
  token type, epsilon 1e-5; saved with `safe_serialization=False` as `pytorch_model.bin`, so both
  of Burn's readers are tested.
* `<model>/inputs.txt`: one example a line, a sentence or `sentence_a<TAB>sentence_b` (accents,
  unknown words, a pair, and long lines that are cut at `MAX_LEN`).
* `<model>/expected_hidden.npy`: float32 `[examples, seq, 32]`, `last_hidden_state` of the base
  model (`BertModel` / `RobertaModel` loaded from the folder, eval mode) run on each example
  alone (no padding), tokenized by `AutoTokenizer.from_pretrained(folder)(a, b,
  truncation="longest_first", max_length=MAX_LEN)`, zero past each example's end;
  `<model>/expected_ids.npy`: int64 `[examples, seq]`, the ids, 0 past each example's end.
* `<model>/expected_mlm_logits.npy`: float32 `[MLM_EXAMPLES, seq, vocab]`, the masked-LM logits
  of the pretraining model loaded from the folder (`BertForPreTraining.prediction_logits` /
  `RobertaForMaskedLM.logits`, eval mode) on the first `MLM_EXAMPLES` examples, zero past each
  example's end (the decoder is tied to the word embeddings, as in the hub's checkpoints).
* `bert/expected_type_ids.npy`: int64 `[examples, seq]`, the token type ids of the examples above
  (1 on a pair's second text), 0 past each example's end; `bert/expected_sop_logits.npy`: float32
  `[examples, 2]`, `BertForPreTraining.seq_relationship_logits` (the pooler and next-sentence
  head, which `lra pretrain --sop` starts its sentence-order head from) on each example alone with
  its ids and type ids, eval mode.

Weights are drawn from fixed seeds; every parameter (LayerNorm gains and biases included) is
redrawn at a scale where a parameter loaded into the wrong place, or not at all, changes the
output. Running the script again rewrites the same bytes.

Made with torch 2.15.0 (CPU), transformers 4.57.6, safetensors 0.8.0, numpy 2.4.6:

    /tmp/glue-venv/bin/python scripts/make_pretrained_fixtures.py
"""

import pathlib
import shutil

import numpy as np
import torch
from transformers import (AutoTokenizer, BertConfig, BertForPreTraining, BertModel, RobertaConfig,
                          RobertaForMaskedLM, RobertaModel)

REPO = pathlib.Path(__file__).resolve().parent.parent
TOKENIZERS = REPO / "crates/lra-data/tests/fixtures/tokenizers"
ROOT = REPO / "crates/lra/tests/fixtures/pretrained"

# The length `lra encode --max-len` is given in the tests.
MAX_LEN = 24
# Examples whose masked-LM logits are kept (the arrays are vocabulary-wide).
MLM_EXAMPLES = 3

INPUTS = [
    "The cat sat on the mat.",
    "Hello, World! Don't panic?\tThe dog ran on the mat.",
    "Café déjà vu: naïve Zoë in Paris.",
    "xylophone qwerty $123\ta cat",
    "The dog played unbelievably, then ran on the mat, and the cat sat on the mat with the dog "
    "again and again.",
    "The dog played unbelievably, then the cat ran, and ran.\tA cat sat on the mat, then the dog "
    "sat on the cat, and it played on.",
    "it",
]

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             hidden_act="gelu")


def redraw(model, seed):
    """Every parameter at a scale where it matters: matrices N(0, 0.2²), embeddings N(0, 0.5²),
    biases N(0, 0.1²), LayerNorm gains 1 + N(0, 0.1²)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            noise = torch.randn(parameter.shape, generator=generator)
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                parameter.copy_(1.0 + 0.1 * noise)
            elif "embeddings" in name:
                parameter.copy_(0.5 * noise)
            elif parameter.dim() == 2:
                parameter.copy_(0.2 * noise)
            else:
                parameter.copy_(0.1 * noise)


def copy_tokenizer(name, folder):
    for file in sorted((TOKENIZERS / name).iterdir()):
        shutil.copyfile(file, folder / file.name)


def write_reference(folder, base_model_class, mlm_class, mlm_logits):
    (folder / "inputs.txt").write_text("".join(line + "\n" for line in INPUTS), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = base_model_class.from_pretrained(folder).eval()
    hidden, ids = [], []
    with torch.no_grad():
        for line in INPUTS:
            texts = line.split("\t")
            encoded = tokenizer(*texts, truncation="longest_first", max_length=MAX_LEN,
                                return_tensors="pt")
            output = model(**encoded).last_hidden_state[0]
            hidden.append(output.numpy())
            ids.append(encoded["input_ids"][0].numpy())
    seq = max(len(row) for row in ids)
    hidden_array = np.zeros((len(INPUTS), seq, SIZES["hidden_size"]), dtype=np.float32)
    ids_array = np.zeros((len(INPUTS), seq), dtype=np.int64)
    for i, (states, row) in enumerate(zip(hidden, ids)):
        hidden_array[i, : len(row)] = states
        ids_array[i, : len(row)] = row
    np.save(folder / "expected_hidden.npy", hidden_array)
    np.save(folder / "expected_ids.npy", ids_array)
    mlm = mlm_class.from_pretrained(folder).eval()
    logits = []
    with torch.no_grad():
        for row in ids[:MLM_EXAMPLES]:
            logits.append(mlm_logits(mlm(input_ids=torch.tensor(row)[None]))[0].numpy())
    logits_array = np.zeros((MLM_EXAMPLES, seq, logits[0].shape[-1]), dtype=np.float32)
    for i, rows in enumerate(logits):
        logits_array[i, : len(rows)] = rows
    np.save(folder / "expected_mlm_logits.npy", logits_array)
    print(folder.name, "ids per example:", [len(row) for row in ids])


def write_sentence_order_reference(folder):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertForPreTraining.from_pretrained(folder).eval()
    types, logits = [], []
    with torch.no_grad():
        for line in INPUTS:
            encoded = tokenizer(*line.split("\t"), truncation="longest_first", max_length=MAX_LEN,
                                return_tensors="pt")
            types.append(encoded["token_type_ids"][0].numpy())
            logits.append(model(**encoded).seq_relationship_logits[0].numpy())
    types_array = np.zeros((len(INPUTS), max(len(row) for row in types)), dtype=np.int64)
    for i, row in enumerate(types):
        types_array[i, : len(row)] = row
    np.save(folder / "expected_type_ids.npy", types_array)
    np.save(folder / "expected_sop_logits.npy", np.stack(logits).astype(np.float32))


def make_bert():
    folder = ROOT / "bert"
    folder.mkdir(parents=True, exist_ok=True)
    copy_tokenizer("bert-uncased", folder)
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    config = BertConfig(vocab_size=len(vocab), max_position_embeddings=64, type_vocab_size=2,
                        layer_norm_eps=1e-12, pad_token_id=0, **SIZES)
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    redraw(model, seed=1)
    model.save_pretrained(folder)  # model.safetensors
    write_reference(folder, BertModel, BertForPreTraining, lambda out: out.prediction_logits)
    write_sentence_order_reference(folder)


def make_roberta():
    folder = ROOT / "roberta"
    folder.mkdir(parents=True, exist_ok=True)
    copy_tokenizer("roberta", folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=66,
                           type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, **SIZES)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(config)
    redraw(model, seed=2)
    model.save_pretrained(folder, safe_serialization=False)  # pytorch_model.bin
    write_reference(folder, RobertaModel, RobertaForMaskedLM, lambda out: out.logits)


if __name__ == "__main__":
    make_bert()
    make_roberta()
