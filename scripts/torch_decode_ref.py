#!/usr/bin/env python3
"""A Llama-3.1-8B-shaped decode step in plain PyTorch: the reference tpp-run --backend cuda is
held against (scripts/gpu-check.sh).

Random bf16 weights of the true shapes (32 layers, hidden 4096, 32 query and 8 KV heads of 128,
intermediate 14336, vocabulary 128256, lm_head untied), a contiguous (not paged) KV cache of
--context tokens a sequence, one new token a sequence: embedding, per layer RMSNorm (fused with
the residual add), QKV, rotary (NeoX), attention over the cache (SDPA with GQA where this torch
has it, else grouped matmuls), O, RMSNorm, gate-up, SiLU-and-mul, down; the final norm, lm_head
and a greedy argmax. The step is captured in a CUDA graph (torch.cuda.CUDAGraph) and replayed:
the median of --replays replays, timed with CUDA events, at each batch size. Also the
weight-bytes bound: the bytes a decode step reads (every weight but the embedding table, of
which it reads one row a token) over the HBM bandwidth (--hbm-GBps, else the datasheet figure
of a known GPU).

Prints one JSON object (and writes it to -o): {"decode_step_ms": {"1": ms, "64": ms}, ...}.
Exit 2 with one line on stderr when there is no torch or no CUDA device.
"""
import argparse
import json
import sys

DATASHEET_HBM_GBPS = {"H200": 4800, "H100 PCIe": 2000, "H100": 3350, "H800": 3350, "H20": 4000,
                      "A100-SXM4-40GB": 1555, "A100": 2039, "L40S": 864, "L4": 300, "A10": 600,
                      "4090": 1008}

SHAPE = dict(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, inter=14336,
             vocab=128256, rope_theta=500000.0, eps=1e-5)


def fail(msg):
    print(f"torch_decode_ref: error: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--context", type=int, default=512, help="cached tokens a sequence")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--replays", type=int, default=50)
    ap.add_argument("--layers", type=int, default=SHAPE["layers"], help="fewer for a quick try")
    ap.add_argument("--hbm-GBps", type=float, default=0, help="default: the datasheet's")
    ap.add_argument("-o", "--output", help="also write the JSON here")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        fail(f"no PyTorch: {e}")
    if not torch.cuda.is_available():
        fail("no CUDA device visible to PyTorch")

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    s = dict(SHAPE, layers=a.layers)
    h, nh, nkv, d, inter, vocab = (s["hidden"], s["heads"], s["kv_heads"], s["head_dim"],
                                   s["inter"], s["vocab"])
    g = nh // nkv
    bf16 = torch.bfloat16
    torch.manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, device=dev, dtype=bf16) * 0.02).contiguous()

    embed = rand(vocab, h)
    layers = []
    for _ in range(s["layers"]):
        layers.append(dict(
            ln1=torch.ones(h, device=dev, dtype=bf16), wqkv=rand((nh + 2 * nkv) * d, h),
            wo=rand(h, nh * d), ln2=torch.ones(h, device=dev, dtype=bf16),
            wgu=rand(2 * inter, h), wdown=rand(h, inter)))
    norm = torch.ones(h, device=dev, dtype=bf16)
    lm_head = rand(vocab, h)
    weight_bytes = sum(t.numel() * t.element_size() for L in layers for t in L.values())
    weight_bytes += norm.numel() * 2 + lm_head.numel() * 2  # the embedding: one row a token

    pos = a.context  # the new token's position; the cache holds positions 0 .. context - 1
    inv = 1.0 / (s["rope_theta"] ** (torch.arange(0, d, 2, device=dev, dtype=torch.float32) / d))
    ang = pos * inv
    cos = torch.cat([ang.cos(), ang.cos()]).to(bf16)
    sin = torch.cat([ang.sin(), ang.sin()]).to(bf16)
    have_gqa = "enable_gqa" in F.scaled_dot_product_attention.__doc__

    def rms(x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + s["eps"])).to(bf16) * w

    def rope(x):  # [B, heads, d], NeoX halves
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    results, eager, notes = {}, {}, []
    for B in a.batches:
        # K and V: [B, kv heads, context + 1, d]; the new token goes to slot `context`.
        kc = [torch.randn(B, nkv, pos + 1, d, device=dev, dtype=bf16) * 0.1 for _ in layers]
        vc = [torch.randn(B, nkv, pos + 1, d, device=dev, dtype=bf16) * 0.1 for _ in layers]
        tokens = torch.randint(0, vocab, (B,), device=dev)

        def step():
            x = embed[tokens]
            res = None
            for i, L in enumerate(layers):
                res = x if res is None else x + res
                y = rms(res, L["ln1"])
                qkv = y @ L["wqkv"].t()
                q = rope(qkv[:, : nh * d].view(B, nh, d))
                k = rope(qkv[:, nh * d: (nh + nkv) * d].view(B, nkv, d))
                v = qkv[:, (nh + nkv) * d:].view(B, nkv, d)
                kc[i][:, :, pos] = k
                vc[i][:, :, pos] = v
                if have_gqa:
                    o = F.scaled_dot_product_attention(q.unsqueeze(2), kc[i], vc[i], enable_gqa=True)
                else:  # grouped: [B, kv, g, 1, d] against [B, kv, 1, T, d]
                    qg = q.view(B, nkv, g, 1, d)
                    sc = (qg @ kc[i].unsqueeze(2).transpose(-1, -2)).float() * d ** -0.5
                    o = (sc.softmax(-1).to(bf16) @ vc[i].unsqueeze(2))
                x = o.reshape(B, nh * d) @ L["wo"].t()
                res = x + res
                y = rms(res, L["ln2"])
                gu = y @ L["wgu"].t()
                x = (F.silu(gu[:, :inter]) * gu[:, inter:]) @ L["wdown"].t()
            y = rms(x + res, norm)
            return (y @ lm_head.t()).argmax(-1)

        def timed(fn, n):
            ts = []
            for _ in range(n):
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                ts.append(e0.elapsed_time(e1))
            ts.sort()
            return ts[len(ts) // 2]

        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            eager[str(B)] = timed(step, 10)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = step()
            for _ in range(3):
                graph.replay()
            results[str(B)] = timed(graph.replay, a.replays)
            del graph, out
        del kc, vc
        torch.cuda.empty_cache()

    hbm = a.hbm_GBps
    if not hbm:
        for key, v in DATASHEET_HBM_GBPS.items():  # most specific first
            if key in name:
                hbm = v
                break
    bound_ms = weight_bytes / (hbm * 1e9) * 1e3 if hbm else None
    if not have_gqa:
        notes.append("this torch's SDPA has no enable_gqa: grouped matmuls instead")
    out = {
        "device": name, "torch": torch.__version__, "shape": s, "context": a.context,
        "replays": a.replays, "attention": "sdpa(enable_gqa)" if have_gqa else "grouped matmuls",
        "decode_step_ms": results, "eager_ms": eager, "weight_bytes": weight_bytes,
        "hbm_GBps": hbm or None, "weight_bound_ms": bound_ms,
        "of_bound": {b: bound_ms / ms for b, ms in results.items()} if bound_ms else None,
        "notes": notes,
    }
    text = json.dumps(out, indent=1)
    print(text)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
