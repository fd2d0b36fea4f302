// `mamba CMD [args]`: one executable, one subcommand per job.
#include <cstdio>
#include <cstring>
#include <exception>

#include "cli/commands.h"
#include "util/error.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"train", mamba::cli::train,
     "train a model from a YAML config (mamba train CONFIG [key=value ...])"},
    {"generate", mamba::cli::generate, "sample text from a checkpoint"},
    {"eval", mamba::cli::eval, "validation loss and perplexity of a checkpoint"},
    {"export", mamba::cli::export_model,
     "write a checkpoint as a Hugging Face folder (MambaForCausalLM.from_pretrained)"},
    {"prepare", mamba::cli::prepare, "tokenize text/JSONL into HDF5 shards"},
    {"tokenize", mamba::cli::tokenize, "encode or decode text with a tokenizer (debugging aid)"},
    {"check-golden", mamba::cli::check_golden,
     "recompute a golden safetensors file and compare (CPU or GPU)"},
};

void print_help() {
  std::printf("usage: mamba COMMAND [args]   (mamba COMMAND --help for details)\n\ncommands:\n");
  for (const Command& c : kCommands) std::printf("  %-13s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(argc - 2, argv + 2);
    } catch (const mamba::Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mamba %s: internal error: %s\n", c.name, e.what());
      return 3;
    }
  }
  std::fprintf(stderr, "mamba: unknown command '%s'\n", argv[1]);
  print_help();
  return 2;
}
