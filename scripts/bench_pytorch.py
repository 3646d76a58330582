#!/usr/bin/env python3
"""PyTorch eager reference for `lra bench step` / `lra bench mixers` (same model, same shapes).

The model mirrors crates/lra-model: token + learned position embeddings, pre-LN blocks with naive
softmax attention (explicit scores, softmax, weighted sum) and a GELU FFN, final LayerNorm, mean
pooling with padding, ReLU MLP head; AdamW. Not a project dependency: run it from a scratch venv
(`pip install torch`) on an idle machine, with the same thread count as the Rust run.

    python scripts/bench_pytorch.py step --threads 2
    python scripts/bench_pytorch.py mixers --seq-len 512,1024,2048,4096 --threads 2
    python scripts/bench_pytorch.py sdpa --batch 1 --heads 4 --head-dim 64 --threads 2   # vs `lra bench attention`
    python scripts/bench_pytorch.py glue --config experiments/bench/bert-base/config.json --threads 2
        # transformers' BertForSequenceClassification, vs `lra bench step --preset glue/sst2 --init DIR`
    python scripts/bench_pytorch.py mlm --config experiments/bench/bert-base/config.json --seq-len 512 --batch 1
        # transformers' BertForMaskedLM / RobertaForMaskedLM pretraining step, vs `lra bench mlm`
    python scripts/bench_pytorch.py encode --init DIR --input FILE --seq-len 128 --threads 2
        # transformers doing `lra encode --init DIR --input FILE --max-len 128`'s job, end to end
    python scripts/bench_pytorch.py step --device cuda   # on a GPU (scripts/gpu-check.sh)

On `--device cuda` every timing waits for the GPU (`torch.cuda.synchronize`), and the peak GPU memory
of the timed calls is printed as `peak_mib` (on the CPU that column is empty).
"""
import argparse
import math
import statistics
import time

import torch
from torch import nn


class NaiveAttention(nn.Module):
    def __init__(self, d_model, heads, dropout):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pad_mask):  # x [b, n, d]; pad_mask [b, n] True = padding
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        scores = scores + pad_mask[:, None, None, :].float() * -1e9
        probs = self.drop(torch.softmax(scores, dim=-1))
        return self.o((probs @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, d_model, heads, d_ffn, dropout):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = NaiveAttention(d_model, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ffn), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_ffn, d_model), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pad_mask):
        x = x + self.drop(self.attn(self.norm1(x), pad_mask))
        return x + self.ffn(self.norm2(x))


class Classifier(nn.Module):
    def __init__(self, vocab, max_len, d_model, layers, heads, d_ffn, head_hidden, classes, dropout):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d_model), nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, d_ffn, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Linear(d_model, head_hidden), nn.ReLU(), nn.Linear(head_hidden, classes))

    def forward(self, tokens, pad_mask):
        x = self.drop(self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device)))
        for block in self.blocks:
            x = block(x, pad_mask)
        return self.head(self.norm(x).mean(dim=1))


