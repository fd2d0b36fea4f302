#include "data/input_stream.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace mamba {

namespace {

constexpr size_t kInputBlock = 1 << 17;

bool has_suffix(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

z_stream* as_gz(void* p) {
  return static_cast<z_stream*>(p);
}
ZSTD_DCtx* as_zstd(void* p) {
  return static_cast<ZSTD_DCtx*>(p);
}

}  // namespace

Compression compression_of(const std::string& path) {
  if (has_suffix(path, ".gz")) return Compression::gzip;
  if (has_suffix(path, ".zst")) return Compression::zstd;
  return Compression::none;
}

std::string strip_compression_suffix(const std::string& path) {
  switch (compression_of(path)) {
    case Compression::gzip:
      return path.substr(0, path.size() - 3);
    case Compression::zstd:
      return path.substr(0, path.size() - 4);
    case Compression::none:
      break;
  }
  return path;
}

InputStream::InputStream(const std::string& path)
    : path_(path), compression_(compression_of(path)) {
  file_ = std::fopen(path.c_str(), "rb");
  if (!file_) throw_error("prepare error: cannot read ", path, ": ", std::strerror(errno));
  if (compression_ == Compression::none) return;
  in_.reset(new char[kInputBlock]);
  if (compression_ == Compression::gzip) {
    auto* z = new z_stream{};
    // 16 + MAX_WBITS: a gzip header and trailer (with its crc32 check) around deflate data.
    if (inflateInit2(z, 16 + MAX_WBITS) != Z_OK) {
      delete z;
      std::fclose(file_);
      throw_error("prepare error: cannot start gzip decompression of ", path, ": out of memory");
    }
    gz_ = z;
  } else {
    zstd_ = ZSTD_createDCtx();
    if (!zstd_) {
      std::fclose(file_);
      throw_error("prepare error: cannot start zstd decompression of ", path, ": out of memory");
    }
  }
}

InputStream::~InputStream() {
  if (gz_) {
    inflateEnd(as_gz(gz_));
    delete as_gz(gz_);
  }
  if (zstd_) ZSTD_freeDCtx(as_zstd(zstd_));
  if (file_) std::fclose(file_);
}

void InputStream::fail(const std::string& why) const {
  throw_error("prepare error: ", path_, " ", why);
}

size_t InputStream::read(char* out, size_t size) {
  if (size == 0) return 0;
  if (compression_ == Compression::none) {
    const size_t n = std::fread(out, 1, size, file_);
    if (n == 0 && std::ferror(file_)) fail("cannot be read: I/O error");
    consumed_ += n;
    return n;
  }
  // Refill the compressed input block whenever it is used up; both decoders keep their own
  // state across calls.
  const auto refill = [&] {
    if (in_pos_ < in_size_ || in_eof_) return;
    in_size_ = std::fread(in_.get(), 1, kInputBlock, file_);
    in_pos_ = 0;
    consumed_ += in_size_;
    if (in_size_ == 0) {
      if (std::ferror(file_)) fail("cannot be read: I/O error");
      in_eof_ = true;
    }
  };
  if (compression_ == Compression::zstd) {
    while (true) {
      refill();
      if (in_eof_ && in_pos_ == in_size_ && !frame_open_) {
        if (!any_frame_) fail("is empty, not zstd data: recompress it with zstd or drop .zst");
        return 0;
      }
      if (in_eof_ && in_pos_ == in_size_) {
        fail(
            "is truncated (its zstd data ends in the middle of a frame): fetch or compress it "
            "again");
      }
      ZSTD_inBuffer in{in_.get(), in_size_, in_pos_};
      ZSTD_outBuffer o{out, size, 0};
      const size_t rc = ZSTD_decompressStream(as_zstd(zstd_), &o, &in);
      if (ZSTD_isError(rc)) {
        fail(std::string("is not valid zstd data (") + ZSTD_getErrorName(rc) +
             "): the file is damaged; fetch or compress it again");
      }
      in_pos_ = in.pos;
      any_frame_ = true;
      frame_open_ = rc != 0;  // 0: a frame ended and its checksum, if any, matched
      if (o.pos > 0) return o.pos;
    }
  }
  z_stream* z = as_gz(gz_);
  while (true) {
    refill();
    if (in_eof_ && in_pos_ == in_size_ && !frame_open_) {
      if (!any_frame_) fail("is empty, not gzip data: recompress it with gzip or drop .gz");
      return 0;
    }
    if (in_eof_ && in_pos_ == in_size_) {
      fail(
          "is truncated (its gzip data ends in the middle of a stream): fetch or compress it "
          "again");
    }
    if (!frame_open_) {
      // A new member starts here (gzip files may be concatenations of members).
      if (any_frame_ && inflateReset(z) != Z_OK) fail("cannot be decompressed: zlib error");
      frame_open_ = any_frame_ = true;
    }
    z->next_in = reinterpret_cast<Bytef*>(in_.get() + in_pos_);
    z->avail_in = uInt(in_size_ - in_pos_);
    z->next_out = reinterpret_cast<Bytef*>(out);
    z->avail_out = uInt(std::min<size_t>(size, 1u << 30));
    const int rc = inflate(z, Z_NO_FLUSH);
    in_pos_ = in_size_ - z->avail_in;
    const size_t produced = size_t(reinterpret_cast<char*>(z->next_out) - out);
    if (rc == Z_STREAM_END) {
      frame_open_ = false;
    } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && produced == 0 && z->avail_in == 0)) {
      const std::string reason = z->msg ? z->msg : "zlib error " + std::to_string(rc);
      fail("is not valid gzip data (" + reason +
           "): the file is damaged; fetch or compress it again");
    }
    if (produced > 0) return produced;
  }
}

}  // namespace mamba
