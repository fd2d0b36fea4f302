#!/usr/bin/env python3
"""Checks scripts/project_scaling.py against values derived by hand from its model (the formulas
in its usage), on synthetic profiles small enough to follow on paper; and its parameter count
against the one bench_train measured for the real configs. Run from ctest."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import project_scaling as ps  # noqa: E402

GB = 1e9
MIB = 1 << 20


def profile(head_ms, slices, tail_ms=0.0, bucket_mb=25.0):
    """A profile whose slices [(floats, ms)] lie top-down in the buffer, as the model's do."""
    total = sum(f for f, _ in slices)
    out, end = [], total
    for floats, ms in slices:
        out.append({"begin": end - floats, "end": end, "ms": ms})
        end -= floats
    fwd_bwd = head_ms + sum(ms for _, ms in slices)
    return {"head_ms": head_ms, "slices": out, "fwd_bwd_ms": fwd_bwd,
            "ms_per_step_no_comm": fwd_bwd + tail_ms, "bucket_mb": bucket_mb, "params": total}


def ring_ms(n, nbytes, bw, lat_us):
    return 1e3 * (2 * (n - 1) / n * nbytes / (bw * GB) + 2 * (n - 1) * lat_us * 1e-6)


class Model(unittest.TestCase):
    def test_single_bucket_without_overlap(self):
        # One slice, final when backward ends: nothing to hide behind.
        floats = 50 * MIB // 4
        p = profile(100.0, [(floats, 0.0)], tail_ms=7.0)
        o = ps.options(nodes=2, gpus_per_node=1, bw=2.5, latency_us=100.0)
        r = ps.simulate(p, o)
        comm = 1e3 * (4 * floats / 2.5e9 + 2 * 100e-6)  # n = 2: b / bw + 2 latency
        self.assertAlmostEqual(r["step_ms"], 100.0 + comm + 7.0, places=6)
        self.assertAlmostEqual(r["efficiency"], 107.0 / (107.0 + comm), places=9)
        self.assertEqual(r["messages"], 1)

    def test_ring_terms_for_many_nodes(self):
        floats = 10 * MIB
        p = profile(0.0, [(floats, 0.0)])
        o = ps.options(nodes=8, gpus_per_node=8, bw=50.0, latency_us=10.0)
        expect = 2 * 63 / 64 * 4 * floats / 50e9 * 1e3 + 2 * 63 * 10e-3
        self.assertAlmostEqual(ps.simulate(p, o)["step_ms"], expect, places=6)

    def test_hierarchical_terms(self):
        floats = 10 * MIB
        p = profile(0.0, [(floats, 0.0)])
        o = ps.options(nodes=4, gpus_per_node=8, bw=50.0, latency_us=10.0, intra_bw=300.0,
                       intra_latency_us=3.0, hierarchical=True)
        b = 4 * floats
        expect = (2 * 7 / 8 * b / 300e9 + 14 * 3e-6 + 2 * 3 / 4 * b / 50e9 + 6 * 10e-6) * 1e3
        self.assertAlmostEqual(ps.simulate(p, o)["step_ms"], expect, places=6)

    def test_one_node_uses_the_intra_node_link(self):
        floats = 10 * MIB
        p = profile(0.0, [(floats, 0.0)])
        o = ps.options(nodes=1, gpus_per_node=2, bw=1.0, intra_bw=300.0, intra_latency_us=50.0)
        self.assertAlmostEqual(ps.simulate(p, o)["step_ms"], ring_ms(2, 4 * floats, 300.0, 50.0),
                               places=6)

    def test_comm_hidden_behind_the_rest_of_backward(self):
        # Slice A (launched at 10 ms) takes 20 ms to reduce, behind slice B's 50 ms of backward;
        # B's bucket goes at 60 ms and alone is exposed.
        a, b = 25 * MIB // 4, 25 * MIB // 4
        p = profile(10.0, [(a, 0.0), (b, 50.0)], tail_ms=5.0)
        o = ps.options(nodes=2, gpus_per_node=1, bw=4 * a / 20e-3 / GB, latency_us=0.0)
        r = ps.simulate(p, o)
        self.assertEqual(r["buckets"], 2)
        self.assertAlmostEqual(r["step_ms"], 10.0 + 50.0 + 20.0 + 5.0, places=6)

    def test_buckets_queue_on_one_stream(self):
        # Both buckets launch at the end of backward: their times add up.
        a = 25 * MIB // 4
        p = profile(10.0, [(a, 0.0), (a, 0.0)])
        o = ps.options(nodes=2, gpus_per_node=1, bw=4 * a / 20e-3 / GB, latency_us=0.0)
        self.assertAlmostEqual(ps.simulate(p, o)["step_ms"], 10.0 + 40.0, places=6)

    def test_bucket_formation_follows_the_reducer(self):
        # Bucket of 6 floats: 2 + 3 gather; the gap before [90, 95) launches those 5 when that
        # slice is final; 5 + 5 reach 6 and launch; the last float goes when backward ends.
        slices = [{"begin": 100, "end": 102}, {"begin": 97, "end": 100}, {"begin": 90, "end": 95},
                  {"begin": 85, "end": 90}, {"begin": 0, "end": 1}]
        self.assertEqual(ps.buckets(slices, 6), [(2, 5), (3, 10), (None, 1)])

    def test_bf16_pieces_half_the_bytes(self):
        bucket = 25 * MIB // 4
        floats = bucket * 5 // 2  # 2.5 buckets: pieces of 1, 1 and 0.5 buckets
        p = profile(0.0, [(floats, 0.0)])
        o = ps.options(nodes=2, gpus_per_node=1, bw=10.0, latency_us=20.0, bf16_grads=True)
        r = ps.simulate(p, o)
        expect = 2 * ring_ms(2, 2 * bucket, 10.0, 20.0) + ring_ms(2, bucket, 10.0, 20.0)
        self.assertEqual(r["messages"], 3)
        self.assertAlmostEqual(r["step_ms"], expect, places=6)

    def test_contention_slows_compute_while_communicating(self):
        # A 20 ms collective launched at 0; 100 ms of compute at half speed meanwhile:
        # 10 ms of it done by 20 ms, 90 ms left at full speed, compute ends at 110 ms.
        a = 25 * MIB // 4
        p = profile(0.0, [(a, 0.0), (1, 100.0)])
        o = ps.options(nodes=2, gpus_per_node=1, bw=4 * a / 20e-3 / GB, latency_us=0.0,
                       contention=1.0)
        r = ps.simulate(p, o)
        self.assertAlmostEqual(r["compute_end_ms"], 110.0, places=6)

    def test_contention_fitted_from_the_compute_with_communication(self):
        # The case above backwards: compute that ended at 110 ms instead of 100 means K = 1.
        a = 25 * MIB // 4
        p = profile(0.0, [(a, 0.0), (1, 100.0)])
        p["fwd_bwd_comm_ms"] = 110.0
        o = ps.options(nodes=2, gpus_per_node=1, bw=4 * a / 20e-3 / GB, latency_us=0.0)
        self.assertAlmostEqual(ps.fit_contention(p, o), 1.0, places=6)
        p["fwd_bwd_comm_ms"] = 99.0  # faster than without: no contention
        self.assertEqual(ps.fit_contention(p, o), 0.0)

    def test_profile_synchronisation_is_scaled_out(self):
        # Profiled slices add up to 120 ms, the unsynchronised pass took 100: slices shrink 1/1.2.
        a = 25 * MIB // 4
        p = profile(60.0, [(a, 0.0), (1, 60.0)])
        p["fwd_bwd_ms"] = 100.0
        p["ms_per_step_no_comm"] = 100.0
        o = ps.options(nodes=2, gpus_per_node=1, bw=1e6, latency_us=0.0)
        self.assertAlmostEqual(ps.simulate(p, o)["compute_end_ms"], 100.0, places=6)

    def test_grad_accumulation_communicates_once(self):
        floats = 25 * MIB // 4
        p = profile(40.0, [(floats, 0.0)], tail_ms=10.0)
        o = ps.options(nodes=2, gpus_per_node=1, bw=4 * floats / 30e-3 / GB, latency_us=0.0,
                       grad_accum=3)
        r = ps.simulate(p, o)
        self.assertAlmostEqual(r["step_ms"], 3 * 40.0 + 30.0 + 10.0, places=6)
        self.assertAlmostEqual(r["no_comm_ms"], 3 * 40.0 + 10.0, places=6)


