// `mamba check-golden FILE`: recompute a golden file's case on the CPU backend and compare every
// tensor by norm-wise relative error ||ours - ref|| / ||ref||. Two kinds of file (see
// tests/data/README.md): "selective_scan" (the scan alone, channel-first layout) and "mamba_lm"
// (a whole model: logits, loss, gradients, and 3 AdamW steps). Exit 0 PASS, 1 FAIL, 2 bad input.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "io/safetensors.h"
#include "kernels/cpu/scan.h"
#include "model/mamba_lm.h"
#include "train/optimizer.h"
#include "train/weights_io.h"
#include "util/error.h"

namespace mamba::cli {

namespace {

constexpr double kOutputTol = 1e-5;  // forward outputs: logits, loss, scan out and last_state
constexpr double kGradTol = 1e-4;    // gradients, weights after AdamW, losses along the steps

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
  void check(const std::string& name, const std::vector<float>& ours,
             const std::vector<float>& ref, double tol) {
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

// [batch, channels, seqlen] <-> token-major [batch * seqlen, channels].
std::vector<float> to_token_major(const std::vector<float>& x, int64_t batch, int64_t channels,
                                  int64_t seqlen) {
  std::vector<float> out(x.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t t = 0; t < seqlen; ++t)
        out[(b * seqlen + t) * channels + c] = x[(b * channels + c) * seqlen + t];
  return out;
}

std::vector<float> to_channel_first(const std::vector<float>& x, int64_t batch, int64_t channels,
                                    int64_t seqlen) {
  std::vector<float> out(x.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t t = 0; t < seqlen; ++t)
        out[(b * channels + c) * seqlen + t] = x[(b * seqlen + t) * channels + c];
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

int check_scan(const SafetensorsReader& f) {
  const int64_t batch = dim(f, "u", 3, 0), di = dim(f, "u", 3, 1), L = dim(f, "u", 3, 2);
  const int64_t n = dim(f, "A", 2, 1);
  const std::vector<int64_t> bdl{batch, di, L}, bnl{batch, n, L}, dn{di, n}, d{di};
  auto token_major = [&](const std::string& name, const std::vector<int64_t>& shape) {
    return to_token_major(f.read_f32(name, shape), batch, shape[1], L);
  };
  const std::vector<float> u = token_major("u", bdl), delta = token_major("delta", bdl),
                           z = token_major("z", bdl), B = token_major("B", bnl),
                           C = token_major("C", bnl), dout = token_major("dout", bdl);
  const std::vector<float> A = f.read_f32("A", dn), D = f.read_f32("D", d),
                           delta_bias = f.read_f32("delta_bias", d);
  const cpu::ScanShape shape{int(batch), L, int(di), int(n), di, n};

  std::vector<float> out(u.size()), last_state(batch * di * n);
  cpu::selective_scan_forward(out.data(), last_state.data(), u.data(), delta.data(), A.data(),
                              B.data(), C.data(), D.data(), delta_bias.data(), z.data(), shape);
  std::vector<float> du(u.size()), ddelta(u.size()), dz(u.size()), dB(B.size()), dC(C.size()),
      dA(A.size(), 0.0f), dD(di, 0.0f), ddelta_bias(di, 0.0f);
  cpu::selective_scan_backward(du.data(), ddelta.data(), dA.data(), dB.data(), dC.data(),
                               dD.data(), ddelta_bias.data(), dz.data(), dout.data(), u.data(),
                               delta.data(), A.data(), B.data(), C.data(), D.data(),
                               delta_bias.data(), z.data(), shape);

  std::printf("selective scan: batch %ld, d_inner %ld, seqlen %ld, d_state %ld\n", long(batch),
              long(di), long(L), long(n));
  Report r;
  auto channel_first = [&](const std::vector<float>& x, int64_t channels) {
    return to_channel_first(x, batch, channels, L);
  };
  r.check("out", channel_first(out, di), f.read_f32("out", bdl), kOutputTol);
  r.check("last_state", last_state, f.read_f32("last_state", {batch, di, n}), kOutputTol);
  r.check("du", channel_first(du, di), f.read_f32("du", bdl), kGradTol);
  r.check("ddelta", channel_first(ddelta, di), f.read_f32("ddelta", bdl), kGradTol);
  r.check("dz", channel_first(dz, di), f.read_f32("dz", bdl), kGradTol);
  r.check("dA", dA, f.read_f32("dA", dn), kGradTol);
  r.check("dB", channel_first(dB, n), f.read_f32("dB", bnl), kGradTol);
  r.check("dC", channel_first(dC, n), f.read_f32("dC", bnl), kGradTol);
  r.check("dD", dD, f.read_f32("dD", d), kGradTol);
  r.check("ddelta_bias", ddelta_bias, f.read_f32("ddelta_bias", d), kGradTol);
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

std::vector<int32_t> read_tokens(const SafetensorsReader& f, const std::string& name,
                                 int64_t batch, int64_t seqlen, int vocab) {
  const std::vector<int64_t> ids = f.read_i64(name, {batch, seqlen});
  std::vector<int32_t> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw_error("golden error: ", f.path(), ": ", name, " holds token ", ids[i],
                  " outside [0, ", vocab, ")");
    }
    out[i] = int32_t(ids[i]);
  }
  return out;
}

std::vector<float> slice(const std::vector<float>& buffer, const ParamTensor& t) {
  return std::vector<float>(buffer.begin() + t.offset, buffer.begin() + t.offset + t.numel);
}

int check_model(const SafetensorsReader& f) {
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
  MambaLM model(c);
  const ParamLayout& layout = model.layout();
  load_weights(f, layout, model.params.data());

  const int64_t batch = dim(f, "input_ids", 2, 0), seqlen = dim(f, "input_ids", 2, 1);
  const int vp = c.padded_vocab();
  const std::vector<int32_t> inputs = read_tokens(f, "input_ids", batch, seqlen, vp);
  const std::vector<int32_t> targets = read_tokens(f, "targets", batch, seqlen, vp);
  std::printf("mamba_lm: %s, batch %ld, seqlen %ld\n", c.describe().c_str(), long(batch),
              long(seqlen));

  Report r;
  std::vector<float> logits(batch * seqlen * vp);
  const double loss = model.evaluate(inputs.data(), targets.data(), batch, seqlen, logits.data());
  r.check("logits", logits, f.read_f32("logits", {batch, seqlen, vp}), kOutputTol);
  r.check("loss", {float(loss)}, f.read_f32("loss", {1}), kOutputTol);

  model.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f);
  for (const ParamTensor& t : layout.tensors()) {
    r.check("grad." + t.name, slice(model.grads, t), f.read_f32("grad." + t.name, t.shape),
            kGradTol);
  }

  // The golden optimizer (tests/data/README.md): AdamW lr 1e-3, betas (0.9, 0.95), eps 1e-8,
  // weight decay 0.1 on the decay group, global norm clipped to 1.0, the same batch every step.
  const std::vector<float> ref_losses = f.read_f32("losses");
  const std::vector<float> ref_norms = f.read_f32("grad_norms");
  if (ref_losses.size() != ref_norms.size() + 1) {
    throw_error("golden error: ", f.path(), ": losses has ", ref_losses.size(),
                " entries, expected one more than grad_norms (", ref_norms.size(), ")");
  }
  AdamW opt(layout, AdamWSettings{0.9f, 0.95f, 1e-8f, 0.1f});
  std::vector<float> losses{float(loss)}, norms;
  for (size_t step = 0; step < ref_norms.size(); ++step) {
    std::fill(model.grads.begin(), model.grads.end(), 0.0f);
    model.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f);
    norms.push_back(float(clip_grad_norm(model.grads.data(), layout.total(), 1.0f)));
    opt.step(model.params.data(), model.grads.data(), 1e-3f);
    losses.push_back(float(model.evaluate(inputs.data(), targets.data(), batch, seqlen)));
  }
  r.check("losses", losses, ref_losses, kGradTol);
  r.check("grad_norms", norms, ref_norms, kGradTol);
  for (const ParamTensor& t : layout.tensors()) {
    r.check("after." + t.name, slice(model.params, t), f.read_f32("after." + t.name, t.shape),
            kGradTol);
  }
  return r.finish();
}

}  // namespace

int check_golden(int argc, char** argv) {
  if (argc != 1 || !std::strcmp(argv[0], "--help") || !std::strcmp(argv[0], "-h")) {
    std::printf(
        "usage: mamba check-golden FILE\n"
        "Recomputes a golden safetensors file (kind selective_scan or mamba_lm, any sizes) on\n"
        "the CPU backend and prints each tensor's norm-wise relative error.\n"
        "Tolerances: outputs %.0e, gradients / AdamW steps %.0e. Exit 0 PASS, 1 FAIL, 2 bad "
        "input.\n",
        kOutputTol, kGradTol);
    return argc == 1 ? 0 : 2;
  }
  const SafetensorsReader f(argv[0]);
  auto kind = f.metadata().find("kind");
  if (kind == f.metadata().end()) {
    throw_error("golden error: ", f.path(),
                " has no __metadata__ kind: expected selective_scan or mamba_lm");
  }
  if (kind->second == "selective_scan") return check_scan(f);
  if (kind->second == "mamba_lm") return check_model(f);
  throw_error("golden error: ", f.path(), " is of unknown kind '", kind->second,
              "': expected selective_scan or mamba_lm");
}

}  // namespace mamba::cli
