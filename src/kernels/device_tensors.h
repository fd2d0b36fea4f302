// Moving host fp32 data to and from a Backend's device, in fp32 or in the activation type
// (bf16 is fp32's upper 16 bits, so reading it back is a shift on the host). Everything it
// allocates is released with it. For golden checks and tests, not for the training step.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace mamba {

class DeviceTensors {
 public:
  explicit DeviceTensors(Backend& backend) : be_(backend) {}
  ~DeviceTensors();
  DeviceTensors(const DeviceTensors&) = delete;
  DeviceTensors& operator=(const DeviceTensors&) = delete;

  float* f32(const std::vector<float>& host);
  float* f32_zeros(int64_t n);
  Act act(const std::vector<float>& host);  // rounded to the activation type on the device
  Act act_zeros(int64_t n);
  void* bytes(size_t n);

  std::vector<float> read_f32(const float* device, int64_t n) const;
  std::vector<float> read_act(ConstAct device, int64_t n) const;

 private:
  void* keep(void* p);
  Backend& be_;
  std::vector<void*> owned_;
};

}  // namespace mamba
