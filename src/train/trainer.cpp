#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <sstream>

#include "model/recurrent.h"
#include "train/data_position.h"
#include "train/device.h"
#include "train/evaluate.h"
#include "train/hugging_face.h"
#include "train/parallel_checkpoint.h"
#include "train/reducer_settings.h"
#include "train/schedule.h"
#include "train/stop_signal.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/host_memory.h"

namespace mamba {

namespace {

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

// Steps (1-based, as logged) whose gradients get a NaN on rank 0: fault injection for the tests
// of the non-finite guard, from MAMBA_TEST_NAN_STEPS ("3,6").
std::vector<int64_t> poisoned_steps() {
  std::vector<int64_t> steps;
  const char* text = std::getenv("MAMBA_TEST_NAN_STEPS");
  std::stringstream list(text ? text : "");
  for (std::string item; std::getline(list, item, ',');) steps.push_back(std::stoll(item));
  return steps;
}

}  // namespace

ActivationMemory activation_memory(const TrainConfig& train) {
  if (train.recompute) return ActivationMemory::Recompute;
  return train.keep_layer_inputs ? ActivationMemory::KeepInputs : ActivationMemory::Rebuild;
}

Trainer::Trainer(const ExperimentConfig& config, Communicator& comm)
    : cfg_(config),
      comm_(comm),
      leader_(comm.rank() == 0),
      micro_(config.train.micro_batch),
      accum_(config.grad_accum(comm.world())),
      global_batch_(int(config.global_batch(comm.world()))),
      total_steps_(config.total_steps(comm.world())),
      sample_rng_(uint64_t(config.train.seed) ^ 0x5a4d504cull),
      poisoned_steps_(poisoned_steps()) {
  const int L = cfg_.data.seq_len, rank = comm.rank(), world = comm.world();
  check_batch_fits(cfg_, micro_, accum_);
  // From the start: a signal during set-up or the first eval still ends in a clean checkpoint.
  install_stop_handlers();
  // One run per checkpoint directory, decided before anything in it is read or changed.
  if (leader_) {
    lock_.emplace(cfg_.checkpoint.dir);
    check_checkpoint_dir_writable(cfg_.checkpoint.dir);
  }
  // The loaders check every shard while the backend, model and checkpoint load: independent
  // work, and opening a large corpus takes seconds. Their errors surface at get(), before any
  // training. Training data reads every step, validation now and then: the first gets half of
  // the open-file budget, the validation sources share the other half.
  const size_t open_files = open_file_budget();
  auto train_data = std::async(std::launch::async, [&] {
    return std::make_unique<TokenLoader>(cfg_.data.train, L, cfg_.model.vocab_size, global_batch_,
                                         rank, world, uint64_t(cfg_.train.seed), true,
                                         open_files - open_files / 2);
  });
  auto val_data = std::async(std::launch::async, [&] {
    return open_validation(cfg_.data.val, L, cfg_.model.vocab_size, micro_ * world, rank, world,
                           open_files / 2);
  });
  backend_ = make_backend(cfg_, comm.local_rank());
  const bool sharded = cfg_.dist.shard_optimizer && world > 1;
  // Sharded, the fp32 master is the optimizers' (each rank's packed shard of it).
  model_ =
      std::make_unique<MambaLM>(cfg_.model, *backend_, activation_memory(cfg_.train), !sharded);
  model_->plan(micro_, L);  // activations now: a shape too large fails before any data is read
  if (sharded) {
    shard_ = std::make_unique<ShardMap>(model_->layout().total(), world, rank,
                                        int64_t(cfg_.dist.bucket_mb * (1 << 20) / sizeof(float)));
  }
  optimizer_ =
      std::make_unique<AdamW>(model_->layout(), *backend_,
                              AdamWSettings{float(cfg_.optim.beta1), float(cfg_.optim.beta2),
                                            float(cfg_.optim.eps), float(cfg_.optim.weight_decay)},
                              shard_ ? shard_->ranges() : std::vector<ShardRange>{});
  const AsyncSave async = cfg_.checkpoint.async;
  // A sharded run saves synchronously, every rank writing its own slices.
  if (!shard_ &&
      (async == AsyncSave::On || (async == AsyncSave::Auto && !backend_->host_accessible()))) {
    // Several processes share every save, each writing its part in the background.
    writer_ =
        std::make_unique<CheckpointWriter>(*backend_, model_->layout(), cfg_.checkpoint.dir,
                                           cfg_.checkpoint.keep_last, &comm_, cfg_.dist.timeout_s);
  }
  if (leader_ && cfg_.log.sample_interval > 0 && !cfg_.data.tokenizer.empty()) {
    tokenizer_ = load_tokenizer(cfg_.data.tokenizer);
  }
  const bool resumed = resume();
  train_data_ = train_data.get();
  val_data_ = val_data.get();
  if (resumed) {
    train_data_->restore(recorded_position(cfg_.data.train, state_, last_checkpoint_));
  }
  state_.world = world;
  state_.config_yaml = cfg_.to_yaml();
  metrics_ = std::make_unique<MetricsFile>(leader_ ? cfg_.log.metrics : "", state_.step);
  if (leader_ && cfg_.log.tensorboard) {
    tensorboard_ = TensorBoardWriter::open(cfg_.checkpoint.dir + "/tb", cfg_.source, state_.step);
  }
  reducer_ = make_gradient_reducer(reducer_settings(cfg_.dist, shard_.get()), comm, *model_);
  rows_.resize(int64_t(micro_) * accum_ * (L + 1));
  first_step_ = state_.step;
}

Trainer::~Trainer() = default;

// The leader picks the checkpoint (for auto, the newest intact one, setting damaged ones
// aside); every rank loads it, streaming it into the device buffers. True when it did (the
// caller then restores the data position).
bool Trainer::resume() {
  const ParamLayout& layout = model_->layout();
  const std::string& resume = cfg_.checkpoint.resume;
  // Sharded, the model has no fp32 master: the whole weights come into the gradient buffer, which
  // holds nothing before the first step, and go on from there (take_weights).
  float* weights = shard_ ? model_->grads() : model_->params();
  const CheckpointSink upload = [&](int tensor, int64_t at, const float* values, int64_t n) {
    if (tensor == 0) {
      backend_->upload(weights + at, values, size_t(n) * sizeof(float));
    } else {
      optimizer_->load_moment(tensor - 1, at, values, n);
    }
  };
  // Sharded, each rank reads only its own slices of the moments and the ranks check the file
  // together; either way every rank reads at the same time as the others.
  const CheckpointLoad load = [&](const std::string& p) {
    return shard_ ? load_checkpoint_sharded(comm_, p, layout, *shard_, upload, state_)
                  : load_checkpoint(p, layout, upload, state_);
  };
  int64_t optimizer_steps = 0;
  std::string path;
  if (resume == "auto") {
    path =
        load_newest_intact_checkpoint_together(comm_, cfg_.checkpoint.dir, load, optimizer_steps);
  } else if (resume != "none") {
    path = resume;
    optimizer_steps = load(path);
  }
  if (path.empty()) {
    // A fresh run: the optimizer and the schedule start from zero either way. Damaged checkpoints
    // set aside may have left values in the moments.
    optimizer_->zero_moments();
    if (cfg_.init_from.empty()) {
      // On the device itself: no host copy of the weights, no upload.
      init_params(layout, weights, uint64_t(cfg_.train.seed), *backend_);
    } else {
      std::vector<float> params(layout.total());
      load_initial_weights(find_weights(cfg_.init_from), layout, params.data());
      backend_->upload(weights, params.data(), params.size() * sizeof(float));
    }
    take_weights(weights);
    return false;
  }
  take_weights(weights);
  backend_->synchronize();
  optimizer_->steps_taken = optimizer_steps;
  sample_rng_.set_state(state_.rng);
  last_checkpoint_ = path;
  if (!backend_->adopt_gemm_algorithms(state_.gemm_algorithms) && leader_) {
    std::fprintf(stderr,
                 "warning: %s chose its GEMM algorithms on another kind of GPU or cuBLASLt "
                 "version; this run times its own, so it will not continue bit-identically\n",
                 path.c_str());
  }
  return true;
}

void Trainer::take_weights(const float* weights) {
  model_->set_weights(weights);
  if (shard_) {
    optimizer_->take_master(weights);
    model_->zero_grads();
  }
}

StepResult Trainer::train_step() {
  const auto start = Clock::now();
  const int L = cfg_.data.seq_len;
  StepResult r;
  model_->zero_grads();
  train_data_->next(rows_.data());
  for (int a = 0; a < accum_; ++a) {
    split_rows(rows_.data() + int64_t(a) * micro_ * (L + 1), micro_, L, inputs_, targets_);
    // The last micro-batch's backward hands each layer's finished gradients to the reducer.
    const bool last = a == accum_ - 1;
    r.loss +=
        model_->forward_backward(inputs_.data(), targets_.data(), micro_, L, 1.0f / float(accum_),
                                 last && communicate_ ? reducer_.get() : nullptr);
  }
  const bool poisoned =
      std::count(poisoned_steps_.begin(), poisoned_steps_.end(), state_.step + 1) > 0;
  if (poisoned && leader_) {
    const float nan = std::nanf("");
    backend_->upload(model_->grads(), &nan, sizeof nan);
  }
  if (communicate_) reducer_->finish();
  r.loss = comm_.allreduce_sum(r.loss / accum_) / comm_.world();
  // Sharded, each rank holds the mean gradients of its shard only: their squares add up.
  const auto over_ranks = [&](double squares) {
    return shard_ ? comm_.allreduce_sum(squares) : squares;
  };
  r.grad_norm = grad_norm(*backend_, model_->grads(), optimizer_->ranges(), over_ranks);
  r.lr = learning_rate(cfg_.optim, total_steps_, state_.step);
  // Every rank takes the same branch, or their weights (and collectives) would diverge.
  const bool finite = std::isfinite(r.loss) && std::isfinite(r.grad_norm);
  r.updated = comm_.allreduce_sum(finite ? 0.0 : 1.0) == 0.0;
  if (r.updated) {
    // The optimizer writes the compute copy as it goes: unsharded all of it; sharded this rank's
    // slices, from its packed master, and the gather brings in the rest and the fp32-read tensors.
    optimizer_->step(model_->params(), model_->grads(), r.lr, model_->compute_copy(),
                     clip_coefficient(r.grad_norm, float(cfg_.optim.clip)));
    if (shard_ && communicate_) reducer_->gather_weights(optimizer_->master());
    skipped_in_a_row_ = 0;
  } else {
    ++skipped_in_a_row_;
    ++state_.skipped_steps;
  }
  backend_->synchronize();
  ++state_.step;
  state_.tokens_seen += tokens_per_step();
  r.seconds = seconds_since(start);
  window_seconds_ += r.seconds;
  train_seconds_ += r.seconds;
  ++window_steps_;
  return r;
}

std::optional<double> Trainer::evaluate() {
  bool stopped = false;
  std::vector<double> losses;
  for (auto& loader : val_data_) {
    const std::optional<double> local = stopped
                                            ? std::nullopt
                                            : mean_loss(*model_, *loader, micro_, cfg_.data.seq_len,
                                                        cfg_.log.eval_batches, stop_requested);
    stopped = !local;
    losses.push_back(local.value_or(0.0));
  }
  // The collectives run on every rank, interrupted or not, so that none waits for another.
  const bool interrupted = comm_.allreduce_sum(stopped ? 1.0 : 0.0) > 0.0;
  for (double& loss : losses) loss = comm_.allreduce_sum(loss) / comm_.world();
  if (interrupted) return std::nullopt;
  const double val_loss = mixture_mean(cfg_.data.val, losses);
  if (leader_) {
    SourceLosses per_source;
    std::string line;
    if (is_mixture(cfg_.data.val)) {
      for (size_t s = 0; s < losses.size(); ++s) {
        per_source.emplace_back(cfg_.data.val[s].name, losses[s]);
        char value[32];
        std::snprintf(value, sizeof value, " %.4f", losses[s]);
        line += " | val_loss_" + cfg_.data.val[s].name + value;
      }
    }
    std::printf("eval step %lld | val loss %.4f | val ppl %.2f%s\n", (long long)state_.step,
                val_loss, std::exp(val_loss), line.c_str());
    metrics_->write_eval(state_.step, val_loss, per_source);
    if (tensorboard_) tensorboard_->write_eval(state_.step, val_loss, per_source);
  }
  return val_loss;
}

std::string Trainer::sample() {
  if (!tokenizer_) return "";
  std::vector<int32_t> prompt;
  if (!cfg_.log.sample_prompt.empty()) tokenizer_->encode(cfg_.log.sample_prompt, prompt);
  if (prompt.empty()) prompt.push_back(tokenizer_->eot_id());
  // On the model's device, reading its weights in place.
  const std::vector<int32_t> out = generate(*model_, prompt, cfg_.log.sample_tokens,
                                            tokenizer_->eot_id(), {0.8f, 40}, sample_rng_);
  return cfg_.log.sample_prompt + tokenizer_->decode(out);
}

void Trainer::save() {
  const auto start = Clock::now();
  // From here on every rank computes with rank 0's GEMM algorithms, which the checkpoint records:
  // a run resumed from it then computes as this one goes on to.
  state_.gemm_algorithms = broadcast_string(comm_, backend_->gemm_algorithms(), 0);
  if (!backend_->adopt_gemm_algorithms(state_.gemm_algorithms)) {
    std::fprintf(stderr,
                 "warning: rank %d cannot run rank 0's GEMM algorithms (another kind of GPU or "
                 "cuBLASLt version); a run resumed from this checkpoint will not continue "
                 "bit-identically\n",
                 comm_.rank());
  }
  record_position(cfg_.data.train, train_data_->positions(), state_);
  state_.rng = sample_rng_.state();
  if (writer_) {
    // Named before it is complete: a run that stops now waits for it (~CheckpointWriter).
    last_checkpoint_ = writer_->save(model_->params(), optimizer_->moment_m(),
                                     optimizer_->moment_v(), optimizer_->steps_taken, state_);
  } else {
    // Every rank writes its share (sharded: its own slices of the master and the moments)
    // straight from its buffers, through one chunk of host memory at most; the checkpoint holds
    // the whole state, as one process writes it.
    const ParallelSource source{shard_ ? optimizer_->master() : model_->params(),
                                optimizer_->moment_m(), optimizer_->moment_v(),
                                optimizer_->steps_taken};
    last_checkpoint_ =
        save_checkpoint_parallel(comm_, *backend_, cfg_.checkpoint.dir, model_->layout(),
                                 shard_.get(), source, state_, cfg_.checkpoint.keep_last);
    if (leader_ && comm_.world() > 1) {
      std::printf("checkpoint %s (written by %d ranks)\n", last_checkpoint_.c_str(), comm_.world());
    } else if (leader_) {
      std::printf("checkpoint %s\n", last_checkpoint_.c_str());
    }
    std::fflush(stdout);
  }
  last_save_stall_s_ = seconds_since(start);
}

void Trainer::wait_for_saves() {
  if (!writer_) return;
  writer_->wait();
  if (!writer_->newest().empty()) last_checkpoint_ = writer_->newest();
}

void Trainer::log_step(const StepResult& r) {
  StepStats s;
  s.step = state_.step;
  s.total_steps = total_steps_;
  s.loss = r.loss;
  s.lr = r.lr;
  s.grad_norm = r.grad_norm;
  s.tokens_per_s = double(window_steps_) * double(tokens_per_step()) / window_seconds_;
  const double peak = backend_->peak_flops();
  if (peak > 0) {
    s.mfu = 6.0 * double(model_->layout().total()) * s.tokens_per_s / comm_.world() / peak;
  }
  s.mem_gib = backend_->peak_memory() / double(1ull << 30);
  s.mem_alloc_gib = backend_->peak_allocated() / double(1ull << 30);
  s.eta_s = train_seconds_ / double(state_.step - first_step_) * double(total_steps_ - state_.step);
  s.tokens_seen = state_.tokens_seen;
  s.skipped_steps = state_.skipped_steps;
  s.source_tokens = source_tokens(cfg_.data.train, train_data_->samples_drawn(), cfg_.data.seq_len);
  std::printf("%s\n", format_step_line(s).c_str());
  std::fflush(stdout);
  metrics_->write_train(s);
  if (tensorboard_) tensorboard_->write_train(s);
  window_seconds_ = 0.0;
  window_steps_ = 0;
}

// A skipped step is logged, counted, and ends the run when the policy says so.
void Trainer::log_skipped(const StepResult& r) {
  if (leader_) {
    std::printf("step %lld: loss %g, gradient norm %g: update skipped (%lld in a row)\n",
                (long long)state_.step, r.loss, r.grad_norm, (long long)skipped_in_a_row_);
    std::fflush(stdout);
    metrics_->write_skipped(state_.step, r.loss, r.grad_norm, state_.skipped_steps);
    if (tensorboard_) tensorboard_->write_skipped(state_.step, state_.skipped_steps);
  }
  const std::string newest = last_checkpoint_.empty() ? "none yet" : last_checkpoint_;
  if (cfg_.train.on_nonfinite == OnNonFinite::Stop) {
    throw_error("training error: step ", state_.step, " has loss ", r.loss, " and gradient norm ",
                r.grad_norm, " (train.on_nonfinite = stop); the newest good checkpoint is ", newest,
                ": lower optim.lr or check the data, then resume from it");
  }
  if (skipped_in_a_row_ >= cfg_.train.max_skipped_steps) {
    throw_error("training error: ", skipped_in_a_row_,
                " steps in a row had a non-finite loss or gradient norm, up to step ", state_.step,
                " (train.max_skipped_steps = ", cfg_.train.max_skipped_steps,
                "); the newest good checkpoint is ", newest,
                ": lower optim.lr or check the data, then resume from it");
  }
}

void Trainer::print_banner() const {
  std::printf("# resolved config (%s)\n%s\n", cfg_.source.c_str(), state_.config_yaml.c_str());
  std::printf(
      "model: %s, %.2fM parameters | %s | world %d | micro batch %d x %d accum = "
      "global %d x %d tokens | %lld steps\n",
      cfg_.model.describe().c_str(), model_->layout().total() / 1e6, backend_->name().c_str(),
      comm_.world(), micro_, accum_, global_batch_, cfg_.data.seq_len, (long long)total_steps_);
  if (shard_) {
    std::printf(
        "optimizer state sharded over %d ranks (dist.shard_optimizer): fp32 master and moments of "
        "%lld of %lld parameters on rank 0, model weights %.1f MiB\n",
        comm_.world(), (long long)optimizer_->size(), (long long)model_->layout().total(),
        model_->weight_bytes() / double(1 << 20));
  }
  if (!last_checkpoint_.empty()) {
    std::printf("resumed from %s at step %lld\n", last_checkpoint_.c_str(), (long long)state_.step);
  } else if (!cfg_.init_from.empty()) {
    std::printf("initialised from the weights of %s\n", cfg_.init_from.c_str());
  }
  std::fflush(stdout);
}

TrainOutcome Trainer::run() {
  if (leader_) print_banner();
  if (cfg_.dist.hierarchical && comm_.world() > 1) {
    // Every rank says where it is, so that a wrong mapping of ranks to nodes shows in the log.
    std::printf("rank %d of %d: node %d, local rank %d (dist.hierarchical)\n", comm_.rank(),
                comm_.world(), comm_.node(), comm_.local_rank());
    std::fflush(stdout);
  }
  TrainOutcome outcome;
  const LogConfig& log = cfg_.log;
  auto every = [&](int64_t interval) {
    return interval > 0 && (state_.step % interval == 0 || state_.step == total_steps_);
  };
  // The starting point, so the log shows how far training has brought the validation loss.
  if (log.eval_interval > 0 && state_.step == 0) {
    outcome.val_loss = evaluate().value_or(outcome.val_loss);
  }
  while (state_.step < total_steps_) {
    const StepResult r = train_step();
    outcome.train_loss = r.loss;
    if (!r.updated) log_skipped(r);
    if (leader_ && r.updated && every(log.interval)) log_step(r);
    if (every(log.eval_interval)) outcome.val_loss = evaluate().value_or(outcome.val_loss);
    if (tokenizer_ && every(log.sample_interval)) {
      std::printf("sample step %lld | %s\n", (long long)state_.step, sample().c_str());
    }
    // Every rank must agree to stop, or the others would wait in the next collective.
    outcome.preempted = comm_.allreduce_sum(stop_requested() ? 1.0 : 0.0) > 0.0;
    if (every(cfg_.checkpoint.interval) || state_.step == total_steps_ || outcome.preempted) {
      save();
    }
    if (outcome.preempted) {
      if (leader_) {
        std::printf("stopped by signal at step %lld; resume with the same command\n",
                    (long long)state_.step);
      }
      break;
    }
  }
  wait_for_saves();
  outcome.checkpoint = last_checkpoint_;
  outcome.step = state_.step;
  return outcome;
}

}  // namespace mamba
