#pragma once
/// @file detail/mapped_file.hpp
/// A read-only memory mapping of a whole file (POSIX mmap), the operating system's way to let
/// a service open a large index in milliseconds and share its pages between processes. Not
/// API: namespace mmrag::detail. Includes nothing of mmrag above detail/.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include "mmrag/detail/bytes.hpp"

namespace mmrag::detail {

/// The bytes of a file, mapped read-only (MAP_SHARED: pages are shared with every process
/// mapping the same file, and only the pages touched become resident).
class MappedFile {
 public:
  /// Maps `path`. Throws std::runtime_error naming the file and the OS reason.
  explicit MappedFile(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(os_error("open", path, errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      throw std::runtime_error(os_error("stat", path, err));
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      throw std::runtime_error(os_error("map", path, EISDIR));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(os_error("map", path, err));
      }
      data_ = static_cast<const char*>(p);
    }
    ::close(fd);  // the mapping keeps the file's pages reachable
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
  }

  [[nodiscard]] std::span<const char> bytes() const noexcept { return {data_, size_}; }

 private:
  const char* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace mmrag::detail
