#include "train/tensorboard.h"

namespace mamba {

void TensorBoardWriter::write_train(const StepStats& s) {
  Scalars scalars{
      {"train/loss", s.loss},           {"train/lr", s.lr},
      {"train/grad_norm", s.grad_norm}, {"train/tokens_per_s", s.tokens_per_s},
      {"train/mem_gib", s.mem_gib},     {"train/skipped_steps", double(s.skipped_steps)}};
  if (s.mfu >= 0.0) scalars.emplace_back("train/mfu", s.mfu);
  write(s.step, scalars);
}

void TensorBoardWriter::write_eval(int64_t step, double val_loss, const SourceLosses& per_source) {
  Scalars scalars{{"val/loss", val_loss}};
  for (const auto& [name, loss] : per_source) scalars.emplace_back("val/loss_" + name, loss);
  write(step, scalars);
}

void TensorBoardWriter::write_skipped(int64_t step, int64_t skipped_steps) {
  write(step, {{"train/skipped_steps", double(skipped_steps)}});
}

}  // namespace mamba
