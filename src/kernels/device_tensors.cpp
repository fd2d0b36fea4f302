#include "kernels/device_tensors.h"

#include <cstring>

namespace mamba {

DeviceTensors::~DeviceTensors() {
  for (void* p : owned_) be_.release(p);
}

void* DeviceTensors::keep(void* p) {
  owned_.push_back(p);
  return p;
}

void* DeviceTensors::bytes(size_t n) {
  return keep(be_.allocate(n));
}

float* DeviceTensors::f32(const std::vector<float>& host) {
  float* p = static_cast<float*>(bytes(host.size() * sizeof(float)));
  be_.upload(p, host.data(), host.size() * sizeof(float));
  return p;
}

float* DeviceTensors::f32_zeros(int64_t n) {
  float* p = static_cast<float*>(bytes(n * sizeof(float)));
  be_.fill_zero(p, n * sizeof(float));
  return p;
}

Act DeviceTensors::act(const std::vector<float>& host) {
  const Act a{bytes(host.size() * be_.act_bytes()), be_.act_type()};
  be_.to_act(a, f32(host), int64_t(host.size()));
  return a;
}

Act DeviceTensors::act_zeros(int64_t n) {
  const Act a{bytes(n * be_.act_bytes()), be_.act_type()};
  be_.fill_zero(a.data, n * be_.act_bytes());
  return a;
}

std::vector<float> DeviceTensors::read_f32(const float* device, int64_t n) const {
  std::vector<float> host(n);
  be_.download(host.data(), device, n * sizeof(float));
  return host;
}

std::vector<float> DeviceTensors::read_act(ConstAct device, int64_t n) const {
  if (device.type == ActType::F32) return read_f32(static_cast<const float*>(device.data), n);
  std::vector<uint16_t> raw(n);
  be_.download(raw.data(), device.data, n * sizeof(uint16_t));
  std::vector<float> host(n);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = uint32_t(raw[i]) << 16;
    std::memcpy(&host[i], &bits, sizeof bits);
  }
  return host;
}

}  // namespace mamba
