#!/usr/bin/env python3
"""Projects the step time and scaling efficiency of data-parallel training to many nodes.

usage:
  scripts/project_scaling.py PROFILE [--nodes N] [--gpus-per-node G] [--bw GB/s] [--latency-us US]
                             [--intra-bw GB/s] [--intra-latency-us US] [--bf16-grads]
                             [--hierarchical] [--bucket-mb MB] [--contention K] [--grad-accum K]
                             [--scale-to CONFIG] [--json FILE]
  scripts/project_scaling.py PROFILE... --table [--nodes 2,4,..] [--bw 25,50,100] [...]
  scripts/project_scaling.py --check POINTS [--tolerance 0.05]
  scripts/project_scaling.py --fit LINKS --link NAME --dtype fp32|bf16

PROFILE is the JSON line of `bench_train --profile-layers 1` (a file, or - for stdin): the
forward time until the first gradient slice is final (head_ms), every slice's backward time in the
order the model hands slices to the reducer, the forward+backward time without synchronisation
(fwd_bwd_ms), the step time without communication and the bucket size. The model, per GPU:
  - compute: the profiled slice times, scaled so that they add up to fwd_bwd_ms (the profile
    synchronises after each slice, the real step does not); a slice is final at its time;
  - buckets: formed from the slices as NcclReducer::ready forms them (adjacent slices merge, a
    bucket is launched once it holds bucket_mb, the rest when backward ends); with bf16 gradients
    a bucket goes as pieces of bucket_mb floats, each its own all-reduce of 2-byte values;
  - one all-reduce of b bytes over n GPUs (ring): 2(n-1)/n * b / bw + 2(n-1) * latency, where bw
    is the bus bandwidth of the slowest link: bw per node between nodes (every byte of the ring
    leaves each node once), the intra-node bandwidth within one node. Hierarchical (what
    dist.hierarchical does, NcclReducer::split_by_node): reduce-scatter in the node, all-reduce of
    each GPU's 1/G across nodes (G of them side by side, sharing the node's bw), all-gather in the
    node, one after another; a bucket's remainder beyond a multiple of G goes in the same NCCL
    group, adding no latency:
    2(G-1)/G * b / intra_bw + 2(G-1) * intra_latency + 2(N-1)/N * b / bw + 2(N-1) * latency;
  - the buckets run one after another on one communication stream, each when launched and when
    the previous is done; with --contention K compute runs 1/(1+K) as fast while a collective
    is in flight (the collective's kernels take SMs and memory bandwidth from it);
  - step = max(end of compute, end of communication) + tail, tail = the measured step without
    communication - fwd_bwd_ms (clip, optimizer, data, synchronisation); with --grad-accum K the
    K - 1 micro-batches before the last add their fwd_bwd_ms before it and communicate nothing;
  - efficiency = step without communication / predicted step (the same work per GPU: weak
    scaling, the per-GPU batch of the profile).
--check POINTS takes a JSON list of measured points, each {"name", "profile" (a path, relative to
the POINTS file), "measured_ms" (ms/step with communication), and options as keys: nodes,
gpus_per_node, bw, latency_us, intra_bw, intra_latency_us, bf16_grads, hierarchical, bucket_mb,
contention, grad_accum}; it prints predicted against measured and exits 1 when one is off by
more than the tolerance (relative, on the step time); --json FILE writes the rows. Contention
"fit" takes K from the point's own profile, when it was taken under mpirun: the K under which
its compute ends when its pass with the reducer running beside it did (fwd_bwd_comm_ms) - a
measurement of its own, not the step time being checked.
--fit fits bw and latency of a 2-GPU link to the bench_allreduce lines tagged {"link": NAME}
(2-GPU ring: time = b / bw + 2 * latency), weighting relative errors.
--scale-to CONFIG rescales a profile to another model size by FLOPs (say so wherever such
numbers are shown): layer slices by the layer's parameter count, the forward's layer part (half
the layers' backward) likewise and by the layer count, the rest of the head by d_model, the tail
by the parameter count.
Standard library only.
"""
import argparse
import json
import os
import sys

GB = 1e9


def fail(msg):
    sys.exit(f"project_scaling.py: {msg}")


# ---- inputs ----


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        fail(f"{path}: {e.strerror}")


def json_lines(path, text):
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON lines: {e}")


