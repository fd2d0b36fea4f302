// `mamba check-golden FILE`: recompute a golden file's case on a backend (CPU by default) and
// compare every tensor by norm-wise relative error ||ours - ref|| / ||ref||. Two kinds of file (see
// tests/data/README.md): "selective_scan" (the scan alone, channel-first layout) and "mamba_lm"
// (a whole model: logits, loss, gradients, and 3 AdamW steps). Exit 0 PASS, 1 FAIL, 2 bad input.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/safetensors.h"
#include "kernels/device_tensors.h"
#include "model/mamba_lm.h"
#include "train/device.h"
#include "train/optimizer.h"
#include "train/weights_io.h"
#include "util/error.h"

namespace mamba::cli {

namespace {

// Norm-wise relative error allowed: forward outputs (logits, loss, scan out and last_state), and
// gradients, weights after AdamW and the losses along the steps. fp32 anywhere must meet the
// issue's bounds; bf16 activations (8 mantissa bits, ~4e-3 per rounding) are held to what a
// chain of roundings in fp32-accumulated math gives.
struct Tolerances {
  double output, grad;
};
constexpr Tolerances kFp32{1e-5, 1e-4};
constexpr Tolerances kBf16{2e-2, 5e-2};

double relative_error(const std::vector<float>& ours, const std::vector<float>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (double(ours[i]) - ref[i]) * (double(ours[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  // NaN must fail, so the comparison below is written to be false for it.
  if (norm == 0.0) return diff == 0.0 ? 0.0 : std::sqrt(diff);
  return std::sqrt(diff / norm);
}

class Report {
 public:
  void check(const std::string& name, const std::vector<float>& ours, const std::vector<float>& ref,
             double tol) {
    const double err = relative_error(ours, ref);
    const bool ok = err <= tol;
    passed_ = passed_ && ok;
    std::printf("  %-52s rel err %.3e  (tol %.0e)  %s\n", name.c_str(), err, tol,
                ok ? "ok" : "FAIL");
  }
  int finish() const {
    std::printf("%s\n", passed_ ? "PASS" : "FAIL");
    return passed_ ? 0 : 1;
  }

 private:
  bool passed_ = true;
};

// Per batch, [rows, cols] -> [cols, rows]: channel-first [batch, channels, seqlen] to token-major
// [batch * seqlen, channels] with (channels, seqlen), and back with (seqlen, channels).
std::vector<float> transpose(const std::vector<float>& x, int64_t batch, int64_t rows,
                             int64_t cols) {
  std::vector<float> out(x.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        out[(b * cols + c) * rows + r] = x[(b * rows + r) * cols + c];
  return out;
}

int64_t dim(const SafetensorsReader& f, const std::string& tensor, size_t rank, size_t axis) {
  const TensorInfo& info = f.info(tensor);
  if (info.shape.size() != rank) {
    throw_error("golden error: ", f.path(), ": tensor ", tensor, " has ", info.shape.size(),
                " dimensions, expected ", rank);
  }
  return info.shape[axis];
}

int check_scan(const SafetensorsReader& f, Backend& be, const Tolerances& tol) {
  const int64_t batch = dim(f, "u", 3, 0), di = dim(f, "u", 3, 1), L = dim(f, "u", 3, 2);
  const int64_t n = dim(f, "A", 2, 1);
  const std::vector<int64_t> bdl{batch, di, L}, bnl{batch, n, L}, dn{di, n}, d{di};
  auto token_major = [&](const std::string& name, const std::vector<int64_t>& shape) {
    return transpose(f.read_f32(name, shape), batch, shape[1], L);
  };
  const std::vector<float> u = token_major("u", bdl), delta = token_major("delta", bdl),
                           z = token_major("z", bdl), B = token_major("B", bnl),
                           C = token_major("C", bnl), dout = token_major("dout", bdl);
  const std::vector<float> A = f.read_f32("A", dn), D = f.read_f32("D", d),
                           delta_bias = f.read_f32("delta_bias", d);
  const ScanShape shape{int(batch), L, int(di), int(n), di, n};
  // Inputs go to the device in the activation type; fp32 ones (A, D, bias, states) as they are.
  DeviceTensors dev(be);
  ScanInputs in;
  in.u = dev.act(u);
  in.delta = dev.act(delta);
  in.B = dev.act(B);
  in.C = dev.act(C);
  in.z = dev.act(z);
  in.A = dev.f32(A);
  in.D = dev.f32(D);
  in.delta_bias = dev.f32(delta_bias);
  const Act out_ = dev.act_zeros(u.size());
  float* state_ = dev.f32_zeros(batch * di * n);
  void* saved = dev.bytes(be.scan_saved_bytes(shape));
  be.selective_scan_forward(shape, in, out_, state_, saved);
  ScanGrads g;
  g.du = dev.act_zeros(u.size());
  g.ddelta = dev.act_zeros(u.size());
  g.dB = dev.act_zeros(B.size());
  g.dC = dev.act_zeros(C.size());
  g.dz = dev.act_zeros(u.size());
  g.dA = dev.f32_zeros(A.size());
  g.dD = dev.f32_zeros(di);
  g.ddelta_bias = dev.f32_zeros(di);
  be.selective_scan_backward(shape, in, dev.act(dout), saved, g);
  const std::vector<float> out = dev.read_act(out_, u.size()), du = dev.read_act(g.du, u.size()),
                           ddelta = dev.read_act(g.ddelta, u.size()),
                           dz = dev.read_act(g.dz, u.size()), dB = dev.read_act(g.dB, B.size()),
                           dC = dev.read_act(g.dC, C.size()),
                           last_state = dev.read_f32(state_, batch * di * n),
                           dA = dev.read_f32(g.dA, A.size()), dD = dev.read_f32(g.dD, di),
                           ddelta_bias = dev.read_f32(g.ddelta_bias, di);

  std::printf("selective scan on %s: batch %ld, d_inner %ld, seqlen %ld, d_state %ld\n",
              be.name().c_str(), long(batch), long(di), long(L), long(n));
  Report r;
  auto channel_first = [&](const std::vector<float>& x, int64_t channels) {
    return transpose(x, batch, L, channels);
  };
  r.check("out", channel_first(out, di), f.read_f32("out", bdl), tol.output);
  r.check("last_state", last_state, f.read_f32("last_state", {batch, di, n}), tol.output);
  r.check("du", channel_first(du, di), f.read_f32("du", bdl), tol.grad);
  r.check("ddelta", channel_first(ddelta, di), f.read_f32("ddelta", bdl), tol.grad);
  r.check("dz", channel_first(dz, di), f.read_f32("dz", bdl), tol.grad);
  r.check("dA", dA, f.read_f32("dA", dn), tol.grad);
  r.check("dB", channel_first(dB, n), f.read_f32("dB", bnl), tol.grad);
  r.check("dC", channel_first(dC, n), f.read_f32("dC", bnl), tol.grad);
  r.check("dD", dD, f.read_f32("dD", d), tol.grad);
  r.check("ddelta_bias", ddelta_bias, f.read_f32("ddelta_bias", d), tol.grad);
  return r.finish();
}

int metadata_int(const SafetensorsReader& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) {
    throw_error("golden error: ", f.path(), " has no metadata key '", key,
                "': a mamba_lm golden file states its model config in __metadata__");
  }
  try {
    size_t used = 0;
    const int value = std::stoi(it->second, &used);
    if (used == it->second.size()) return value;
  } catch (const std::exception&) {
  }
  throw_error("golden error: ", f.path(), ": metadata ", key, " = '", it->second,
              "' is not an integer");
}

std::vector<int32_t> read_tokens(const SafetensorsReader& f, const std::string& name, int64_t batch,
                                 int64_t seqlen, int vocab) {
  const std::vector<int64_t> ids = f.read_i64(name, {batch, seqlen});
  std::vector<int32_t> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw_error("golden error: ", f.path(), ": ", name, " holds token ", ids[i], " outside [0, ",
                  vocab, ")");
    }
    out[i] = int32_t(ids[i]);
  }
  return out;
}

std::vector<float> slice(const std::vector<float>& buffer, const ParamTensor& t) {
  return std::vector<float>(buffer.begin() + t.offset, buffer.begin() + t.offset + t.numel);
}

int check_model(const SafetensorsReader& f, Backend& be, const Tolerances& tol) {
  ModelConfig c;
  c.d_model = metadata_int(f, "d_model");
  c.n_layer = metadata_int(f, "n_layer");
  c.vocab_size = metadata_int(f, "vocab_size");
  // The file states its padded vocab; taking it as the pad multiple reproduces exactly that size.
  c.pad_vocab_multiple = metadata_int(f, "padded_vocab");
  c.d_state = metadata_int(f, "d_state");
  c.d_conv = metadata_int(f, "d_conv");
  c.expand = metadata_int(f, "expand");
  c.dt_rank = metadata_int(f, "dt_rank");
  if (auto it = f.metadata().find("rms_norm_eps"); it != f.metadata().end()) {
    c.norm_eps = std::stof(it->second);
  }
  c.validate();
  MambaLM model(c, be);
  const ParamLayout& layout = model.layout();
  std::vector<float> initial(layout.total());
  load_weights(f, layout, initial.data());
  model.upload_params(initial);

  const int64_t batch = dim(f, "input_ids", 2, 0), seqlen = dim(f, "input_ids", 2, 1);
  const int vp = c.padded_vocab();
  const std::vector<int32_t> inputs = read_tokens(f, "input_ids", batch, seqlen, vp);
  const std::vector<int32_t> targets = read_tokens(f, "targets", batch, seqlen, vp);
  std::printf("mamba_lm on %s: %s, batch %ld, seqlen %ld\n", be.name().c_str(),
              c.describe().c_str(), long(batch), long(seqlen));

  Report r;
  std::vector<float> logits(batch * seqlen * vp);
  const double loss = model.evaluate(inputs.data(), targets.data(), batch, seqlen, logits.data());
  r.check("logits", logits, f.read_f32("logits", {batch, seqlen, vp}), tol.output);
  r.check("loss", {float(loss)}, f.read_f32("loss", {1}), tol.output);

  model.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f);
  const std::vector<float> grads = model.download(model.grads());
  for (const ParamTensor& t : layout.tensors()) {
    r.check("grad." + t.name, slice(grads, t), f.read_f32("grad." + t.name, t.shape), tol.grad);
  }

  // The golden optimizer (tests/data/README.md): AdamW lr 1e-3, betas (0.9, 0.95), eps 1e-8,
  // weight decay 0.1 on the decay group, global norm clipped to 1.0, the same batch every step.
  const std::vector<float> ref_losses = f.read_f32("losses");
  const std::vector<float> ref_norms = f.read_f32("grad_norms");
  if (ref_losses.size() != ref_norms.size() + 1) {
    throw_error("golden error: ", f.path(), ": losses has ", ref_losses.size(),
                " entries, expected one more than grad_norms (", ref_norms.size(), ")");
  }
  AdamW opt(layout, be, AdamWSettings{0.9f, 0.95f, 1e-8f, 0.1f});
  std::vector<float> losses{float(loss)}, norms;
  for (size_t step = 0; step < ref_norms.size(); ++step) {
    model.zero_grads();
    model.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f);
    const double norm = grad_norm(be, model.grads(), layout.total());
    norms.push_back(float(norm));
    opt.step(model.params(), model.grads(), 1e-3f, model.compute_copy(),
             clip_coefficient(norm, 1.0f));
    losses.push_back(float(model.evaluate(inputs.data(), targets.data(), batch, seqlen)));
  }
  r.check("losses", losses, ref_losses, tol.grad);
  r.check("grad_norms", norms, ref_norms, tol.grad);
  const std::vector<float> after = model.download(model.params());
  for (const ParamTensor& t : layout.tensors()) {
    r.check("after." + t.name, slice(after, t), f.read_f32("after." + t.name, t.shape), tol.grad);
  }
  return r.finish();
}

}  // namespace

