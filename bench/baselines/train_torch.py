#!/usr/bin/env python3
"""PyTorch baseline for `nativeparallel train` on the CPU: the same Llama-style model (RMSNorm, RoPE rotate_half,
grouped-query attention, SwiGLU, untied LM head), batch, sequence, AdamW and thread count, timed the same way
(wall time per step after warm-up, tokens/s). Reads the same llm.c shard.

  python3 bench/baselines/train_torch.py --data FILE.bin [--batch 8] [--seq 128] [--steps 20] [--threads 2]

Data parallelism, the peer of `train --dp N` in a launched job: PyTorch DDP over Gloo (bucket_cap_mb 25, DDP's
default), --batch rows per rank, each rank its own rows of the same global batch; tokens/s counts every rank's:

  for r in 0 1; do RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \
    python3 bench/baselines/train_torch.py --data FILE.bin --ddp --threads 1 & done; wait

(Debian's torch 1.13 `torch.distributed.run` fails on Python 3.11 before starting any worker, so the two ranks are
started by hand with torch's env:// variables.)

Install Debian's python3-torch with libopenblas0-pthread (else its BLAS is the slow reference one), and for a
fair peer name the real core in the benchmark command (never in tests): OPENBLAS_CORETYPE=SkylakeX where AVX-512
is present, Haswell otherwise.
"""
import argparse, math, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self, h, heads, kv_heads, ffn):
        super().__init__()
        self.heads, self.kv_heads, self.d = heads, kv_heads, h // heads
        self.input_norm, self.post_norm = RMSNorm(h), RMSNorm(h)
        self.q = nn.Linear(h, heads * self.d, bias=False)
        self.k = nn.Linear(h, kv_heads * self.d, bias=False)
        self.v = nn.Linear(h, kv_heads * self.d, bias=False)
        self.o = nn.Linear(heads * self.d, h, bias=False)
        self.gate = nn.Linear(h, ffn, bias=False)
        self.up = nn.Linear(h, ffn, bias=False)
        self.down = nn.Linear(ffn, h, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        n = self.input_norm(x)
        q = self.q(n).view(b, t, self.heads, self.d).transpose(1, 2)
        k = self.k(n).view(b, t, self.kv_heads, self.d).transpose(1, 2)
        v = self.v(n).view(b, t, self.kv_heads, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d) + mask
        a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.o(a)
        n = self.post_norm(x)
        return x + self.down(F.silu(self.gate(n)) * self.up(n))


class Llama(nn.Module):
    def __init__(self, vocab, h, layers, heads, kv_heads, ffn, theta=10000.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, h)
        self.layers = nn.ModuleList([Layer(h, heads, kv_heads, ffn) for _ in range(layers)])
        self.norm = RMSNorm(h)
        self.head = nn.Linear(h, vocab, bias=False)
        self.d, self.theta = h // heads, theta

    def forward(self, ids):
        t = ids.shape[1]
        inv = self.theta ** (-torch.arange(0, self.d, 2, dtype=torch.float32) / self.d)
        angles = torch.outer(torch.arange(t, dtype=torch.float32), inv)
        angles = torch.cat((angles, angles), dim=-1)
        cos, sin = angles.cos(), angles.sin()
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.head(self.norm(x))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--ddp", action="store_true", help="DistributedDataParallel over Gloo (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rank, world = 0, 1
    if args.ddp:
        import torch.distributed as dist
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(1234)
    header = np.fromfile(args.data, dtype=np.int32, count=256)
    assert header[0] == 20240520 and header[1] == 1, "not an llm.c token shard"
    tokens = torch.from_numpy(np.fromfile(args.data, dtype=np.uint16, offset=1024).astype(np.int64))
    model = Llama(args.vocab, 256, 2, 8, 2, 688)
    if args.ddp:
        model = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=25)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    n = args.batch * args.seq * world
    position, times, losses = 0, [], []
    for step in range(args.warmup + args.steps):
        window = tokens[position:position + n + 1]
        position = position + n if position + 2 * n + 1 <= len(tokens) else 0
        x, y = window[:-1].view(world * args.batch, args.seq), window[1:].view(world * args.batch, args.seq)
        x, y = x[rank * args.batch:(rank + 1) * args.batch], y[rank * args.batch:(rank + 1) * args.batch]
        start = time.perf_counter()
        loss = F.cross_entropy(model(x).view(-1, args.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        elapsed = time.perf_counter() - start
        if step >= args.warmup:
            times.append(elapsed)
            losses.append(loss.item())
    median = sorted(times)[len(times) // 2]
    if rank != 0:
        return
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads): {args.vocab}-vocab Llama, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, batch {args.batch} x seq {args.seq}"
          f"{f' per rank x {world} DDP ranks over gloo' if args.ddp else ''}: "
          f"median step {median * 1000:.1f} ms, {n / median:.0f} tokens/s (first loss {losses[0]:.3f})")


if __name__ == "__main__":
    main()
