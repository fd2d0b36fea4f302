#include "io/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "io/ordered_read.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace mamba {

// Tensor bytes are copied straight from and to memory, which is only correct on a little-endian
// host (x86-64, AArch64).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes little-endian");

namespace {

using nlohmann::json;

struct DTypeEntry {
  DType dtype;
  const char* name;
  std::size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},   {DType::U64, "U64", 8},
    {DType::U32, "U32", 4},   {DType::U16, "U16", 2}, {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& entry_of(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  throw_error("internal error: unknown DType value ", static_cast<int>(dtype));
}

std::string supported_dtypes() {
  std::string names;
  for (const DTypeEntry& e : kDTypes) names += std::string(names.empty() ? "" : " ") + e.name;
  return names;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

std::vector<uint8_t> read_whole_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    throw_error("cannot open safetensors file ", path, " (", std::strerror(errno),
                "); check the path and permissions");
  }
  struct stat st;
  if (::fstat(::fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fclose(f);
    throw_error("cannot read safetensors file ", path, ": not a regular file; check the path");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  const size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f);
  const int err = errno;
  std::fclose(f);
  if (got != bytes.size()) {
    throw_error("cannot read safetensors file ", path, " (", std::strerror(err), " after ", got,
                " of ", bytes.size(), " bytes); check the disk or copy the file again");
  }
  return bytes;
}

// Elements are copied through memcpy because tensor offsets need not be aligned.
template <typename Src, typename Dst, typename Convert>
void convert_all(const uint8_t* src, int64_t n, Dst* dst, Convert convert) {
  for (int64_t i = 0; i < n; ++i) {
    Src v;
    std::memcpy(&v, src + i * sizeof(Src), sizeof(Src));
    dst[i] = convert(v);
  }
}

template <typename Src, typename Dst>
void widen_all(const uint8_t* src, int64_t n, Dst* dst) {
  convert_all<Src>(src, n, dst, [](Src v) { return static_cast<Dst>(v); });
}

float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bf16_to_f32(uint16_t h) {
  return bits_to_float(static_cast<uint32_t>(h) << 16);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // Subnormal halves are normal floats; ldexp gets the value exactly.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return bits_to_float(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

}  // namespace

const char* dtype_name(DType dtype) {
  return entry_of(dtype).name;
}
std::size_t dtype_size(DType dtype) {
  return entry_of(dtype).size;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// Parses and validates the JSON header text of a file whose data section has data_size bytes.
void parse_header(const std::string& where, const char* text, size_t size, uint64_t data_size,
                  std::map<std::string, TensorInfo>& tensors,
                  std::map<std::string, std::string>& metadata) {
  json header;
  try {
    header = json::parse(text, text + size);
  } catch (const json::exception& e) {
    throw_error(where, ": header is not valid JSON (", e.what(),
                "); the file is corrupt or not safetensors");
  }
  if (!header.is_object()) {
    throw_error(where, ": header is a JSON ", header.type_name(),
                ", not an object; the file is corrupt or not safetensors");
  }

  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const json& value = item.value();
    if (name == "__metadata__") {
      if (!value.is_object()) throw_error(where, ": __metadata__ is not a JSON object");
      for (const auto& m : value.items()) {
        if (!m.value().is_string()) {
          throw_error(where, ": __metadata__ value of '", m.key(), "' is a ", m.value().type_name(),
                      ", but safetensors metadata values must be strings");
        }
        metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }

    const std::string bad = where + ": tensor '" + name + "' ";
    const std::string fix = "; the file is corrupt or was written by an incompatible tool";
    if (!value.is_object()) throw_error(bad, "has a JSON ", value.type_name(), " entry", fix);

    const auto dtype_it = value.find("dtype");
    if (dtype_it == value.end() || !dtype_it->is_string()) {
      throw_error(bad, "has no string field \"dtype\"", fix);
    }
    const std::string dtype_str = dtype_it->get<std::string>();
    const DTypeEntry* dtype = nullptr;
    for (const DTypeEntry& e : kDTypes) {
      if (dtype_str == e.name) dtype = &e;
    }
    if (dtype == nullptr) {
      throw_error(bad, "has unsupported dtype \"", dtype_str, "\" (supported: ", supported_dtypes(),
                  "); convert the checkpoint to one of these");
    }

    const auto shape_it = value.find("shape");
    if (shape_it == value.end() || !shape_it->is_array()) {
      throw_error(bad, "has no array field \"shape\"", fix);
    }
    TensorInfo info{dtype->dtype, {}, 0, 0};
    int64_t numel = 1;
    for (const json& d : *shape_it) {
      const int64_t max = std::numeric_limits<int64_t>::max();
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(max)) {
        throw_error(bad, "has shape entry ", d.dump(), ", not a non-negative integer", fix);
      }
      const int64_t dim = d.get<int64_t>();
      if (dim != 0 && numel > max / dim) throw_error(bad, "has a shape too large to address", fix);
      numel *= dim;
      info.shape.push_back(dim);
    }

    const auto offsets_it = value.find("data_offsets");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      throw_error(bad, "needs \"data_offsets\": [begin, end] with non-negative integers", fix);
    }
    info.begin = (*offsets_it)[0].get<uint64_t>();
    info.end = (*offsets_it)[1].get<uint64_t>();
    if (info.end < info.begin) {
      throw_error(bad, "has data_offsets [", info.begin, ", ", info.end,
                  "] that end before they begin", fix);
    }
    if (info.end > data_size) {
      throw_error(bad, "has data_offsets [", info.begin, ", ", info.end, "] past the end of the ",
                  data_size, "-byte data section; the file is truncated, copy or export it again");
    }
    const uint64_t span = info.end - info.begin;
    if (span % dtype->size != 0 || span / dtype->size != static_cast<uint64_t>(numel)) {
      throw_error(bad, "has shape ", shape_str(info.shape), " of ", dtype->name, " (", numel,
                  " elements of ", dtype->size, " bytes) but its data_offsets span ", span,
                  " bytes; the file is truncated or corrupt, copy or export it again");
    }
    tensors.emplace(name, std::move(info));
  }
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  bytes_ = read_whole_file(path);
  const std::string where = "safetensors file " + path;
  if (bytes_.size() < 8) {
    throw_error(where, " is ", bytes_.size(),
                " bytes, shorter than the 8-byte header length; the file is truncated or not "
                "safetensors");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes_[i];
  if (header_len > bytes_.size() - 8) {
    throw_error(where, ": header length ", header_len, " exceeds the ", bytes_.size() - 8,
                " bytes that follow it; the file is truncated or not safetensors");
  }
  data_start_ = 8 + static_cast<size_t>(header_len);
  const uint64_t data_size = bytes_.size() - data_start_;

  parse_header(where, reinterpret_cast<const char*>(bytes_.data()) + 8, size_t(header_len),
               data_size, tensors_, metadata_);
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw_error("safetensors file ", path_, " has no tensor '", name,
                "'; check that the file matches this model");
  }
  return it->second;
}

void SafetensorsReader::check_shape(const std::string& name,
                                    const std::vector<int64_t>& shape) const {
  const TensorInfo& t = info(name);
  if (!shape.empty() && shape != t.shape) {
    throw_error("safetensors file ", path_, ": tensor '", name, "' has shape ", shape_str(t.shape),
                " but ", shape_str(shape), " was expected; check that the file matches this model");
  }
}

std::vector<float> SafetensorsReader::read_f32(const std::string& name,
                                               const std::vector<int64_t>& shape) const {
  check_shape(name, shape);
  std::vector<float> out(static_cast<size_t>(info(name).numel()));
  read_f32_into(name, out.data(), static_cast<int64_t>(out.size()));
  return out;
}

void SafetensorsReader::read_f32_into(const std::string& name, float* dst, int64_t numel) const {
  const TensorInfo& t = info(name);
  if (numel != t.numel()) {
    throw_error("safetensors file ", path_, ": tensor '", name, "' has ", t.numel(),
                " elements (shape ", shape_str(t.shape), ") but ", numel,
                " were expected; check that the file matches this model");
  }
  const uint8_t* src = data(t);
  switch (t.dtype) {
    case DType::F32:
      if (numel > 0) std::memcpy(dst, src, static_cast<size_t>(numel) * sizeof(float));
      return;
    case DType::F64:
      return widen_all<double>(src, numel, dst);
    case DType::BF16:
      return convert_all<uint16_t>(src, numel, dst, bf16_to_f32);
    case DType::F16:
      return convert_all<uint16_t>(src, numel, dst, f16_to_f32);
    default:
      throw_error("safetensors file ", path_, ": tensor '", name, "' has dtype ",
                  dtype_name(t.dtype), ", expected a float dtype (F32, F16, BF16, F64)");
  }
}

std::vector<int64_t> SafetensorsReader::read_i64(const std::string& name,
                                                 const std::vector<int64_t>& shape) const {
  check_shape(name, shape);
  const TensorInfo& t = info(name);
  std::vector<int64_t> out(static_cast<size_t>(t.numel()));
  const uint8_t* src = data(t);
  const int64_t n = t.numel();
  switch (t.dtype) {
    case DType::I64:
      widen_all<int64_t>(src, n, out.data());
      break;
    case DType::I32:
      widen_all<int32_t>(src, n, out.data());
      break;
    case DType::I16:
      widen_all<int16_t>(src, n, out.data());
      break;
    case DType::I8:
      widen_all<int8_t>(src, n, out.data());
      break;
    case DType::U32:
      widen_all<uint32_t>(src, n, out.data());
      break;
    case DType::U16:
      widen_all<uint16_t>(src, n, out.data());
      break;
    case DType::U8:
    case DType::BOOL:
      widen_all<uint8_t>(src, n, out.data());
      break;
    default:
      throw_error("safetensors file ", path_, ": tensor '", name, "' has dtype ",
                  dtype_name(t.dtype),
                  ", expected an integer dtype (I64, I32, I16, I8, U32, U16, U8, BOOL)");
  }
  return out;
}

std::vector<uint16_t> to_bf16(const float* src, int64_t n) {
  std::vector<uint16_t> out(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, src + i, sizeof bits);
    if (std::isnan(src[i])) {
      out[size_t(i)] = uint16_t((bits >> 16) | 0x40);  // stays a NaN after truncation
    } else {
      out[size_t(i)] = uint16_t((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
    }
  }
  return out;
}

FileDigest SafetensorsReader::digest() const {
  DigestBuilder digest;
  digest.add(bytes_.data(), bytes_.size());
  return digest.digest();
}

SafetensorsStream::SafetensorsStream(const std::string& path) : path_(path) {
  const std::string where = "safetensors file " + path;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    throw_error("cannot open safetensors file ", path, " (", std::strerror(errno),
                "); check the path and permissions");
  }
  struct stat st;
  uint8_t len[8];
  std::string header;
  const bool regular = ::fstat(::fileno(f), &st) == 0 && S_ISREG(st.st_mode);
  const uint64_t file_size = regular ? uint64_t(st.st_size) : 0;
  const bool has_len = regular && file_size >= 8 && std::fread(len, 1, 8, f) == 8;
  uint64_t header_len = 0;
  for (int i = 7; has_len && i >= 0; --i) header_len = (header_len << 8) | len[i];
  const bool fits = has_len && header_len <= file_size - 8;
  if (fits) {
    header.resize(size_t(header_len));
    if (std::fread(header.data(), 1, header.size(), f) != header.size()) header.clear();
  }
  std::fclose(f);
  if (!regular) throw_error("cannot read safetensors file ", path, ": not a regular file");
  if (!has_len) {
    throw_error(where, " is ", file_size,
                " bytes, shorter than the 8-byte header length; the file is truncated or not "
                "safetensors");
  }
  if (!fits) {
    throw_error(where, ": header length ", header_len, " exceeds the ", file_size - 8,
                " bytes that follow it; the file is truncated or not safetensors");
  }
  if (header.size() != header_len) throw_error("cannot read the header of ", where);
  data_start_ = 8 + header_len;
  parse_header(where, header.data(), header.size(), file_size - data_start_, tensors_, metadata_);
}

const TensorInfo& SafetensorsStream::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw_error("safetensors file ", path_, " has no tensor '", name,
                "'; check that the file matches this model");
  }
  return it->second;
}