int check_golden(int argc, char** argv) {
  const Args a = parse_args("check-golden", argc, argv, {"device", "precision"});
  if (a.help || a.positional.size() != 1) {
    std::printf(
        "usage: mamba check-golden FILE [--device cpu|cuda] [--precision fp32|bf16]\n"
        "Recomputes a golden safetensors file (kind selective_scan or mamba_lm, any sizes) and\n"
        "prints each tensor's norm-wise relative error. Tolerances (outputs / gradients and\n"
        "AdamW steps): fp32 %.0e / %.0e, bf16 %.0e / %.0e. Exit 0 PASS, 1 FAIL, 2 bad input.\n",
        kFp32.output, kFp32.grad, kBf16.output, kBf16.grad);
    return a.help ? 0 : 2;
  }
  const std::string device = a.get("device", "cpu"), precision = a.get("precision", "fp32");
  if (device != "cpu" && device != "cuda") {
    throw_error("mamba check-golden: --device ", device, ": expected cpu or cuda");
  }
  if (precision != "fp32" && precision != "bf16") {
    throw_error("mamba check-golden: --precision ", precision, ": expected fp32 or bf16");
  }
  const SafetensorsReader f(a.positional[0]);
  auto kind = f.metadata().find("kind");
  if (kind == f.metadata().end()) {
    throw_error("golden error: ", f.path(),
                " has no __metadata__ kind: expected selective_scan or mamba_lm");
  }
  if (kind->second != "selective_scan" && kind->second != "mamba_lm") {
    throw_error("golden error: ", f.path(), " is of unknown kind '", kind->second,
                "': expected selective_scan or mamba_lm");
  }
  ExperimentConfig run;
  run.source = "the command line";
  run.train.device = device == "cuda" ? Device::Cuda : Device::Cpu;
  run.train.precision = precision == "bf16" ? Precision::Bf16 : Precision::Fp32;
  const std::unique_ptr<Backend> be = make_backend(run, 0);
  const Tolerances& tol = precision == "bf16" ? kBf16 : kFp32;
  return kind->second == "selective_scan" ? check_scan(f, *be, tol) : check_model(f, *be, tol);
}

}  // namespace mamba::cli