def load_profile(path):
    text = sys.stdin.read() if path == "-" else read_text(path)
    rows = json_lines(path, text)
    rows = [r for r in rows if "slices" in r]
    if len(rows) != 1:
        fail(f"{path}: expected one JSON line with \"slices\" (bench_train --profile-layers 1), "
             f"found {len(rows)}")
    p = rows[0]
    for key in ("head_ms", "fwd_bwd_ms", "ms_per_step_no_comm", "bucket_mb", "params"):
        if key not in p:
            fail(f"{path}: key {key} missing; rerun bench_train with --profile-layers 1")
    if not p["slices"]:
        fail(f"{path}: \"slices\" is empty")
    return p


def read_model_config(path):
    """The scalar keys of the model: block of a configs/*.yaml file."""
    model, inside = {}, False
    for line in read_text(path).splitlines():
        code = line.split("#", 1)[0].rstrip()
        if not code:
            continue
        if not code.startswith(" "):
            inside = code == "model:"
            continue
        if inside and ":" in code:
            key, value = (s.strip() for s in code.split(":", 1))
            model[key] = value
    need = ("d_model", "n_layer", "vocab_size")
    if any(k not in model for k in need):
        fail(f"{path}: model: needs {', '.join(need)}")
    try:
        dm = int(model["d_model"])
        pad = int(model.get("pad_vocab_multiple", 8))
        rank = model.get("dt_rank", "auto")
        return {
            "name": os.path.splitext(os.path.basename(path))[0],
            "d_model": dm,
            "n_layer": int(model["n_layer"]),
            "padded_vocab": -(-int(model["vocab_size"]) // pad) * pad,
            "d_state": int(model.get("d_state", 16)),
            "d_conv": int(model.get("d_conv", 4)),
            "d_inner": int(model.get("expand", 2)) * dm,
            "rank": (dm + 15) // 16 if rank == "auto" else int(rank),
        }
    except ValueError as e:
        fail(f"{path}: model: {e}")


def layer_params(m):
    """Parameters of one layer (src/model/params.cpp's tensors)."""
    di, dm, n, r = m["d_inner"], m["d_model"], m["d_state"], m["rank"]
    return (di * n + di + 2 * di * dm + di * m["d_conv"] + di + (r + 2 * n) * di + di * r + di +
            dm * di + dm)


def total_params(m):
    return m["padded_vocab"] * m["d_model"] + m["n_layer"] * layer_params(m) + m["d_model"]


def scale_profile(p, source, target):
    """A profile of model `target` from one of `source`, scaled by FLOPs (see the usage)."""
    layers = p["slices"][1:-1]
    if len(layers) != source["n_layer"]:
        fail(f"profile has {len(layers)} layer slices, its config {source['n_layer']} layers")
    layer_ratio = layer_params(target) / layer_params(source)
    head_ratio = target["d_model"] / source["d_model"]
    param_ratio = total_params(target) / total_params(source)
    sync = sync_factor(p)
    layer_ms = sum(s["ms"] for s in layers) / len(layers) * layer_ratio
    # Forward of the layers is about half their backward (one GEMM pass against two).
    fwd_layers = sum(s["ms"] for s in layers) / 2
    head = ((fwd_layers * layer_ratio * target["n_layer"] / source["n_layer"]) +
            (p["head_ms"] - fwd_layers) * head_ratio)
    emb = target["padded_vocab"] * target["d_model"]
    lsize = layer_params(target)
    slices = [{"begin": emb + target["n_layer"] * lsize,
               "end": emb + target["n_layer"] * lsize + target["d_model"], "ms": 0.0}]
    for i in reversed(range(target["n_layer"])):
        slices.append({"begin": emb + i * lsize, "end": emb + (i + 1) * lsize, "ms": layer_ms})
    slices.append({"begin": 0, "end": emb, "ms": p["slices"][-1]["ms"] * head_ratio})
    out = dict(p)
    out["head_ms"] = head
    out["slices"] = slices
    out["fwd_bwd_ms"] = sync * (head + sum(s["ms"] for s in slices))
    tail = p["ms_per_step_no_comm"] - p["fwd_bwd_ms"]
    out["ms_per_step_no_comm"] = out["fwd_bwd_ms"] + tail * param_ratio
    out["params"] = total_params(target)
    out["scaled_by_flops_from"] = p.get("config", "?")
    out["config"] = target["name"] + " (scaled from " + p.get("config", "?") + " by FLOPs)"
    return out


# ---- the model ----


def sync_factor(p):
    """Shrinks the profiled times (synchronised after every slice) to the unsynchronised pass."""
    profiled = p["head_ms"] + sum(s["ms"] for s in p["slices"])
    return p["fwd_bwd_ms"] / profiled if profiled > 0 else 1.0


def buckets(slices, bucket_floats):
    """[(index of the slice whose readiness launches it, or None at the end, floats)], as
    NcclReducer::ready forms them."""
    out, begin, end = [], -1, -1
    for i, s in enumerate(slices):
        if begin >= 0 and s["end"] != begin:
            out.append((i, end - begin))
            begin = -1
        if begin < 0:
            end = s["end"]
        begin = s["begin"]
        if end - begin >= bucket_floats:
            out.append((i, end - begin))
            begin = -1
    if begin >= 0:
        out.append((None, end - begin))
    return out


def allreduce_ms(nbytes, o):
    """One ring all-reduce of nbytes under options o (flat or hierarchical)."""
    nodes, g = o["nodes"], o["gpus_per_node"]

    def ring(n, bw, latency_us):
        if n <= 1:
            return 0.0
        return 1e3 * (2 * (n - 1) / n * nbytes / (bw * GB) + 2 * (n - 1) * latency_us * 1e-6)

    if nodes == 1:
        return ring(g, o["intra_bw"], o["intra_latency_us"])
    if o["hierarchical"] and g > 1:
        # Reduce-scatter and all-gather in the node are one all-reduce's two halves.
        return (ring(g, o["intra_bw"], o["intra_latency_us"]) +
                ring(nodes, o["bw"], o["latency_us"]))
    return ring(nodes * g, o["bw"], o["latency_us"])


def messages(floats, o, bucket_floats):
    """The all-reduces one bucket becomes, in ms."""
    if not o["bf16_grads"]:
        return [allreduce_ms(4 * floats, o)]
    pieces = []
    while floats > 0:
        n = min(floats, bucket_floats)
        pieces.append(allreduce_ms(2 * n, o))
        floats -= n
    return pieces


def simulate(p, o):
    """Predicted step of profile p under options o: a dict of times in ms."""
    bucket_mb = o["bucket_mb"] if o["bucket_mb"] is not None else p["bucket_mb"]
    bucket_floats = max(1, int(bucket_mb * (1 << 20)) // 4)
    slices = p["slices"]
    sync = sync_factor(p)
    work = [sync * s["ms"] for s in slices]
    # The first slice is final after the head; earlier micro-batches do not communicate.
    extra = (o["grad_accum"] - 1) * p["fwd_bwd_ms"]
    work[0] += sync * p["head_ms"] + extra
    launched = {}
    for index, floats in buckets(slices, bucket_floats):
        launched.setdefault(index, []).extend(messages(floats, o, bucket_floats))
    slow = 1.0 + o["contention"]

    # Events: compute finishes a slice, or the communication stream finishes a message.
    t, queue, comm_left, comm_busy_ms, exposed_start = 0.0, [], 0.0, 0.0, None
    compute_end = None
    i, left = 0, work[0]
    while i < len(work) or queue or comm_left > 0:
        if comm_left <= 0 and queue:
            comm_left = queue.pop(0)
        busy = comm_left > 0
        if i < len(work):
            rate = 1.0 / slow if busy else 1.0
            dt = left / rate
            if busy and comm_left < dt:
                dt = comm_left
            t += dt
            left -= dt * rate
            if busy:
                comm_left -= dt
                comm_busy_ms += dt
            if left <= 1e-12:
                queue.extend(launched.get(i, []))
                i += 1
                if i < len(work):
                    left = work[i]
                else:
                    compute_end = t
                    queue.extend(launched.get(None, []))
        else:
            t += comm_left
            comm_busy_ms += comm_left
            comm_left = 0.0
    if compute_end is None:
        compute_end = t
    tail = max(0.0, p["ms_per_step_no_comm"] - p["fwd_bwd_ms"])
    step = max(compute_end, t) + tail
    no_comm = p["ms_per_step_no_comm"] + extra
    n_msgs = sum(len(v) for v in launched.values())
    return {
        "step_ms": step,
        "no_comm_ms": no_comm,
        "efficiency": no_comm / step,
        "compute_end_ms": compute_end,
        "comm_end_ms": t,
        "comm_ms": comm_busy_ms,
        "exposed_ms": step - no_comm,
        "messages": n_msgs,
        "buckets": len(buckets(slices, bucket_floats)),
    }


DEFAULTS = {
    "nodes": 2,
    "gpus_per_node": 8,
    "bw": 50.0,
    "latency_us": 10.0,
    "intra_bw": 330.0,
    "intra_latency_us": 2.0,
    "bf16_grads": False,
    "hierarchical": False,
    "bucket_mb": None,
    "contention": 0.0,
    "grad_accum": 1,
}


def options(**given):
    o = dict(DEFAULTS)
    for key, value in given.items():
        if key not in o:
            fail(f"unknown option {key}; known: {', '.join(sorted(o))}")
        if value is not None:
            o[key] = value
    if o["nodes"] < 1 or o["gpus_per_node"] < 1 or o["grad_accum"] < 1:
        fail(f"nodes {o['nodes']}, gpus_per_node {o['gpus_per_node']} and grad_accum "
             f"{o['grad_accum']} must be >= 1")
    for key in ("bw", "intra_bw"):
        if o[key] <= 0:
            fail(f"{key} = {o[key]} GB/s: must be > 0")
    return o


# ---- the commands ----


def fit_link(path, link, dtype):
    """bw (GB/s) and latency (us) of a 2-GPU link from bench_allreduce lines."""
    pts = []
    for r in json_lines(path, read_text(path)):
        if r.get("bench") == "allreduce" and r.get("link") == link and r.get("dtype") == dtype:
            wire = r["mib"] * (1 << 20) * (2 if dtype == "bf16" else 4) / 4
            pts.append((wire, r["ms"] * 1e-3))
    if len(pts) < 2:
        fail(f"{path}: fewer than 2 all-reduce lines with link {link} and dtype {dtype}")
    # t = b * x + c, least squares on t relative: weights 1/t.
    sw = sb = sc = sbb = sbc = 0.0
    for b, t in pts:
        w = 1.0 / (t * t)
        sw += w
        sb += w * b
        sc += w * t
        sbb += w * b * b
        sbc += w * b * t
    det = sw * sbb - sb * sb
    x = (sw * sbc - sb * sc) / det
    c = (sbb * sc - sb * sbc) / det
    return {"link": link, "dtype": dtype, "bw": 1.0 / x / GB, "latency_us": max(0.0, c / 2 * 1e6)}


def fit_contention(p, o):
    """The contention K under which the compute of profile p (a run with peers) ends when its
    pass with the reducer running beside it did (fwd_bwd_comm_ms)."""
    if "fwd_bwd_comm_ms" not in p:
        fail("contention \"fit\" needs a profile taken with peers (mpirun, fwd_bwd_comm_ms)")
    o = dict(o, grad_accum=1)
    target = p["fwd_bwd_comm_ms"]
    if simulate(p, dict(o, contention=0.0))["compute_end_ms"] >= target * (1 - 1e-9):
        return 0.0
    lo, hi = 0.0, 100.0
    if simulate(p, dict(o, contention=hi))["compute_end_ms"] < target:
        return hi  # slower than compute stalled while collectives run: report the bound
    for _ in range(60):
        mid = (lo + hi) / 2
        if simulate(p, dict(o, contention=mid))["compute_end_ms"] < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def check(path, tolerance, json_out=None):
    try:
        points = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON: {e}")
    if not isinstance(points, list) or not points:
        fail(f"{path}: expected a JSON list of measured points")
    base = os.path.dirname(os.path.abspath(path))
    worst, rows = 0.0, []
    for pt in points:
        for key in ("name", "profile", "measured_ms"):
            if key not in pt:
                fail(f"{path}: a point lacks {key}: {pt}")
        prof = load_profile(os.path.join(base, pt["profile"]))
        given = {k: v for k, v in pt.items() if k not in ("name", "profile", "measured_ms")}
        if given.get("contention") == "fit":
            given["contention"] = fit_contention(prof, options(**dict(given, contention=0.0)))
        o = options(**given)
        r = simulate(prof, o)
        err = r["step_ms"] / pt["measured_ms"] - 1.0
        worst = max(worst, abs(err))
        rows.append({"name": pt["name"], "measured_ms": pt["measured_ms"],
                     "measured_efficiency": prof["ms_per_step_no_comm"] / pt["measured_ms"],
                     "error": err, **o, **r})
    print("| point | measured ms | predicted ms | measured eff | predicted eff | contention | "
          "error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        mark = "" if abs(r["error"]) <= tolerance else " **off**"
        print(f"| {r['name']} | {r['measured_ms']:.1f} | {r['step_ms']:.1f} | "
              f"{100 * r['measured_efficiency']:.1f}% | {100 * r['efficiency']:.1f}% | "
              f"{r['contention']:.2f} | {100 * r['error']:+.1f}%{mark} |")
    print(f"worst error {100 * worst:.1f}% (tolerance {100 * tolerance:.0f}%)")
    if json_out:
        write_json(json_out, rows)
    return 0 if worst <= tolerance else 1


def write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)


def table(profiles, nodes_list, bw_list, o):
    rows = []
    for path, p in profiles:
        for bw in bw_list:
            effs = []
            for n in nodes_list:
                r = simulate(p, dict(o, nodes=n, bw=bw))
                effs.append(r)
            rows.append((p.get("config", path), bw, effs))
    head = "| model | GB/s per node | " + " | ".join(
        f"{n} x {o['gpus_per_node']}" for n in nodes_list) + " |"
    print(head)
    print("|" + " --- |" * (2 + len(nodes_list)))
    for name, bw, effs in rows:
        cells = " | ".join(f"{100 * r['efficiency']:.1f}%" for r in effs)
        print(f"| {name} | {bw:g} | {cells} |")
    return [{"config": name, "bw": bw, "nodes": n, **r}
            for name, bw, effs in rows for n, r in zip(nodes_list, effs)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profiles", nargs="*", help="bench_train --profile-layers 1 JSON (- = stdin)")
    ap.add_argument("--nodes", default=None, help="node count (a list with --table)")
    ap.add_argument("--gpus-per-node", type=int, default=None)
    ap.add_argument("--bw", default=None, help="GB/s per node between nodes (a list with --table)")
    ap.add_argument("--latency-us", type=float, default=None, help="per ring step between nodes")
    ap.add_argument("--intra-bw", type=float, default=None, help="GB/s bus bandwidth in a node")
    ap.add_argument("--intra-latency-us", type=float, default=None)
    ap.add_argument("--bf16-grads", action="store_true", default=None)
    ap.add_argument("--hierarchical", action="store_true", default=None)
    ap.add_argument("--bucket-mb", type=float, default=None, help="default: the profile's")
    ap.add_argument("--contention", type=float, default=None)
    ap.add_argument("--grad-accum", type=int, default=None, help="micro-batches per step")
    ap.add_argument("--scale-to", metavar="CONFIG", help="rescale the profiles by FLOPs")
    ap.add_argument("--config-dir", default=os.path.join(os.path.dirname(__file__), "..",
                                                         "configs"))
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--check", metavar="POINTS")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--fit", metavar="LINKS")
    ap.add_argument("--link")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    a = ap.parse_args()

    if a.check:
        return check(a.check, a.tolerance, a.json)
    if a.fit:
        if not a.link:
            fail("--fit needs --link NAME (the \"link\" tag of the lines)")
        print(json.dumps(fit_link(a.fit, a.link, a.dtype)))
        return 0
    if not a.profiles:
        fail("give a profile (bench_train --profile-layers 1 JSON), --check or --fit")
    profiles = [(path, load_profile(path)) for path in a.profiles]
    if a.scale_to:
        target = read_model_config(a.scale_to)
        scaled = []
        for path, p in profiles:
            source = os.path.join(a.config_dir, p.get("config", "") + ".yaml")
            if not os.path.exists(source):
                fail(f"{path}: no config {source} to scale from (key \"config\")")
            scaled.append((path, scale_profile(p, read_model_config(source), target)))
        profiles = scaled
    o = options(gpus_per_node=a.gpus_per_node, latency_us=a.latency_us, intra_bw=a.intra_bw,
                intra_latency_us=a.intra_latency_us, bf16_grads=a.bf16_grads,
                hierarchical=a.hierarchical, bucket_mb=a.bucket_mb, contention=a.contention,
                grad_accum=a.grad_accum)
    if a.table:
        nodes = [int(x) for x in (a.nodes or "2,4,8,16,32,64").split(",")]
        bws = [float(x) for x in (a.bw or "25,50,100").split(",")]
        result = table(profiles, nodes, bws, o)
    else:
        o = options(**dict(o, nodes=int(a.nodes or DEFAULTS["nodes"]),
                           bw=float(a.bw or DEFAULTS["bw"])))
        result = []
        for path, p in profiles:
            r = simulate(p, o)
            result.append({"config": p.get("config", path), **o, **r})
            link = (f"{o['intra_bw']:g} GB/s in the node" if o["nodes"] == 1 else
                    f"{o['bw']:g} GB/s per node")
            print(f"{p.get('config', path)}: {o['nodes']} x {o['gpus_per_node']} GPUs, {link}: "
                  f"step {r['step_ms']:.1f} ms (without communication {r['no_comm_ms']:.1f}), "
                  f"efficiency {100 * r['efficiency']:.1f}%, "
                  f"{r['buckets']} buckets, {r['messages']} all-reduces, {r['comm_ms']:.1f} ms "
                  f"communicating")
    if a.json:
        write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
