// Experiment config: parsing, defaults, overrides, the YAML round trip, the shipped configs, and
// the one-line message of every kind of bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "train/experiment_config.h"
#include "train/trainer.h"
#include "util/error.h"

namespace mamba {
namespace {

const char* kMinimal = R"(
model:
  d_model: 64
  n_layer: 2
  vocab_size: 256
data:
  train: data/t-*.h5
  val: data/v-*.h5
  seq_len: 32
train:
  micro_batch: 4
  steps: 100
)";

ExperimentConfig parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return parse_experiment_config(text, "configs/test.yaml", overrides);
}

// The message of the mamba::Error that `run` must throw; it must be a single line.
std::string error_from(const std::function<void()>& run) {
  try {
    run();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "expected a mamba::Error";
  return "";
}

void expect_mentions(const std::string& message, const std::vector<std::string>& parts) {
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

TEST(ExperimentConfig, MinimalConfigGetsDefaults) {
  const ExperimentConfig c = parse(kMinimal);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.d_state, 16);
  EXPECT_EQ(c.model.dt_rank, 0);
  EXPECT_EQ(c.data.train, (std::vector<DataSource>{{"", "data/t-*.h5", 1.0}}));
  EXPECT_EQ(c.train.micro_batch, 4);
  EXPECT_EQ(c.train.steps, 100);
  EXPECT_FALSE(c.train.tokens);
  EXPECT_EQ(c.train.device, Device::Auto);
  EXPECT_EQ(c.train.precision, Precision::Fp32);
  EXPECT_DOUBLE_EQ(c.optim.beta2, 0.95);
  EXPECT_EQ(c.optim.schedule, Schedule::Cosine);
  EXPECT_EQ(c.checkpoint.dir, "runs/test");  // named after the config file
  EXPECT_EQ(c.checkpoint.resume, "auto");
  EXPECT_EQ(c.log.metrics, "runs/test/metrics.jsonl");
  EXPECT_EQ(c.source, "configs/test.yaml");
  EXPECT_EQ(c.grad_accum(1), 1);
  EXPECT_EQ(c.total_steps(4), 100);
}

TEST(ExperimentConfig, OverridesTakeEffect) {
  const ExperimentConfig c = parse(
      kMinimal, {"train.micro_batch=8", "optim.lr=1e-3", "model.dt_rank=6", "train.steps=null",
                 "train.tokens=2.5e6", "train.device=cpu", "train.recompute=true",
                 "data.train=other/*.h5", "log.sample_prompt=a: b", "checkpoint.dir=runs/x",
                 "data.tokenizer=tok.json", "log.sample_interval=50"});
  EXPECT_EQ(c.train.micro_batch, 8);
  EXPECT_DOUBLE_EQ(c.optim.lr, 1e-3);
  EXPECT_EQ(c.model.dt_rank, 6);
  EXPECT_FALSE(c.train.steps);
  EXPECT_EQ(c.train.tokens, 2500000);
  EXPECT_EQ(c.train.device, Device::Cpu);
  EXPECT_TRUE(c.train.recompute);
  EXPECT_EQ(c.data.train, (std::vector<DataSource>{{"", "other/*.h5", 1.0}}));
  EXPECT_EQ(c.log.sample_prompt, "a: b");
  EXPECT_EQ(c.log.metrics, "runs/x/metrics.jsonl");  // follows the overridden dir
  EXPECT_EQ(c.data.tokenizer, "tok.json");
  EXPECT_EQ(c.log.sample_interval, 50);
  // A key the file does not have, in a section it does not have.
  EXPECT_EQ(parse(kMinimal, {"optim.clip=0"}).optim.clip, 0.0);
  // The last override of a key wins.
  EXPECT_EQ(parse(kMinimal, {"train.micro_batch=2", "train.micro_batch=1"}).train.micro_batch, 1);
}

TEST(ExperimentConfig, BatchFromGlobalBatchOrGradAccum) {
  const ExperimentConfig global = parse(kMinimal, {"train.global_batch=32"});
  EXPECT_EQ(global.grad_accum(1), 8);
  EXPECT_EQ(global.grad_accum(2), 4);
  EXPECT_EQ(global.global_batch(8), 32);
  const ExperimentConfig accum = parse(kMinimal, {"train.grad_accum=3"});
  EXPECT_EQ(accum.grad_accum(2), 3);
  EXPECT_EQ(accum.global_batch(2), 24);
}

TEST(ExperimentConfig, TokenBudgetDerivesSteps) {
  // 4 sequences x 32 tokens x 2 ranks = 256 tokens a step; 1000 tokens need 4 steps (rounded up).
  const ExperimentConfig c = parse(kMinimal, {"train.steps=", "train.tokens=1000"});
  EXPECT_EQ(c.total_steps(2), 4);
  EXPECT_EQ(c.total_steps(1), 8);
  const ExperimentConfig long_warmup =
      parse(kMinimal, {"train.steps=", "train.tokens=1000", "optim.warmup=6"});
  EXPECT_EQ(long_warmup.total_steps(1), 8);
  expect_mentions(error_from([&] { long_warmup.total_steps(2); }),
                  {"optim.warmup = 6", "configs/test.yaml", "4 steps", "train.tokens = 1000"});
}

TEST(ExperimentConfig, RoundTripsThroughYaml) {
  ExperimentConfig c = parse(
      kMinimal, {"train.global_batch=16", "train.steps=", "train.tokens=3e9", "model.norm_eps=1e-6",
                 "optim.lr=3e-3", "optim.warmup=7", "optim.schedule=linear", "train.precision=bf16",
                 "optim.eps=1.5e-8", "model.dt_rank=5"});
  c.log.sample_prompt = "line one\nnull: \"quoted\" # not a comment";
  c.data.val = {{"", "*.h5", 1.0}};
  c.checkpoint.resume = "null";
  c.optim.beta1 = 0.1 + 0.2;  // not a short decimal
  const std::string yaml = c.to_yaml();
  const ExperimentConfig back = parse_experiment_config(yaml, "elsewhere.yaml", {});
  EXPECT_TRUE(back == c) << yaml;
  EXPECT_EQ(back.to_yaml().substr(back.to_yaml().find('\n')), yaml.substr(yaml.find('\n')));
  // The defaults of the minimal config survive too, auto and unset keys included.
  const ExperimentConfig minimal = parse(kMinimal);
  EXPECT_TRUE(parse_experiment_config(minimal.to_yaml(), "x.yaml", {}) == minimal);
  // and the comparison does look at the values.
  ExperimentConfig changed = minimal;
  changed.model.norm_eps = 2e-5f;
  EXPECT_TRUE(changed != minimal);
}

TEST(ExperimentConfig, EveryShippedConfigParses) {
  const std::filesystem::path dir =
      std::filesystem::path(MAMBA_TEST_DATA) / ".." / ".." / "configs";
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    names.push_back(entry.path().filename().string());
    SCOPED_TRACE(entry.path().string());
    const ExperimentConfig c = load_experiment_config(entry.path().string());
    EXPECT_GT(c.total_steps(1), 0);
    EXPECT_GT(c.total_steps(2), 0);
    EXPECT_TRUE(parse_experiment_config(c.to_yaml(), c.source, {}) == c);
  }
  for (const char* name : {"tiny.yaml", "mamba-130m.yaml", "mamba-370m.yaml", "mamba-790m.yaml",
                           "mamba-1.4b.yaml", "mamba-2.8b.yaml"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  const ExperimentConfig small = load_experiment_config((dir / "mamba-130m.yaml").string());
  EXPECT_EQ(small.model.padded_vocab(), 50280);
  EXPECT_EQ(small.global_batch(2) * small.data.seq_len, 524288);
  EXPECT_DOUBLE_EQ(small.optim.lr, 3e-3);
  const ExperimentConfig tiny = load_experiment_config((dir / "tiny.yaml").string());
  EXPECT_EQ(tiny.model.padded_vocab(), 50264);
  EXPECT_EQ(tiny.train.device, Device::Auto);
}

TEST(ExperimentConfig, MalformedYamlNamesFileAndLine) {
  const std::string message = error_from([] { parse("model:\n  d_model: [64\ntrain: {}\n"); });
  expect_mentions(message, {"config error", "malformed YAML", "configs/test.yaml", "line 3"});
  expect_mentions(error_from([] { parse("model: d_model: 64\n"); }),
                  {"configs/test.yaml", "line 1, column"});
}

TEST(ExperimentConfig, MissingFileNamesFile) {
  expect_mentions(error_from([] { load_experiment_config("configs/no-such-config.yaml"); }),
                  {"config error", "configs/no-such-config.yaml", "No such file"});
}

TEST(ExperimentConfig, UnknownKeySuggestsClosest) {
  const std::string text = std::string(kMinimal) + "  micro_bach: 8\n";
  EXPECT_EQ(error_from([&] { parse(text); }),
            "config error: unknown key train.micro_bach in configs/test.yaml: did you mean "
            "train.micro_batch?");
  // A key in the wrong section points to its home; an unknown section to the closest section.
  expect_mentions(error_from([&] { parse(std::string(kMinimal) + "  lr: 0.1\n"); }),
                  {"unknown key train.lr", "did you mean optim.lr?"});
  expect_mentions(error_from([&] { parse(std::string(kMinimal) + "optimizer:\n  lr: 0.1\n"); }),
                  {"unknown key optimizer", "configs/test.yaml", "did you mean optim?"});
}

TEST(ExperimentConfig, DuplicateKeyIsRejected) {
  expect_mentions(error_from([] { parse(std::string(kMinimal) + "  steps: 5\n"); }),
                  {"duplicate key train.steps", "configs/test.yaml"});
}

TEST(ExperimentConfig, WrongTypeNamesKeyAndValue) {
  std::string text = kMinimal;
  text.replace(text.find("micro_batch: 4"), 14, "micro_batch: abc");
  EXPECT_EQ(error_from([&] { parse(text); }),
            "config error: train.micro_batch = abc in configs/test.yaml: expected a positive "
            "integer up to 1048576");
  expect_mentions(error_from([] { parse(kMinimal, {"train.recompute=yes"}); }),
                  {"train.recompute = yes", "expected true or false"});
  expect_mentions(error_from([] { parse(kMinimal, {"train.device=gpu"}); }),
                  {"train.device = gpu", "one of auto, cpu, cuda"});
  expect_mentions(error_from([] { parse(kMinimal, {"train.micro_batch=4.5"}); }),
                  {"train.micro_batch = 4.5", "positive integer"});
  expect_mentions(error_from([] { parse(std::string(kMinimal) + "optim:\n  lr: [1, 2]\n"); }),
                  {"optim.lr = a list", "configs/test.yaml", "positive number"});
  expect_mentions(error_from([] { parse(std::string(kMinimal) + "log: 5\n"); }),
                  {"log = 5", "configs/test.yaml", "mapping"});
}

// What the trainer asks the model to keep for backward, and the one combination refused.
TEST(ExperimentConfig, ActivationMemoryFromRecomputeAndKeepLayerInputs) {
  EXPECT_EQ(activation_memory(parse(kMinimal).train), ActivationMemory::Rebuild);
  EXPECT_EQ(activation_memory(parse(kMinimal, {"train.keep_layer_inputs=true"}).train),
            ActivationMemory::KeepInputs);
  EXPECT_EQ(activation_memory(parse(kMinimal, {"train.recompute=true"}).train),
            ActivationMemory::Recompute);
  const std::string both = std::string(kMinimal) + "  recompute: true\n";
  expect_mentions(error_from([&] { parse(both, {"train.keep_layer_inputs=true"}); }),
                  {"train.recompute = true in configs/test.yaml",
                   "train.keep_layer_inputs = true in configs/test.yaml (command-line override)",
                   "set one of them to false"});
}

TEST(ExperimentConfig, NegativeLrIsRejected) {
  EXPECT_EQ(error_from([] { parse(std::string(kMinimal) + "optim:\n  lr: -0.001\n"); }),
            "config error: optim.lr = -0.001 in configs/test.yaml: expected a positive number");
}

TEST(ExperimentConfig, OutOfRangeValuesAreRejected) {
  struct Case {
    std::vector<std::string> overrides;
    std::vector<std::string> mentions;
  };
  const Case cases[] = {
      {{"train.micro_batch=0"}, {"train.micro_batch = 0", "positive integer"}},
      {{"optim.beta2=1"}, {"optim.beta2 = 1", "[0, 1)"}},
      {{"optim.beta1=-0.1"}, {"optim.beta1 = -0.1", "[0, 1)"}},
      {{"optim.lr=1e-3", "optim.min_lr=1e-2"}, {"optim.min_lr = 0.01", "optim.lr = 0.001"}},
      {{"optim.warmup=101"}, {"optim.warmup = 101", "train.steps = 100"}},
      {{"model.dt_rank=0"}, {"model.dt_rank = 0", "positive integer or auto"}},
      {{"model.norm_eps=nan"}, {"model.norm_eps = nan", "positive number"}},
      {{"model.d_model=99999999999"}, {"model.d_model = 99999999999"}},
      {{"data.seq_len=-1"}, {"data.seq_len = -1"}},
      {{"optim.weight_decay=-1"}, {"optim.weight_decay = -1", "non-negative"}},
      {{"checkpoint.dir="}, {"checkpoint.dir = null", "non-empty string"}},
      {{"train.tokens=1000"}, {"train.steps = 100", "train.tokens = 1000", "only one"}},
      {{"train.steps="}, {"train.steps and train.tokens", "exactly one"}},
      {{"train.global_batch=8", "train.grad_accum=2"}, {"train.global_batch", "train.grad_accum"}},
      {{"train.global_batch=10"}, {"train.global_batch = 10", "multiple of train.micro_batch = 4"}},
      {{"train.device=cpu", "train.precision=bf16"}, {"train.precision = bf16", "fp32"}},
      {{"train.device=cpu", "train.tune_gemms=true"},
       {"train.tune_gemms = true", "train.tune_gemms=false"}},
      {{"train.device=cpu", "dist.peer_copies=true"},
       {"dist.peer_copies = true", "dist.peer_copies=false"}},
      {{"train.device=cuda", "dist.peer_copies=true", "dist.bf16_grads=true"},
       {"dist.peer_copies = true", "dist.bf16_grads = true", "one of them"}},
      {{"train.device=cuda", "dist.peer_copies=true", "dist.hierarchical=true"},
       {"dist.peer_copies = true", "dist.hierarchical = true", "one of them"}},
      {{"train.device=cuda", "dist.peer_copies=true", "dist.shard_optimizer=true"},
       {"dist.peer_copies = true", "dist.shard_optimizer = true", "one of them"}},
      {{"train.device=cuda", "dist.shard_optimizer=true", "dist.bf16_grads=true"},
       {"dist.shard_optimizer = true", "dist.bf16_grads = true", "one of them"}},
      {{"data.val=null"}, {"data.val"}},
      {{"log.sample_interval=10"}, {"log.sample_interval = 10", "data.tokenizer"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.overrides.back());
    const std::string message = error_from([&] { parse(kMinimal, c.overrides); });
    expect_mentions(message, c.mentions);
    expect_mentions(message, {"config error", "configs/test.yaml"});
  }
  // Values given on the command line are reported as such.
  expect_mentions(error_from([] { parse(kMinimal, {"train.micro_batch=0"}); }),
                  {"in configs/test.yaml (command-line override)"});
  // A required key absent from the file.
  std::string text = kMinimal;
  text.erase(text.find("  train: data/t-*.h5\n"), 21);
  expect_mentions(error_from([&] { parse(text); }),
                  {"missing key data.train", "configs/test.yaml"});
}

// data.train as a list of sources, each with its own line of YAML.
std::string with_train_sources(const std::string& sources) {
  std::string text = kMinimal;
  const std::string glob = "  train: data/t-*.h5\n";
  return text.replace(text.find(glob), glob.size(), "  train:\n" + sources);
}

TEST(ExperimentConfig, MixtureOfSources) {
  const ExperimentConfig c =
      parse(with_train_sources("    - {name: web, path: \"web/train-*.h5\", weight: 0.7}\n"
                               "    - name: code\n      path: code/train-*.h5\n      weight: 0.3\n"
                               "    - {name: books.v2, path: books/*.h5}\n"));
  EXPECT_EQ(c.data.train, (std::vector<DataSource>{{"web", "web/train-*.h5", 0.7},
                                                   {"code", "code/train-*.h5", 0.3},
                                                   {"books.v2", "books/*.h5", 1.0}}));
  EXPECT_TRUE(is_mixture(c.data.train));
  EXPECT_FALSE(is_mixture(c.data.val));
  // Printed and read back (as a checkpoint stores it), the mixture is the same.
  const ExperimentConfig back = parse_experiment_config(c.to_yaml(), "elsewhere.yaml", {});
  EXPECT_TRUE(back == c) << c.to_yaml();
  // An override replaces the mixture with a glob.
  EXPECT_EQ(
      parse(with_train_sources("    - {name: a, path: x}\n"), {"data.train=y/*.h5"}).data.train,
      (std::vector<DataSource>{{"", "y/*.h5", 1.0}}));
}

TEST(ExperimentConfig, BadMixturesGetOneLineErrors) {
  struct Case {
    std::string sources;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {"    - {name: web, path: w, weight: 0}\n", {"data.train[0].weight = 0", "> 0"}},
      {"    - {name: web, path: w, weight: 1}\n    - {name: code, path: c, weight: -0.5}\n",
       {"data.train[1].weight = -0.5", "> 0"}},
      {"    - {name: web, path: w, weight: nan}\n", {"data.train[0].weight = nan", "finite"}},
      {"    - {name: web, path: w, weight: .inf}\n", {"data.train[0].weight = .inf", "finite"}},
      {"    - {name: web, path: w, weight: lots}\n", {"data.train[0].weight = lots"}},
      {"    - {name: web, path: w}\n    - {name: web, path: v}\n",
       {"data.train[1].name = web", "data.train[0].name", "own name"}},
      {"    - {path: w, weight: 1}\n", {"missing key data.train[0].name"}},
      {"    - {name: web, weight: 1}\n", {"missing key data.train[0].path"}},
      {"    - {name: web, path: \"\"}\n", {"data.train[0].path = \"\""}},
      {"    - {name: \"my web\", path: w}\n", {"data.train[0].name = my web", "letters"}},
      {"    - {name: web, path: w, wieght: 1}\n",
       {"unknown key data.train[0].wieght", "did you mean data.train[0].weight?"}},
      {"    - web/train-*.h5\n", {"data.train[0] = web/train-*.h5", "mapping"}},
      {"    []\n", {"data.train = a list", "list of sources"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.sources);
    const std::string message = error_from([&] { parse(with_train_sources(c.sources)); });
    expect_mentions(message, c.mentions);
    expect_mentions(message, {"config error", "configs/test.yaml"});
  }
}

TEST(ExperimentConfig, GlobalBatchMustDivideForWorld) {
  const ExperimentConfig c = parse(kMinimal, {"train.global_batch=24"});
  EXPECT_EQ(c.grad_accum(3), 2);
  EXPECT_EQ(error_from([&] { c.grad_accum(4); }),
            "config error: train.global_batch = 24 in configs/test.yaml: expected a multiple of "
            "train.micro_batch x world = 4 x 4 = 16");
  expect_mentions(error_from([&] { c.total_steps(4); }), {"train.global_batch = 24"});
}

TEST(ExperimentConfig, OverrideWithoutEqualsIsRejected) {
  expect_mentions(error_from([] { parse(kMinimal, {"train.micro_batch"}); }),
                  {"config error", "train.micro_batch", "key=value"});
  expect_mentions(error_from([] { parse(kMinimal, {"=8"}); }), {"=8", "key=value"});
}

TEST(ExperimentConfig, UnknownOverrideKeySuggestsClosest) {
  EXPECT_EQ(error_from([] { parse(kMinimal, {"train.micro_bach=8"}); }),
            "config error: unknown key train.micro_bach in command-line override "
            "train.micro_bach=8: did you mean train.micro_batch?");
  expect_mentions(error_from([] { parse(kMinimal, {"train=8"}); }), {"unknown key train "});
}

}  // namespace
}  // namespace mamba
