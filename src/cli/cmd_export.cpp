// `mamba export CHECKPOINT OUT_DIR`: a folder that transformers' from_pretrained loads.
#include <cstdio>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "train/hugging_face.h"
#include "util/error.h"

namespace mamba::cli {

const char* const kUsage =
    "usage: mamba export CHECKPOINT OUT_DIR [--dtype fp32|bf16]\n"
    "Writes OUT_DIR/config.json, model.safetensors (Hugging Face names) and the tokenizer\n"
    "files the checkpoint was trained with, so that\n"
    "  transformers.MambaForCausalLM.from_pretrained(OUT_DIR)\n"
    "loads it. CHECKPOINT is a checkpoint directory or a run directory (its newest).\n"
    "--dtype sets the weights' type in the file (default fp32, the master weights).\n";

int export_model(int argc, char** argv) {
  const Args a = parse_args("export", argc, argv, {"dtype"});
  if (const auto status = usage_exit(a, 2, kUsage)) return *status;
  const std::string dtype = a.get("dtype", "fp32");
  if (dtype != "fp32" && dtype != "bf16") {
    throw_error("mamba export: --dtype = '", dtype, "': expected fp32 or bf16");
  }
  export_hugging_face(a.positional[0], a.positional[1], dtype == "bf16" ? DType::BF16 : DType::F32);
  std::printf("exported %s to %s (%s)\n", a.positional[0].c_str(), a.positional[1].c_str(),
              dtype.c_str());
  return 0;
}

}  // namespace mamba::cli
