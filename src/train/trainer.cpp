#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "model/mamba_lm.h"
#include "model/recurrent.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/evaluate.h"
#include "train/gradient_reducer.h"
#include "train/optimizer.h"
#include "train/run_log.h"
#include "train/schedule.h"
#include "train/stop_signal.h"
#include "util/dir_lock.h"
#include "util/error.h"
#include "util/host_memory.h"
#include "util/rng.h"

namespace mamba {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string sample_text(MambaLM& model, const Tokenizer& tok, const ExperimentConfig& cfg,
                        Rng& rng) {
  std::vector<int32_t> prompt;
  if (!cfg.log.sample_prompt.empty()) tok.encode(cfg.log.sample_prompt, prompt);
  if (prompt.empty()) prompt.push_back(tok.eot_id());
  // Generation runs on the CPU from a host copy of the weights.
  const std::vector<float> params = model.download(model.params());
  const std::vector<int32_t> out = generate(model.layout(), params.data(), prompt,
                                            cfg.log.sample_tokens, tok.eot_id(), {0.8f, 40}, rng);
  return cfg.log.sample_prompt + tok.decode(out);
}

// The host buffers of one step's token rows (the loader keeps about as much again in flight):
// checked before they are allocated, so a batch too large for the machine is a config error.
void check_batch_fits(const ExperimentConfig& cfg, int micro, int accum) {
  const double bytes = 2.0 * double(micro) * accum * (cfg.data.seq_len + 1) * sizeof(int32_t);
  const size_t available = available_host_memory();
  if (bytes > double(available)) {
    throw_error("config error: train.micro_batch x grad_accum x (data.seq_len + 1) = ", micro,
                " x ", accum, " x ", cfg.data.seq_len + 1, " tokens per step need ",
                bytes / double(1 << 30), " GiB of host memory, more than the ",
                available / double(1 << 30), " GiB available, in ", cfg.source,
                ": lower train.micro_batch, train.grad_accum or data.seq_len");
  }
}

// Steps (1-based, as logged) whose gradients are poisoned with a NaN: a fault-injection hook
// for the tests of the non-finite guard, read from MAMBA_TEST_NAN_STEPS ("3,4").
std::set<int64_t> poisoned_steps() {
  std::set<int64_t> steps;
  const char* text = std::getenv("MAMBA_TEST_NAN_STEPS");
  if (!text) return steps;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) steps.insert(std::stoll(item));
  return steps;
}

}  // namespace