class Inputs(unittest.TestCase):
    def test_parameter_count_matches_bench_train(self):
        # bench_train printed these counts (docs/measurements; tiny on the CPU).
        configs = os.path.join(HERE, "..", "configs")
        for name, params in (("tiny", 6900352), ("mamba-130m", 129135360),
                             ("mamba-1.4b", 1372178432)):
            m = ps.read_model_config(os.path.join(configs, name + ".yaml"))
            self.assertEqual(ps.total_params(m), params, name)

    def test_scaling_to_the_same_model_changes_nothing(self):
        m = ps.read_model_config(os.path.join(HERE, "..", "configs", "tiny.yaml"))
        emb, layer = m["padded_vocab"] * m["d_model"], ps.layer_params(m)
        slices = [(m["d_model"], 0.0)] + [(layer, 3.0)] * m["n_layer"] + [(emb, 0.5)]
        p = profile(20.0, slices, tail_ms=4.0)
        s = ps.scale_profile(p, m, m)
        o = ps.options(nodes=4, gpus_per_node=8, bw=25.0)
        self.assertAlmostEqual(ps.simulate(s, o)["step_ms"], ps.simulate(p, o)["step_ms"],
                               places=6)

    def test_fit_recovers_a_link(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "links.jsonl")
            with open(path, "w") as f:
                for mib in (1, 4, 16, 64, 256):
                    ms = ring_ms(2, mib * MIB, 3.0, 150.0)
                    f.write(json.dumps({"link": "x", "bench": "allreduce", "dtype": "fp32",
                                        "mib": mib, "ms": ms}) + "\n")
            fit = ps.fit_link(path, "x", "fp32")
        self.assertAlmostEqual(fit["bw"], 3.0, places=6)
        self.assertAlmostEqual(fit["latency_us"], 150.0, places=3)

    def test_check_fails_beyond_the_tolerance(self):
        floats = 50 * MIB // 4
        p = profile(100.0, [(floats, 0.0)], tail_ms=7.0)
        predicted = 107.0 + 1e3 * (4 * floats / 2.5e9)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "p.json"), "w") as f:
                f.write(json.dumps(p) + "\n")
            for measured, rc in ((predicted * 1.04, 0), (predicted * 1.06, 1)):
                points = [{"name": "socket", "profile": "p.json", "measured_ms": measured,
                           "nodes": 2, "gpus_per_node": 1, "bw": 2.5, "latency_us": 0.0}]
                with open(os.path.join(d, "points.json"), "w") as f:
                    json.dump(points, f)
                run = subprocess.run([sys.executable, os.path.join(HERE, "project_scaling.py"),
                                      "--check", os.path.join(d, "points.json")],
                                     capture_output=True, text=True)
                self.assertEqual(run.returncode, rc, run.stdout + run.stderr)

    def test_a_profile_without_slices_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.json")
            with open(path, "w") as f:
                f.write(json.dumps({"bench": "train_step", "ms_per_step": 1.0}) + "\n")
            run = subprocess.run([sys.executable, os.path.join(HERE, "project_scaling.py"), path],
                                 capture_output=True, text=True)
        self.assertEqual(run.returncode, 1)
        self.assertIn("--profile-layers 1", run.stderr)


if __name__ == "__main__":
    unittest.main()
