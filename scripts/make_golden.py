#!/usr/bin/env python3
"""Writes golden files (the format of tests/data/*.safetensors) at other sizes, from an
independent pure-PyTorch implementation of the math, in float64 on the CPU.

usage: scripts/make_golden.py OUT_DIR

Makes scan_odd.safetensors (batch 3, d_inner 5, seqlen 37, d_state 16) and
mamba_odd.safetensors (d_model 48, 3 layers, vocab 101 padded to 104, d_state 16, dt_rank 3,
batch 3, seqlen 29). Inputs and weights are drawn in float32 and stored as they are; everything
computed from them is computed in float64 and stored rounded to float32. Needs only torch.
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def scan_ref(u, delta, A, B, C, D, delta_bias, z):
    """Channel-first: u, delta, z (b, d, l); A (d, n); B, C (b, n, l). Returns out, last_state."""
    delta = F.softplus(delta + delta_bias[None, :, None])
    b, d, l = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) + D[None, :, None] * u
    return y * F.silu(z), h


def make_scan(out_dir, g):
    b, d, l, n = 3, 5, 37, 16
    f32 = lambda *shape, scale=1.0, shift=0.0: (torch.randn(*shape, generator=g) * scale + shift).float()
    inputs = {
        "u": f32(b, d, l), "delta": f32(b, d, l, scale=0.5, shift=-1.0), "z": f32(b, d, l),
        "A": -torch.exp(f32(d, n, scale=0.5)), "B": f32(b, n, l), "C": f32(b, n, l),
        "D": f32(d), "delta_bias": f32(d, scale=0.3, shift=-2.0), "dout": f32(b, d, l),
    }
    x = {k: v.double().requires_grad_(k != "dout") for k, v in inputs.items()}
    out, last = scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["delta_bias"], x["z"])
    (out * x["dout"]).sum().backward()
    tensors = dict(inputs)
    tensors["out"], tensors["last_state"] = out.detach().float(), last.detach().float()
    for k in ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]:
        tensors["d" + k] = x[k].grad.float()
    write_safetensors(f"{out_dir}/scan_odd.safetensors", tensors, {
        "kind": "selective_scan", "seed": "7", "source": "scripts/make_golden.py (float64 PyTorch)",
        "layout": "u,delta,z,out,dout: (batch, d_inner, seqlen); A: (d_inner, d_state); "
                  "B,C: (batch, d_state, seqlen); D, delta_bias: (d_inner); last_state: (batch, d_inner, d_state)"})


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def lm_forward(p, ids, cfg):
    dm, di, n, r, k = cfg["d_model"], 2 * cfg["d_model"], cfg["d_state"], cfg["dt_rank"], cfg["d_conv"]
    hidden, residual = p["backbone.embedding.weight"][ids], None
    for i in range(cfg["n_layer"]):
        q = lambda name: p[f"backbone.layers.{i}.{name}"]
        residual = hidden if residual is None else hidden + residual
        h = rms_norm(residual, q("norm.weight"), 1e-5)
        xz = h @ q("mixer.in_proj.weight").T
        x, z = xz[..., :di], xz[..., di:]
        L = x.shape[1]
        xc = F.conv1d(x.transpose(1, 2), q("mixer.conv1d.weight"), q("mixer.conv1d.bias"), padding=k - 1, groups=di)[..., :L]
        xc = F.silu(xc).transpose(1, 2)
        dbl = xc @ q("mixer.x_proj.weight").T
        dt, B, C = dbl[..., :r], dbl[..., r:r + n], dbl[..., r + n:]
        delta = dt @ q("mixer.dt_proj.weight").T
        A = -torch.exp(q("mixer.A_log"))
        y, _ = scan_ref(xc.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2),
                        q("mixer.D"), q("mixer.dt_proj.bias"), z.transpose(1, 2))
        hidden = y.transpose(1, 2) @ q("mixer.out_proj.weight").T
    residual = hidden + residual
    h = rms_norm(residual, p["backbone.norm_f.weight"], 1e-5)
    return h @ p["backbone.embedding.weight"].T


def make_model(out_dir, g):
    cfg = {"d_model": 48, "n_layer": 3, "vocab_size": 101, "padded_vocab": 104, "d_state": 16,
           "d_conv": 4, "expand": 2, "dt_rank": 3}
    dm, di, n, r, vp = cfg["d_model"], 96, cfg["d_state"], cfg["dt_rank"], cfg["padded_vocab"]
    uni = lambda shape, bound: ((torch.rand(*shape, generator=g) * 2 - 1) * bound).float()
    w = {"backbone.embedding.weight": (torch.randn(vp, dm, generator=g) * 0.02).float(),
         "backbone.norm_f.weight": (1 + 0.1 * torch.randn(dm, generator=g)).float()}
    for i in range(cfg["n_layer"]):
        pre = f"backbone.layers.{i}."
        dt = torch.exp(torch.rand(di, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        w.update({
            pre + "mixer.A_log": torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1),
            pre + "mixer.D": (1 + 0.1 * torch.randn(di, generator=g)).float(),
            pre + "mixer.in_proj.weight": uni((2 * di, dm), dm ** -0.5),
            pre + "mixer.conv1d.weight": uni((di, 1, 4), 0.5),
            pre + "mixer.conv1d.bias": uni((di,), 0.5),
            pre + "mixer.x_proj.weight": uni((r + 2 * n, di), di ** -0.5),
            pre + "mixer.dt_proj.weight": uni((di, r), r ** -0.5),
            pre + "mixer.dt_proj.bias": (dt + torch.log(-torch.expm1(-dt))).float(),
            pre + "mixer.out_proj.weight": uni((dm, di), di ** -0.5 / math.sqrt(cfg["n_layer"])),
            pre + "norm.weight": (1 + 0.1 * torch.randn(dm, generator=g)).float(),
        })
    batch, seqlen = 3, 29
    ids = torch.randint(0, cfg["vocab_size"], (batch, seqlen), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (batch, seqlen), generator=g)
    p = {k: v.double().requires_grad_() for k, v in w.items()}

    def loss_fn():
        logits = lm_forward(p, ids, cfg)
        return logits, F.cross_entropy(logits.reshape(-1, vp), targets.reshape(-1))

    logits, loss = loss_fn()
    loss.backward()
    tensors = dict(w)
    tensors.update({"grad." + k: v.grad.float() for k, v in p.items()})
    tensors.update({"input_ids": ids, "targets": targets, "logits": logits.detach().float(),
                    "loss": loss.detach().float().reshape(1)})
    decay = [v for k, v in p.items() if k.endswith("proj.weight") or k.endswith("conv1d.weight")]
    other = [v for k, v in p.items() if not (k.endswith("proj.weight") or k.endswith("conv1d.weight"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    losses, norms = [loss.item()], []
    for _ in range(3):
        opt.zero_grad()
        _, loss = loss_fn()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0).item())
        opt.step()
        with torch.no_grad():
            losses.append(loss_fn()[1].item())
    tensors.update({"after." + k: v.detach().float() for k, v in p.items()})
    tensors["losses"] = torch.tensor(losses, dtype=torch.float32)
    tensors["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    meta = {k: v for k, v in cfg.items()}
    meta.update({"kind": "mamba_lm", "batch": batch, "seqlen": seqlen, "rms_norm_eps": "1e-05",
                 "tie_embeddings": "True", "residual_in_fp32": "True",
                 "source": "scripts/make_golden.py (float64 PyTorch, pure-PyTorch reference)",
                 "optimizer": "AdamW lr=1e-3 betas=(0.9,0.95) eps=1e-8; weight_decay 0.1 on in_proj/conv1d/x_proj/dt_proj/out_proj weights; clip 1.0"})
    write_safetensors(f"{out_dir}/mamba_odd.safetensors", tensors, meta)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    g = torch.Generator().manual_seed(7)
    make_scan(sys.argv[1], g)
    make_model(sys.argv[1], g)
    print("wrote", sys.argv[1] + "/scan_odd.safetensors", sys.argv[1] + "/mamba_odd.safetensors")