FileDigest SafetensorsStream::read(const Sink& sink, size_t chunk_bytes, int threads) const {
  return read_file_in_order(
      path_, chunk_bytes, threads, [&](uint64_t offset, const uint8_t* data, size_t size) {
        for (const auto& [name, t] : tensors_) {
          const uint64_t lo = std::max(offset, data_start_ + t.begin);
          const uint64_t hi = std::min(offset + size, data_start_ + t.end);
          if (lo < hi) sink(name, t, lo - data_start_ - t.begin, data + (lo - offset), hi - lo);
        }
      });
}

namespace {

// The header bytes of a file of these tensors, and each tensor's data size.
std::string header_of(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata,
                      std::vector<uint64_t>& sizes, bool need_data) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name)) {
      throw_error("cannot write safetensors file ", path, ": tensor name '", t.name,
                  "' is reserved or used twice");
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) {
        throw_error("cannot write safetensors file ", path, ": tensor '", t.name,
                    "' has negative dimension in shape ", shape_str(t.shape));
      }
      numel *= static_cast<uint64_t>(d);
    }
    const uint64_t size = numel * dtype_size(t.dtype);
    if (need_data && size > 0 && t.data == nullptr) {
      throw_error("cannot write safetensors file ", path, ": tensor '", t.name, "' has no data");
    }
    json entry;
    entry["dtype"] = dtype_name(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + size};
    header[t.name] = std::move(entry);
    sizes.push_back(size);
    offset += size;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw_error("cannot write safetensors file ", path, ": ", e.what(),
                "; tensor names and metadata must be valid UTF-8");
  }
  // Padding keeps the data section 8-byte aligned for readers that map the file.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char(uint8_t(text.size() >> (8 * i)));
  return bytes + text;
}