def timed(repeats, fn, device):
    """(median ms, min ms, peak MiB or "") of `repeats` calls after one warm-up call."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.1f}" if device.type == "cuda" else ""
    return statistics.median(times), min(times), peak


def bench_step(args):
    # lra-pytorch/listops: dim 64, 2 layers, 2 heads, FFN 128, length 2000, batch 32.
    batch, n, vocab, classes = args.batch, args.seq_len, 16, 10
    dev = args.device
    model = Classifier(vocab, n, 64, 2, 2, 128, 128, classes, 0.1).to(dev)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(1, vocab, (batch, n), device=dev)
    lengths = torch.randint(n // 4, n, (batch, 1), device=dev)
    pad_mask = torch.arange(n, device=dev)[None, :] >= lengths
    labels = torch.arange(batch, device=dev) % classes

    def step():
        optim.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(tokens, pad_mask), labels)
        loss.backward()
        optim.step()

    median, best, peak = timed(args.repeats, step, dev)
    print(f"bench,attention,seq_len,batch,d_model,device,median_ms,min_ms,peak_mib")
    print(f"train_step_pytorch,softmax,{n},{batch},64,{dev.type},{median:.1f},{best:.1f},{peak}")


def bench_mixers(args):
    dev = args.device
    print(f"bench,attention,seq_len,batch,d_model,device,median_ms,min_ms,peak_mib")
    for n in args.seq_len:
        attn = NaiveAttention(64, 2, 0.0).to(dev)
        x = torch.randn(1, n, 64, device=dev, requires_grad=True)
        pad = torch.zeros(1, n, dtype=torch.bool, device=dev)
        median, best, peak = timed(args.repeats, lambda: attn(x, pad).sum().backward(), dev)
        print(f"mixer_fwd_bwd_pytorch,softmax,{n},1,64,{dev.type},{median:.2f},{best:.2f},{peak}")


def bench_sdpa(args):
    # torch.nn.functional.scaled_dot_product_attention fwd+bwd on [batch, heads, n, head_dim]
    # (PyTorch's fused CPU kernel: flash-style tiles), the reference for `ops::flash_attention`.
    dev = args.device
    print(f"bench,attention,seq_len,batch,heads,head_dim,device,median_ms,min_ms,peak_mib")
    for n in args.seq_len:
        shape = (args.batch, args.heads, n, args.head_dim)
        q, k, v = (torch.randn(shape, device=dev, requires_grad=True) for _ in range(3))
        fwd_bwd = lambda: nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
        median, best, peak = timed(args.repeats, fwd_bwd, dev)
        print(f"sdpa_fwd_bwd_pytorch,sdpa,{n},{args.batch},{args.heads},{args.head_dim},{dev.type},{median:.2f},{best:.2f},{peak}")


def bench_glue(args):
    # One fine-tuning step of transformers' BERT (eager attention, as the reference implementation)
    # with the shape of `--config`: batch 32, length 128, AdamW, as the glue/<task> presets.
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig.from_json_file(args.config)
    config.num_labels = 2
    config._attn_implementation = "eager"
    dev = args.device
    model = BertForSequenceClassification(config).train().to(dev)
    optim = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, weight_decay=0.0)
    batch, n = args.batch, args.seq_len
    tokens = torch.randint(1, config.vocab_size, (batch, n), device=dev)
    lengths = torch.randint(n // 4, n, (batch, 1), device=dev)
    attention_mask = (torch.arange(n, device=dev)[None, :] < lengths).long()
    labels = torch.arange(batch, device=dev) % 2

    def step():
        optim.zero_grad(set_to_none=True)
        loss = model(input_ids=tokens, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()

    median, best, peak = timed(args.repeats, step, dev)
    print(f"bench,attention,seq_len,batch,d_model,device,median_ms,min_ms,peak_mib")
    print(f"glue_step_transformers,eager,{n},{batch},{config.hidden_size},{dev.type},{median:.1f},{best:.1f},{peak}")


def bench_mlm(args):
    # One masked-LM pretraining step of transformers' `…ForMaskedLM` (eager attention, the
    # reference implementation) with the shape of `--config`, as `lra bench mlm` takes it: full
    # sequences of random ids, 15 % of them targets (80 % replaced by the mask id), AdamW
    # (β2 0.999, ε 1e-6, weight decay 0.01), gradients clipped to norm 1. The position table is
    # sized to each length, as `lra bench mlm` does.
    from transformers import AutoConfig, AutoModelForMaskedLM

    dev = args.device
    print("bench,attention,seq_len,batch,d_model,device,median_ms,min_ms,peak_mib,tokens_per_s")
    for n in args.seq_len:
        config = AutoConfig.from_pretrained(args.config)
        offset = config.pad_token_id + 1 if config.model_type == "roberta" else 0
        config.max_position_embeddings = max(config.max_position_embeddings, n + offset)
        config._attn_implementation = "eager"
        torch.manual_seed(0)
        model = AutoModelForMaskedLM.from_config(config).train().to(dev)
        optim = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.999), eps=1e-6,
                                  weight_decay=0.01)
        batch = args.batch
        tokens = torch.randint(5, config.vocab_size, (batch, n), device=dev)
        chosen = torch.rand(batch, n, device=dev) < 0.15
        chosen[:, [0, -1]] = False
        labels = torch.where(chosen, tokens, torch.full_like(tokens, -100))
        inputs = torch.where(chosen & (torch.rand(batch, n, device=dev) < 0.8), 4, tokens)

        def step():
            optim.zero_grad(set_to_none=True)
            loss = model(input_ids=inputs, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()

        median, best, peak = timed(args.repeats, step, dev)
        print(f"mlm_step_transformers,eager,{n},{batch},{config.hidden_size},{dev.type},"
              f"{median:.1f},{best:.1f},{peak},{batch * n / (median / 1e3):.0f}")
def bench_encode(args):
    # The job of `lra encode` done with transformers, end to end: load the checkpoint and its
    # tokenizer, encode every line of --input (a sentence or `a<TAB>b`) in batches padded to
    # --seq-len as `lra encode` pads them, and write the last hidden states as .npy. Timed from
    # loading to the file written, `repeats` times; compare with `time lra encode` (whose process
    # start-up is milliseconds; Python's imports are left out here).
    import numpy as np
    from transformers import AutoModel, AutoTokenizer

    n = args.seq_len
    lines = [line.rstrip("\n").split("\t") for line in open(args.input, encoding="utf-8")]

    def encode():
        tokenizer = AutoTokenizer.from_pretrained(args.init)
        model = AutoModel.from_pretrained(args.init, attn_implementation="eager").eval()
        hidden = []
        with torch.no_grad():
            for start in range(0, len(lines), args.batch):
                batch = lines[start:start + args.batch]
                pairs = [tuple(b) if len(b) == 2 else (b[0], None) for b in batch]
                firsts, seconds = zip(*pairs)
                inputs = tokenizer(list(firsts), None if None in seconds else list(seconds),
                                   padding="max_length", truncation="longest_first",
                                   max_length=n, return_tensors="pt")
                hidden.append(model(**inputs).last_hidden_state.numpy())
        np.save(args.out, np.concatenate(hidden))

    median, best, _ = timed(args.repeats, encode, torch.device("cpu"))
    per_second = len(lines) / (median / 1e3)
    print("bench,attention,seq_len,batch,examples,device,median_ms,min_ms,examples_per_s")
    print(f"encode_transformers,eager,{n},{args.batch},{len(lines)},cpu,{median:.1f},{best:.1f},{per_second:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["step", "mixers", "sdpa", "glue", "mlm", "encode"])
    parser.add_argument("--config", help="glue and mlm: a BERT (or RoBERTa, mlm) config.json")
    parser.add_argument("--init", help="encode only: a checkpoint folder (save_pretrained)")
    parser.add_argument("--input", help="encode only: one example a line, `a` or `a<TAB>b`")
    parser.add_argument("--out", default="/tmp/bench_encode.npy", help="encode only: the .npy written")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4, help="sdpa only")
    parser.add_argument("--head-dim", type=int, default=64, help="sdpa only")
    parser.add_argument("--seq-len", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--device", type=torch.device, default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.what == "step":
        args.seq_len = (args.seq_len or [2000])[0]
        bench_step(args)
    elif args.what == "glue":
        args.seq_len = (args.seq_len or [128])[0]
        bench_glue(args)
    elif args.what == "mlm":
        args.seq_len = args.seq_len or [512]
        bench_mlm(args)
    elif args.what == "encode":
        args.seq_len = (args.seq_len or [128])[0]
        bench_encode(args)
    elif args.what == "sdpa":
        args.seq_len = args.seq_len or [1024, 2048, 4096, 8192, 16384]
        bench_sdpa(args)
    else:
        args.seq_len = args.seq_len or [512, 1024, 2048, 4096]
        bench_mixers(args)


if __name__ == "__main__":
    main()
