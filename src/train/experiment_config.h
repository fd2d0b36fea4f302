// Experiment config: one YAML file plus dotted key=value overrides -> one validated
// ExperimentConfig, printable back as YAML (at start-up and into every checkpoint).
//
// File layout (every key optional unless marked required; the defaults are the ones below):
//   model:      the ModelConfig fields (dt_rank: an integer or auto; vocab_size: an integer or
//               auto, the training shards' vocab), init_from
//   data:       train, val (required: globs of HDF5 token shards, or lists of sources with
//               name, path and weight), seq_len, tokenizer
//   train:      micro_batch, global_batch | grad_accum, steps | tokens (exactly one), device,
//               precision, seed, recompute, keep_layer_inputs, tune_gemms, on_nonfinite,
//               max_skipped_steps
//   optim:      lr, min_lr, warmup, schedule, beta1, beta2, eps, weight_decay, clip
//   checkpoint: dir, interval, keep_last, resume, async
//   log:        interval, eval_interval, eval_batches, sample_interval, sample_tokens,
//               sample_prompt, metrics, tensorboard
//   dist:       bucket_mb, timeout_s, bf16_grads, hierarchical, shard_optimizer, peer_copies
// Every failure is a mamba::Error whose one-line message names the file, the key, the value
// and what was expected. The key table lives once, in experiment_config.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/mixture.h"
#include "model/config.h"

namespace mamba {

enum class Device { Auto, Cpu, Cuda };
enum class Precision { Fp32, Bf16 };
enum class Schedule { Cosine, Linear, Constant };
enum class OnNonFinite { Skip, Stop };
enum class AsyncSave { Auto, On, Off };

// The names used in the YAML file: auto, cpu, cuda; fp32, bf16; cosine, linear, constant;
// skip, stop; auto, true, false.
const char* to_string(Device device);
const char* to_string(Precision precision);
const char* to_string(Schedule schedule);
const char* to_string(OnNonFinite action);
const char* to_string(AsyncSave mode);

// data.train and data.val are each a glob of shards (one unnamed source) or a list of named,
// weighted sources: [{name: web, path: "web/train-*.h5", weight: 0.7}, ...] (data/mixture.h).
struct DataConfig {
  std::vector<DataSource> train;  // required, e.g. data/demo/train-*.h5
  std::vector<DataSource> val;    // required; a list gets one validation loss per source
  int seq_len = 2048;             // tokens per sequence; the paper's context length
  // What load_tokenizer takes (a tokenizer.json, GPT-2's encoder.json, or a directory of them);
  // only text samples need it. Empty: none, and log.sample_interval must stay 0.
  std::string tokenizer;
};

struct TrainConfig {
  int micro_batch = 1;  // sequences per forward/backward on one process
  // Sequences per optimizer step = micro_batch * grad_accum * world. Give at most one of the two;
  // with neither, grad_accum is 1. global_batch keeps the recipe fixed when world changes.
  std::optional<int> global_batch;
  std::optional<int> grad_accum;
  // Exactly one: optimizer steps, or a token budget from which the steps are derived.
  std::optional<int64_t> steps;
  std::optional<int64_t> tokens;
  Device device = Device::Auto;           // auto: CUDA when a GPU is visible, else CPU
  Precision precision = Precision::Fp32;  // bf16 needs CUDA: the CPU backend computes in fp32
  int64_t seed = 1337;
  bool recompute = false;  // recompute layer activations in backward: less memory, more time
  // Keep each layer's normed input, conv output, delta and scan output for backward instead of
  // rebuilding them there: more memory, less time. Not with recompute.
  bool keep_layer_inputs = false;
  // GPU only: time several cuBLASLt algorithms for each GEMM shape at its first use and keep the
  // fastest (kernels/cuda/gemm.h): the GEMMs 3-5% faster, the step less (docs/performance.md,
  // eighth session). Timing may choose differently from run to run, so two fresh runs with one
  // seed are no longer bit-identical; checkpoints record the choices, so a resumed run still is.
  bool tune_gemms = false;
  // A step whose loss or gradient norm is not finite never updates the weights. skip: drop that
  // update and go on; after max_skipped_steps such steps in a row, stop. stop: stop at once.
  OnNonFinite on_nonfinite = OnNonFinite::Skip;
  int max_skipped_steps = 10;
};

struct OptimConfig {
  double lr = 6e-4;      // peak learning rate, reached at the end of warmup
  double min_lr = 1e-5;  // where cosine and linear decay end (the paper's 1e-5)
  int64_t warmup = 0;    // steps of linear warmup from 0 to lr
  Schedule schedule = Schedule::Cosine;
  double beta1 = 0.9;  // AdamW as in the paper: (0.9, 0.95), weight decay 0.1
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double clip = 1.0;  // max global gradient norm; 0 turns clipping off
};

struct CheckpointConfig {
  std::string dir;              // default: runs/<config file name without extension>
  int64_t interval = 1000;      // steps between checkpoints; 0: only the final one
  int keep_last = 3;            // older checkpoints in dir are deleted; 0 keeps them all
  std::string resume = "auto";  // auto: the latest checkpoint in dir, if any; none; or a path
  // true: written by a background thread while training goes on (docs/reliability.md); auto:
  // true on a GPU, false on the CPU.
  AsyncSave async = AsyncSave::Auto;
};

struct LogConfig {
  int64_t interval = 10;        // steps between log lines
  int64_t eval_interval = 250;  // steps between validation evals; 0: no evals while training
  int eval_batches = 20;        // micro batches per validation eval
  int64_t sample_interval = 0;  // steps between generated text samples; 0: none
  int sample_tokens = 64;       // tokens per sample
  std::string sample_prompt;    // text the sample continues; empty: start from end-of-text
  std::string metrics;          // JSON-lines metrics file; default: <checkpoint.dir>/metrics.jsonl
  bool tensorboard = false;     // TensorBoard event files under <checkpoint.dir>/tb/
};

// Data parallelism: on GPUs, gradients are all-reduced with NCCL in buckets of about bucket_mb
// MiB while backward runs. A collective (NCCL or MPI) that takes longer than timeout_s means a
// rank was lost: the job ends with a message. bf16_grads (NCCL only) halves the bytes on the wire:
// each bucket is rounded to bf16 for the sum and widened back into the fp32 gradients.
// hierarchical reduces each bucket in the node, across nodes and in the node again (several
// nodes; not with shard_optimizer). shard_optimizer (ZeRO-1, docs/distributed.md) splits the
// fp32 master weights and the AdamW moments among the ranks. peer_copies averages the buckets
// among the GPUs of one node with their copy engines instead of NCCL (dist/peer_reducer.h).
struct DistConfig {
  double bucket_mb = 400.0;
  double timeout_s = 600.0;
  bool bf16_grads = false;
  bool hierarchical = false;
  bool shard_optimizer = false;
  bool peer_copies = false;
};

// Sequences per optimizer step, all processes together; keeps batch x length products in range.
constexpr int64_t kMaxGlobalBatch = int64_t{1} << 30;

// A default-constructed ExperimentConfig is not valid (no data, no length): parse or load one.
struct ExperimentConfig {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimConfig optim;
  CheckpointConfig checkpoint;
  LogConfig log;
  DistConfig dist;
  // model.init_from: the weights a fresh run starts from (a checkpoint, a Hugging Face folder, a
  // safetensors file); empty: the initialisation of design.md §1. The model keys the config does
  // not set are taken from the source's config where it has one; those it sets must agree.
  std::string init_from;
  std::string source;  // where it came from, for messages; not part of the configuration