// fetch null: the tensors' data are host memory, written as they are.
FileDigest write_tensors(const std::string& path, const std::vector<TensorView>& tensors,
                         const std::map<std::string, std::string>& metadata,
                         const FetchBytes* fetch, size_t chunk_bytes) {
  std::vector<uint64_t> sizes;
  const std::string head = header_of(path, tensors, metadata, sizes, true);
  DigestBuilder digest;
  write_file_atomic(path, [&](std::FILE* f) {
    auto put = [&](const void* data, size_t size) {
      std::fwrite(data, 1, size, f);
      digest.add(data, size);
    };
    put(head.data(), head.size());
    std::vector<uint8_t> chunk(fetch ? chunk_bytes : 0);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!fetch) {
        if (sizes[i] > 0) put(tensors[i].data, sizes[i]);
        continue;
      }
      const auto* src = static_cast<const uint8_t*>(tensors[i].data);
      for (uint64_t done = 0; done < sizes[i]; done += chunk.size()) {
        const size_t n = size_t(std::min<uint64_t>(chunk.size(), sizes[i] - done));
        (*fetch)(chunk.data(), src + done, n);
        put(chunk.data(), n);
      }
    }
  });
  return digest.digest();
}

}  // namespace

std::string safetensors_header(const std::string& path, const std::vector<TensorView>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::vector<uint64_t> sizes;
  return header_of(path, tensors, metadata, sizes, false);
}

FileDigest write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  return write_tensors(path, tensors, metadata, nullptr, 0);
}

FileDigest write_safetensors_fetched(const std::string& path,
                                     const std::vector<TensorView>& tensors,
                                     const std::map<std::string, std::string>& metadata,
                                     const FetchBytes& fetch, size_t chunk_bytes) {
  if (chunk_bytes == 0) throw_error("internal error: write_safetensors_fetched with no chunk");
  return write_tensors(path, tensors, metadata, &fetch, chunk_bytes);
}

}  // namespace mamba
