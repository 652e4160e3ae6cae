#!/usr/bin/env python3
"""The PyTorch eager peer of bench/cuda/gpu_bench.cc, run on the same GPU in the same session.

Reads the shapes, batch sizes and context length that gpu_bench wrote (its JSON), builds the same
Llama shapes with random weights through Hugging Face transformers (LlamaForCausalLM, fp16, SDPA
attention, no torch.compile, no CUDA graphs: "eager"), and measures:
  - the copy bandwidth and the fp16/bf16 matrix peak through cuBLAS (8192^3 on random data): the
    ceilings the README's fractions are taken against;
  - decode steps at each batch size with `context` tokens cached per sequence (tok/s);
  - one prefill chunk of `prefillTokens` tokens (TFLOP/s).
Usage: torch_peer.py gpu-bench.json torch-peer.json
"""
import json
import statistics
import sys

import torch


def timed(fn, reps, warmup=2):
    """Median milliseconds of fn() over reps runs, timed with CUDA events after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def ceilings():
    n = 2 << 30
    a = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    copy_ms = timed(lambda: b.copy_(a), 20)
    out = {"copyBytesPerS": 2 * n / copy_ms * 1e3}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        x = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        y = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        ms = timed(lambda: x @ y, 10, warmup=3)
        out[f"matmulTflops_{name}"] = 2 * 8192**3 / ms / 1e9
    del a, b
    torch.cuda.empty_cache()
    return out


def build(shape):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=int(shape["hidden"]),
        intermediate_size=int(shape["intermediate"]),
        num_hidden_layers=int(shape["layers"]),
        num_attention_heads=int(shape["heads"]),
        num_key_value_heads=int(shape["kvHeads"]),
        head_dim=int(shape["headDim"]),
        vocab_size=int(shape["vocab"]),
        rope_theta=float(shape["ropeTheta"]),
        rms_norm_eps=float(shape["rmsNormEps"]),
        tie_word_embeddings=bool(shape["tied"]),
        max_position_embeddings=8192,
    )
    cfg._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.float16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    return model


@torch.no_grad()
def measure(shape, batches, context, prefill_tokens):
    model = build(shape)
    vocab = int(shape["vocab"])
    rows = []
    for b in batches:
        ids = torch.randint(0, vocab, (b, context), device="cuda")
        out = model(ids, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)

        def step():
            nonlocal past, nxt
            o = model(nxt, past_key_values=past, use_cache=True)
            past = o.past_key_values
            nxt = o.logits[:, -1].argmax(-1, keepdim=True)

        ms = timed(step, 10)
        rows.append({"shape": shape["name"], "precision": "fp16", "batch": b, "context": context,
                     "stepMs": ms, "tokPerS": b / ms * 1e3})
        print(f"torch eager {shape['name']:13s} fp16 batch {b:3d}: {ms:8.3f} ms/step {b / ms * 1e3:9.0f} tok/s",
              flush=True)
        del past, out, ids
        torch.cuda.empty_cache()
    ids = torch.randint(0, vocab, (1, prefill_tokens), device="cuda")
    ms = timed(lambda: model(ids, use_cache=True, logits_to_keep=1), 3)
    params = sum(p.numel() for p in model.model.layers.parameters())
    h, layers = int(shape["heads"]) * int(shape["headDim"]), int(shape["layers"])
    flops = 2 * params * prefill_tokens + 2 * layers * h * prefill_tokens * (prefill_tokens + 1)
    flops += 2 * int(shape["hidden"]) * vocab  # the last position's logits
    prefill = {"shape": shape["name"], "precision": "fp16", "tokens": prefill_tokens, "ms": ms,
               "tflops": flops / ms / 1e9}
    print(f"torch eager {shape['name']:13s} fp16 prefill {prefill_tokens}: {ms:8.2f} ms {flops / ms / 1e9:6.1f} TFLOP/s",
          flush=True)
    del model
    torch.cuda.empty_cache()
    return rows, prefill


def main():
    bench = json.load(open(sys.argv[1]))
    result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    result.update(ceilings())
    print(f"ceilings: copy {result['copyBytesPerS'] / 1e9:.0f} GB/s, matmul fp16 "
          f"{result['matmulTflops_fp16']:.0f} / bf16 {result['matmulTflops_bf16']:.0f} TFLOP/s", flush=True)
    result["decode"], result["prefill"] = [], []
    for shape in bench["shapes"]:
        try:
            rows, prefill = measure(shape, bench["batches"], int(bench["context"]), int(bench["prefillTokens"]))
        except Exception as e:  # record and go on: one shape's failure must not lose the others
            result.setdefault("errors", []).append(f"{shape['name']}: {type(e).__name__}: {e}")
            print(f"torch eager {shape['name']}: {type(e).__name__}: {e}", flush=True)
            continue
        result["decode"] += rows
        result["prefill"].append(prefill)
    json.dump(result, open(sys.argv[2], "w"), indent=1)
    print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
