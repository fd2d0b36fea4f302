// Crash-safe file replacement: a reader (or a restarted run) sees either the old file or the
// complete new one, never a torn write, because the bytes go to a temporary file that is synced
// and then renamed over the target.
#pragma once
#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>

namespace mamba {

// Writes `path + ".tmp.<pid>"` with write_body, flushes and fsyncs it, renames it over `path` and
// fsyncs the parent directory so the rename itself survives a power loss. write_body only writes;
// stream errors are detected afterwards. Throws mamba::Error naming the path and the OS reason on
// any failure and removes the temporary file; an exception from write_body propagates unchanged.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write_body);
void write_file_atomic(const std::string& path, const void* data, std::size_t size);

// Makes completed renames/creations inside `dir` durable. Throws mamba::Error naming the directory.
void fsync_directory(const std::string& dir);

}  // namespace mamba
