"""Writes the tokenizer fixtures of `crates/lra-data/tests/tokenizer.rs` and the reference ids.

Under `crates/lra-data/tests/fixtures/tokenizers/`:
* `bert-uncased/`, `bert-cased/`, `bert-uncased-accents/`: one hand-written WordPiece `vocab.txt`
  (BERT's special tokens first, then words, `##` pieces, punctuation and accented forms), saved by
  transformers' `BertTokenizerFast(..).save_pretrained` with `do_lower_case` true / false / true and
  `strip_accents` unset / unset / false, so each folder holds `vocab.txt`, `tokenizer_config.json`
  and the `tokenizer.json` the `tokenizers` library builds from them.
* `roberta/`: a byte-level BPE (`vocab.json` + `merges.txt`) trained with the `tokenizers` library on
  the sentences below (at most 400 tokens: 388 here, RoBERTa's special tokens `<s> <pad> </s> <unk> <mask>` = ids
  0..4), saved by `RobertaTokenizerFast(..).save_pretrained`.
* `expected.json`: for every folder and every case (text_a, optional text_b, max_len), the
  `input_ids` and `token_type_ids` of `AutoTokenizer.from_pretrained(folder)(text_a, text_b,
  truncation="longest_first", max_length=max_len)`, i.e. the Hugging Face `tokenizers` pipeline
  transformers uses. The script also checks these ids against the pure-Python ("slow")
  `BertTokenizer` / `RobertaTokenizer` built from vocab.txt / vocab.json + merges.txt, and prints
  the cases where they differ: only pairs whose texts must both be cut to an odd total, where
  `tokenizers` gives the extra token to the longer text (text_b on a tie) and the slow tokenizers,
  like BERT's original `_truncate_seq_pair`, to text_a.

Made with tokenizers 0.22.2 (the version of the Rust crate) and transformers 4.57.6:

    python3 -m venv /tmp/glue-venv
    /tmp/glue-venv/bin/pip install "tokenizers==0.22.2" "transformers<5"
    /tmp/glue-venv/bin/python scripts/make_tokenizer_fixtures.py
"""

import json
import pathlib
import shutil
import tempfile

from tokenizers import ByteLevelBPETokenizer
from transformers import (AutoTokenizer, BertTokenizer, BertTokenizerFast, RobertaTokenizer,
                          RobertaTokenizerFast)

ROOT = pathlib.Path(__file__).resolve().parent.parent / "crates/lra-data/tests/fixtures/tokenizers"

BERT_VOCAB = """[PAD] [UNK] [CLS] [SEP] [MASK]
the a an cat sat on mat dog ran play un hello world don t it s paris cafe deja vu naive zoe
café déjà naïve zoë
The Cat Hello World Paris Café Don
##s ##ed ##ing ##ly ##believ ##ably ##able ##e ##a ##é ##2 ##3 ##0
. , ! ? ' " - : ; ( ) $ 1 2 3 0 中 国""".split()

SENTENCES = [
    "The cat sat on the mat.",
    "Hello, World! Don't panic?",
    "Café déjà vu: naïve Zoë in Paris.",
    "The dog played unbelievably, then ran.",
    "xylophone qwerty $123 costs 20 dollars",
    "中国 cat",
    "  extra   spaces\tand\ttabs  ",
    "a [MASK] on the mat",
]

# (text_a, text_b, max_len): single texts and pairs, untruncated and truncated; the odd budgets
# split two long texts, the short ones cut only the longer text, or a single text.
CASES = (
    [(s, None, 64) for s in SENTENCES]
    + [(SENTENCES[i], SENTENCES[j], 64) for i, j in [(0, 1), (2, 3), (4, 5), (6, 7)]]
    + [
        (SENTENCES[3], None, 6),
        (SENTENCES[0], SENTENCES[3], 9),
        (SENTENCES[0], SENTENCES[3], 10),
        (SENTENCES[3], SENTENCES[2], 13),
        (SENTENCES[0], SENTENCES[0], 11),
        (SENTENCES[5], SENTENCES[3], 12),
        (SENTENCES[3], SENTENCES[5], 12),
    ]
)


def make_bert(name, **options):
    folder = ROOT / name
    with tempfile.TemporaryDirectory() as scratch:
        vocab = pathlib.Path(scratch) / "vocab.txt"
        vocab.write_text("".join(token + "\n" for token in BERT_VOCAB), encoding="utf-8")
        BertTokenizerFast(vocab_file=str(vocab), **options).save_pretrained(folder)
    slow = BertTokenizer(vocab_file=str(folder / "vocab.txt"), **options)
    return folder, slow


def make_roberta():
    folder = ROOT / "roberta"
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 3, vocab_size=400, min_frequency=2, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    with tempfile.TemporaryDirectory() as scratch:
        vocab, merges = bpe.save_model(scratch)
        RobertaTokenizerFast(vocab_file=vocab, merges_file=merges).save_pretrained(folder)
    slow = RobertaTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    return folder, slow


def encode(tokenizer, text_a, text_b, max_len):
    encoded = tokenizer(text_a, text_b, truncation="longest_first", max_length=max_len,
                        return_token_type_ids=True)
    return {"ids": encoded["input_ids"], "type_ids": encoded["token_type_ids"]}


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    folders = [
        make_bert("bert-uncased", do_lower_case=True),
        make_bert("bert-cased", do_lower_case=False),
        make_bert("bert-uncased-accents", do_lower_case=True, strip_accents=False),
        make_roberta(),
    ]
    expected = {"cases": [{"text_a": a, "text_b": b, "max_len": n} for a, b, n in CASES]}
    for folder, slow in folders:
        reference = AutoTokenizer.from_pretrained(folder)
        assert reference.is_fast, folder
        results = [encode(reference, *case) for case in CASES]
        for case, result in zip(CASES, results):
            if encode(slow, *case) != result:
                print(f"{folder.name}: slow tokenizer differs on {case}")
        expected[folder.name] = results
    # One case per line keeps the file short and its diffs readable.
    entries = [
        f"{json.dumps(key)}: [\n" + ",\n".join(json.dumps(item, ensure_ascii=False) for item in items) + "\n]"
        for key, items in expected.items()
    ]
    (ROOT / "expected.json").write_text("{\n" + ",\n".join(entries) + "\n}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
