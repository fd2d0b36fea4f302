// The TensorBoard writer of a build with protobuf and ISA-L: Events serialized by the generated
// classes, framed as TFRecords.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "tensorboard_event.pb.h"
#include "train/tensorboard.h"
#include "train/tfrecord.h"
#include "util/error.h"

namespace mamba {

namespace {

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

class EventFile final : public TensorBoardWriter {
 public:
  EventFile(const std::string& dir, int64_t resumed_step) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    path_ = (std::filesystem::path(dir) /
             ("events.out.tfevents." + std::to_string((long long)std::time(nullptr)) + "." +
              hostname()))
                .string();
    // Appending, never truncating: a second run started in the same second on the same host
    // adds its records to the file rather than destroying the first run's.
    file_ = std::fopen(path_.c_str(), "ab");
    if (!file_) {
      throw_error("log error: cannot create the TensorBoard event file ", path_, " (",
                  std::strerror(errno), "): make ", dir, " writable or set log.tensorboard=false");
    }
    tensorboard::Event version;
    version.set_wall_time(unix_seconds());
    version.set_file_version("brain.Event:2");
    append(version);
    // A fresh run logs step 0 (its first eval); a resumed one logs from the step after.
    tensorboard::Event start;
    start.set_wall_time(unix_seconds());
    start.set_step(resumed_step == 0 ? 0 : resumed_step + 1);
    start.mutable_session_log()->set_status(tensorboard::SessionLog::START);
    append(start);
  }
  ~EventFile() override { std::fclose(file_); }

  void write(int64_t step, const Scalars& scalars) override {
    tensorboard::Event event;
    event.set_wall_time(unix_seconds());
    event.set_step(step);
    tensorboard::Summary* summary = event.mutable_summary();
    for (const auto& [tag, value] : scalars) {
      tensorboard::Summary::Value* v = summary->add_value();
      v->set_tag(tag);
      v->set_simple_value(float(value));
    }
    append(event);
  }

  const std::string& path() const override { return path_; }

 private:
  void append(const tensorboard::Event& event) {
    const std::string record = tfrecord(event.SerializeAsString());
    if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
        std::fflush(file_) != 0) {
      throw_error("log error: cannot write to the TensorBoard event file ", path_, " (",
                  std::strerror(errno),
                  "): check free space; the run stops so that no metrics are lost silently");
    }
  }

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace

std::unique_ptr<TensorBoardWriter> TensorBoardWriter::open(const std::string& dir,
                                                           const std::string&,
                                                           int64_t resumed_step) {
  return std::make_unique<EventFile>(dir, resumed_step);
}

}  // namespace mamba