TrainOutcome run_training(const ExperimentConfig& cfg, Communicator& comm) {
  const int rank = comm.rank(), world = comm.world();
  const bool leader = rank == 0;
  const int micro = cfg.train.micro_batch, L = cfg.data.seq_len;
  const int accum = cfg.grad_accum(world);
  const int global_batch = int(cfg.global_batch(world));
  const int64_t total_steps = cfg.total_steps(world);
  const int64_t tokens_per_step = int64_t(global_batch) * L;
  check_batch_fits(cfg, micro, accum);
  // From the start: a signal during set-up or the first eval still ends in a clean checkpoint.
  install_stop_handlers();

  // One run per checkpoint directory, decided before anything in it is read or changed.
  std::optional<DirectoryLock> lock;
  if (leader) {
    lock.emplace(cfg.checkpoint.dir);
    check_checkpoint_dir_writable(cfg.checkpoint.dir);
  }

  std::unique_ptr<Backend> backend = make_backend(cfg, comm.local_rank());
  MambaLM model(cfg.model, *backend, cfg.train.recompute);
  model.plan(micro, L);
  const ParamLayout& layout = model.layout();
  AdamW optimizer(layout, *backend,
                  AdamWSettings{float(cfg.optim.beta1), float(cfg.optim.beta2),
                                float(cfg.optim.eps), float(cfg.optim.weight_decay)});
  TokenLoader train_data(cfg.data.train, L, cfg.model.vocab_size, global_batch, rank, world,
                         uint64_t(cfg.train.seed), true);
  TokenLoader val_data(cfg.data.val, L, cfg.model.vocab_size, micro * world, rank, world,
                       uint64_t(cfg.train.seed), false);
  std::unique_ptr<Tokenizer> tokenizer;
  if (leader && cfg.log.sample_interval > 0 && !cfg.data.tokenizer.empty()) {
    tokenizer = load_tokenizer(cfg.data.tokenizer);
  }

  // Resume: the leader picks the checkpoint (for auto, the newest intact one, setting damaged
  // ones aside), every rank loads it.
  TrainerState state;
  TrainingTensors saved;
  Rng sample_rng(uint64_t(cfg.train.seed) ^ 0x5a4d504cull);
  const std::string& resume = cfg.checkpoint.resume;
  std::string resume_path;
  if (resume == "auto") {
    if (leader) {
      resume_path = load_newest_intact_checkpoint(cfg.checkpoint.dir, layout, saved, state);
    }
    resume_path = broadcast_string(comm, resume_path, 0);
    if (!leader && !resume_path.empty()) load_checkpoint(resume_path, layout, saved, state);
  } else if (resume != "none") {
    resume_path = resume;
    load_checkpoint(resume_path, layout, saved, state);
  }
  if (resume_path.empty()) {
    std::vector<float> params(layout.total());
    init_params(layout, params.data(), uint64_t(cfg.train.seed));
    model.upload_params(params);
  } else {
    model.upload_params(saved.params);
    optimizer.upload(saved.exp_avg, saved.exp_avg_sq);
    optimizer.steps_taken = saved.optimizer_steps;
    train_data.restore(LoaderPosition{state.loader_epoch, state.loader_sample});
    sample_rng.set_state(state.rng);
    saved = TrainingTensors{};
  }
  state.world = world;
  state.config_yaml = cfg.to_yaml();
  if (leader) {
    std::printf("# resolved config (%s)\n%s\n", cfg.source.c_str(), state.config_yaml.c_str());
    std::printf(
        "model: %s, %.2fM parameters | %s | world %d | micro batch %d x %d accum = "
        "global %d x %d tokens | %lld steps\n",
        cfg.model.describe().c_str(), layout.total() / 1e6, backend->name().c_str(), world, micro,
        accum, global_batch, L, (long long)total_steps);
    if (!resume_path.empty()) {
      std::printf("resumed from %s at step %lld\n", resume_path.c_str(), (long long)state.step);
    }
    std::fflush(stdout);
  }
  MetricsFile metrics(leader ? cfg.log.metrics : "", state.step);

  std::string last_checkpoint = resume_path;
  auto save = [&]() {
    const LoaderPosition pos = train_data.position();
    state.loader_epoch = pos.epoch;
    state.loader_sample = pos.sample;
    state.rng = sample_rng.state();
    if (!leader) return;
    const TrainingTensors tensors{model.download(model.params()), optimizer.download_m(),
                                  optimizer.download_v(), optimizer.steps_taken};
    last_checkpoint =
        save_checkpoint(cfg.checkpoint.dir, layout, tensors, state, cfg.checkpoint.keep_last);
    std::printf("checkpoint %s\n", last_checkpoint.c_str());
    std::fflush(stdout);
  };

  // Every rank evaluates its share; a stop signal abandons the eval on all ranks.
  auto evaluate_and_log = [&]() -> std::optional<double> {
    const std::optional<double> local =
        mean_loss(model, val_data, micro, L, cfg.log.eval_batches, stop_requested);
    const bool interrupted = comm.allreduce_sum(local ? 0.0 : 1.0) > 0.0;
    const double val_loss = comm.allreduce_sum(local.value_or(0.0)) / world;
    if (interrupted) return std::nullopt;
    if (leader) {
      std::printf("eval step %lld | val loss %.4f | val ppl %.2f\n", (long long)state.step,
                  val_loss, std::exp(val_loss));
      metrics.write_eval(state.step, val_loss);
    }
    return val_loss;
  };

  TrainOutcome outcome;
  // The starting point, so the log shows how far training has brought the validation loss.
  if (cfg.log.eval_interval > 0 && state.step == 0) {
    outcome.val_loss = evaluate_and_log().value_or(outcome.val_loss);
  }
  std::vector<int32_t> rows(int64_t(micro) * accum * (L + 1)), inputs, targets;
  const std::unique_ptr<GradientReducer> reducer = make_gradient_reducer(cfg, comm, model);
  const std::set<int64_t> poisoned = poisoned_steps();
  const double flops_per_token = 6.0 * double(layout.total());
  // Throughput counts training steps only, not evals, samples or checkpoint writes.
  double window_seconds = 0.0, train_seconds = 0.0;
  int64_t window_steps = 0, skipped_in_a_row = 0;
  const int64_t first_step = state.step;
  while (state.step < total_steps) {
    const auto step_start = Clock::now();
    model.zero_grads();
    train_data.next(rows.data());
    double loss = 0.0;
    for (int a = 0; a < accum; ++a) {
      split_rows(rows.data() + int64_t(a) * micro * (L + 1), micro, L, inputs, targets);
      // Reductions start during the last micro-batch's backward, as its layers finish.
      loss += model.forward_backward(inputs.data(), targets.data(), micro, L, 1.0f / accum,
                                     a == accum - 1 ? reducer.get() : nullptr);
    }
    if (poisoned.count(state.step + 1) && leader) {
      const float nan = std::nanf("");
      backend->upload(model.grads(), &nan, sizeof nan);
    }
    reducer->finish();
    loss = comm.allreduce_sum(loss / accum) / world;
    const double grad_norm =
        clip_grad_norm(*backend, model.grads(), layout.total(), float(cfg.optim.clip));
    const float lr = learning_rate(cfg.optim, total_steps, state.step);
    // All ranks must take the same branch, or their weights (and collectives) would diverge.
    const bool finite =
        comm.allreduce_sum(std::isfinite(loss) && std::isfinite(grad_norm) ? 0.0 : 1.0) == 0.0;
    if (finite) {
      optimizer.step(model.params(), model.grads(), lr);
      model.params_updated();
      skipped_in_a_row = 0;
    } else {
      ++skipped_in_a_row;
      ++state.skipped_steps;
    }
    backend->synchronize();
    const double step_seconds = seconds_since(step_start);
    window_seconds += step_seconds;
    train_seconds += step_seconds;
    ++state.step;
    ++window_steps;
    state.tokens_seen += tokens_per_step;
    outcome.train_loss = loss;

    if (!finite) {
      const std::string newest = last_checkpoint.empty() ? "none yet" : last_checkpoint;
      if (leader) {
        std::printf("step %lld: loss %g, gradient norm %g: update skipped (%lld in a row)\n",
                    (long long)state.step, loss, grad_norm, (long long)skipped_in_a_row);
        std::fflush(stdout);
        metrics.write_skipped(state.step, loss, grad_norm, state.skipped_steps);
      }
      if (cfg.train.on_nonfinite == OnNonFinite::Stop) {
        throw_error("training error: step ", state.step, " has loss ", loss, " and gradient norm ",
                    grad_norm, " (train.on_nonfinite = stop); the newest good checkpoint is ",
                    newest, ": lower optim.lr or check the data, then resume from it");
      }
      if (skipped_in_a_row >= cfg.train.max_skipped_steps) {
        throw_error("training error: ", skipped_in_a_row,
                    " steps in a row had a non-finite loss or gradient norm, up to step ",
                    state.step, " (train.max_skipped_steps = ", cfg.train.max_skipped_steps,
                    "); the newest good checkpoint is ", newest,
                    ": lower optim.lr or check the data, then resume from it");
      }
    }

    const bool last = state.step == total_steps;
    if (leader && finite && (state.step % cfg.log.interval == 0 || last)) {
      StepStats s;
      s.step = state.step;
      s.total_steps = total_steps;
      s.loss = loss;
      s.lr = lr;
      s.grad_norm = grad_norm;
      s.tokens_per_s = window_steps * tokens_per_step / window_seconds;
      if (backend->peak_flops() > 0) {
        s.mfu = flops_per_token * s.tokens_per_s / world / backend->peak_flops();
      }
      s.mem_gib = backend->peak_memory() > 0 ? backend->peak_memory() / double(1ull << 30)
                                             : resident_memory_gib();
      s.eta_s = train_seconds / double(state.step - first_step) * double(total_steps - state.step);
      s.tokens_seen = state.tokens_seen;
      s.skipped_steps = state.skipped_steps;
      std::printf("%s\n", format_step_line(s).c_str());
      std::fflush(stdout);
      metrics.write_train(s);
      window_seconds = 0.0;
      window_steps = 0;
    }
    if (cfg.log.eval_interval > 0 && (state.step % cfg.log.eval_interval == 0 || last)) {
      outcome.val_loss = evaluate_and_log().value_or(outcome.val_loss);
    }
    if (tokenizer && (state.step % cfg.log.sample_interval == 0 || last)) {
      std::printf("sample step %lld | %s\n", (long long)state.step,
                  sample_text(model, *tokenizer, cfg, sample_rng).c_str());
    }
    // Every rank must agree to stop, or the others would wait in the next all-reduce.
    outcome.preempted = comm.allreduce_sum(stop_requested() ? 1.0 : 0.0) > 0.0;
    const bool periodic = cfg.checkpoint.interval > 0 && state.step % cfg.checkpoint.interval == 0;
    if (periodic || last || outcome.preempted) save();
    if (outcome.preempted) {
      if (leader) {
        std::printf("stopped by signal at step %lld; resume with the same command\n",
                    (long long)state.step);
      }
      break;
    }
  }
  outcome.checkpoint = last_checkpoint;
  outcome.step = state.step;
  return outcome;
}

}  // namespace mamba
