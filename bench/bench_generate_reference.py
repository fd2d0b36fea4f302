"""Decode speed of the reference (mamba_ssm's MambaLMHeadModel, bf16, CUDA-graph decoding) for
the shapes of bench_generate: random weights, random prompts, greedy decoding. Prints one JSON
line like bench_generate's.
    python3 bench/bench_generate_reference.py --model 130m --batch 1 [--prompt 128] [--tokens 256]
The reference's decode loop (the function its generate() calls, with cg=True) is timed twice:
to prompt + 1 tokens (prefill and the first token) and to prompt + tokens; the decode rate is
the difference over tokens - 1 steps. Needs torch and mamba_ssm importable (the reference built
from source on the GPU machine, on PYTHONPATH); exits with status 3 where they are not."""
import argparse
import json
import pathlib
import sys
import time

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
NOT_IMPORTABLE = 3  # exit status when torch or the reference cannot be imported


def model_shape(name):
    """The config's name, and d_model, n_layer, vocab_size and pad_vocab_multiple from the
    model: block of its file in configs/."""
    path = CONFIG_DIR / f"mamba-{name}.yaml"
    if not path.exists():
        path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        sys.exit(f"bench_generate_reference: no config for --model {name} in {CONFIG_DIR}")
    shape, in_model = {"config": path.stem}, False
    for line in path.read_text().splitlines():
        text = line.split("#")[0].rstrip()
        if not text:
            continue
        if not text.startswith(" "):
            in_model = text == "model:"
            continue
        key, _, value = text.strip().partition(":")
        if in_model and key in ("d_model", "n_layer", "vocab_size", "pad_vocab_multiple"):
            shape[key] = int(value)
    return shape


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="130m")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    try:
        import torch
        import transformers.generation as hf_generation
        # The reference's decode loop imports output classes that newer transformers renamed.
        for old in ("GreedySearchDecoderOnlyOutput", "SampleDecoderOnlyOutput"):
            if not hasattr(hf_generation, old):
                setattr(hf_generation, old, hf_generation.GenerateDecoderOnlyOutput)
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
        from mamba_ssm.utils.generation import decode
    except ImportError as e:
        print(f"bench_generate_reference: the reference is not importable ({e}): build it on the "
              "GPU machine and put it on PYTHONPATH", file=sys.stderr)
        sys.exit(NOT_IMPORTABLE)

    shape = model_shape(a.model)
    cfg = MambaConfig(d_model=shape["d_model"], n_layer=shape["n_layer"],
                      vocab_size=shape["vocab_size"], ssm_cfg={}, rms_norm=True,
                      residual_in_fp32=True, fused_add_norm=True,
                      pad_vocab_size_multiple=shape.get("pad_vocab_multiple", 8))
    torch.manual_seed(1)
    model = MambaLMHeadModel(cfg, device="cuda", dtype=torch.bfloat16).eval()
    prompts = torch.randint(0, shape["vocab_size"], (a.batch, a.prompt), device="cuda")

    def timed(max_length):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        decode(prompts, model, max_length, top_k=1, cg=True)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    full = a.prompt + a.tokens
    timed(full)  # warm-up: records the decoding graph for this batch (and the longest length)
    timed(a.prompt + 1)
    first, whole = [], []
    for _ in range(a.repeats):
        first.append(timed(a.prompt + 1))
        whole.append(timed(full))
    first.sort()
    whole.sort()
    prefill = first[len(first) // 2]
    decode_s = whole[len(whole) // 2] - prefill
    steps = a.tokens - 1
    print(json.dumps({
        "bench": "generate_reference", "impl": "mamba_ssm", "config": shape["config"],
        "device": torch.cuda.get_device_name(), "act_bytes": 2,
        "params": sum(t.numel() for t in model.parameters()), "batch": a.batch,
        "prompt": a.prompt, "new_tokens": a.tokens, "prefill_ms": round(1000 * prefill, 2),
        "decode_tokens_per_s": round(a.batch * steps / decode_s, 1),
        "ms_per_token": round(1000 * decode_s / steps, 3)}))


if __name__ == "__main__":
    main()