  // Every key, defaults filled in; parse_experiment_config(to_yaml(), ...) gives back *this.
  std::string to_yaml() const;
  // The batch arithmetic depends on the number of processes, known only at run time; both
  // throw the config error when global_batch is not a multiple of micro_batch * world.
  int grad_accum(int world) const;
  int64_t global_batch(int world) const;  // sequences per optimizer step
  // train.steps, or the steps that train.tokens buys (rounded up); checks optim.warmup fits.
  int64_t total_steps(int world) const;
};

// Compares every key (not source).
bool operator==(const ExperimentConfig& a, const ExperimentConfig& b);
bool operator!=(const ExperimentConfig& a, const ExperimentConfig& b);

// overrides: "train.micro_batch=8", applied to the YAML tree before validation and read with
// the same rules as the file; "key=null" (or "key=") unsets an optional key.
ExperimentConfig load_experiment_config(const std::string& path,
                                        const std::vector<std::string>& overrides = {});
// source names the text in messages; its file name also names the default checkpoint.dir.
// With Sources::Ignore the model section is taken as written, without reading the files it refers
// to (model.init_from's config, the training shards for vocab_size: auto): a config stored in a
// checkpoint, whose model section is already resolved.
enum class Sources { Read, Ignore };
ExperimentConfig parse_experiment_config(const std::string& yaml_text, const std::string& source,
                                         const std::vector<std::string>& overrides = {},
                                         Sources sources = Sources::Read);

}  // namespace mamba
