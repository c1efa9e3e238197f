#include "broker/prompt/answer_file.hpp"

#include "broker/identity/process_reader.hpp"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace pktbroker {
namespace fs = std::filesystem;

namespace {

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string utc_text(std::chrono::system_clock::time_point at) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(at);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::optional<std::chrono::system_clock::time_point> parse_utc(const std::string& text) {
  std::tm utc{};
  const char* rest = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &utc);
  if (rest == nullptr || *rest != '\0') return std::nullopt;
  return std::chrono::system_clock::from_time_t(::timegm(&utc));
}

// A duration counts from now: the file may be written again before it ends.
std::string absolute_until(const std::string& text) {
  using namespace std::chrono;
  if (parse_utc(text)) return text;
  std::uint64_t count = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  static const std::map<std::string_view, seconds, std::less<>> units{
      {"s", seconds(1)}, {"m", minutes(1)}, {"h", hours(1)}, {"d", days(1)}};
  const auto unit = units.find(std::string_view(end, text.data() + text.size() - end));
  if (error != std::errc() || end == text.data() || unit == units.end() || count > 3650 * 86400) {
    throw AnswerFileError(
        "until must be a duration (90s, 5m, 2h, 7d) or a UTC time like 2026-12-01T18:00:00Z");
  }
  return utc_text(system_clock::now() + count * unit->second);
}

// Past its end: an absolute until: that has passed, or an app-exit process gone.
bool ended(const YAML::Node& rule) {
  const YAML::Node until = rule["until"];
  if (!until) return false;
  if (until.IsMap()) {
    try {
      return process_start_ticks(until["app-exit"].as<std::uint32_t>()) !=
             until["start"].as<std::uint64_t>();
    } catch (const YAML::Exception&) {
      return false;  // not ours to judge: the loader reports it
    }
  }
  const auto at = until.IsScalar() ? parse_utc(until.Scalar()) : std::nullopt;
  return at && *at <= std::chrono::system_clock::now();
}

YAML::Node load_rules(const fs::path& path, const std::optional<std::string>& text) {
  if (!text) return YAML::Node(YAML::NodeType::Sequence);
  try {
    const YAML::Node root = YAML::Load(*text);
    if (root.IsNull()) return YAML::Node(YAML::NodeType::Sequence);
    if (root.IsMap() && (!root["rules"] || root["rules"].IsNull())) {
      return YAML::Node(YAML::NodeType::Sequence);
    }
    if (root.IsMap() && root["rules"].IsSequence()) return root["rules"];
  } catch (const YAML::Exception& error) {
    throw AnswerFileError(path.string() + " is not YAML (" + error.msg + "); fix or remove it");
  }
  throw AnswerFileError(path.string() + " must hold rules: [...]; fix or remove it");
}

std::string emit(std::uint32_t uid, const YAML::Node& rules) {
  YAML::Emitter out;
  out << YAML::Comment("Written by pktbrokerd: uid " + std::to_string(uid) +
                       "'s answers to ask prompts (pktbrokerctl add-rule / delete-rule).");
  out << YAML::BeginMap << YAML::Key << "rules" << YAML::Value << rules << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

void throw_errno(const std::string& what) {
  throw AnswerFileError(what + ": " + std::strerror(errno));
}

}  // namespace

std::string glob_literal(std::string_view text) {
  std::string literal;
  for (const char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') literal += '\\';
    literal += c;
  }
  return literal;
}

AnswerFile::AnswerFile(const fs::path& config, std::uint32_t uid)
    : path_(answer_file(config, uid)), uid_(uid) {}

std::string AnswerFile::add(const AnswerRule& spec) {
  const auto text = read_text(path_);
  YAML::Node kept(YAML::NodeType::Sequence);
  unsigned long last = 0;
  const std::string prefix = "ans-u" + std::to_string(uid_) + "-";
  for (const YAML::Node& rule : load_rules(path_, text)) {
    if (ended(rule)) continue;
    kept.push_back(rule);
    const std::string name = rule["name"] ? rule["name"].as<std::string>("") : "";
    unsigned long number = 0;
    if (name.starts_with(prefix) &&
        std::from_chars(name.data() + prefix.size(), name.data() + name.size(), number).ec ==
            std::errc()) {
      last = std::max(last, number);
    }
  }
  if (kept.size() >= max_rules) {
    throw AnswerFileError("uid " + std::to_string(uid_) + " has " + std::to_string(max_rules) +
                          " answer rules already; delete some first");
  }
  if (spec.match.size() > max_match) {
    throw AnswerFileError("the match is longer than " + std::to_string(max_match) + " bytes");
  }
  YAML::Node match;
  try {
    match = YAML::Load(spec.match.empty() ? "{}" : spec.match);
  } catch (const YAML::Exception& error) {
    throw AnswerFileError("the match is not YAML: " + error.msg);
  }
  if (!match.IsMap()) {
    throw AnswerFileError("the match must be a mapping, like {proto: tcp, dport: 443}");
  }
  if (match["uid"]) {
    if (!match["uid"].IsScalar() || match["uid"].Scalar() != std::to_string(uid_)) {
      throw AnswerFileError("an answer rule of uid " + std::to_string(uid_) +
                            " matches that uid alone");
    }
  } else {
    match["uid"] = uid_;
  }
  match.SetStyle(YAML::EmitterStyle::Flow);
  YAML::Node rule;
  const std::string name = prefix + std::to_string(last + 1);
  rule["name"] = name;
  rule["answers"] = spec.answers;
  rule["match"] = match;
  rule["verdict"] = std::string(to_string(spec.verdict));
  if (spec.until_exit) {
    YAML::Node until;
    until["app-exit"] = spec.until_exit->pid;
    until["start"] = spec.until_exit->start_ticks;
    until.SetStyle(YAML::EmitterStyle::Flow);
    rule["until"] = until;
  } else if (!spec.until.empty()) {
    rule["until"] = absolute_until(spec.until);
  }
  kept.push_back(rule);
  const std::string written = emit(uid_, kept);
  if (const auto problems = check_answer_file(written, path_); !problems.empty()) {
    throw AnswerFileError(problems.front().message);
  }
  before_ = text;
  write(written);
  return name;
}

bool AnswerFile::remove(const std::string& name) {
  const auto text = read_text(path_);
  YAML::Node kept(YAML::NodeType::Sequence);
  bool found = false;
  for (const YAML::Node& rule : load_rules(path_, text)) {
    if (rule["name"] && rule["name"].as<std::string>("") == name) {
      found = true;
    } else if (!ended(rule)) {
      kept.push_back(rule);
    }
  }
  if (!found) return false;
  before_ = text;
  write(emit(uid_, kept));
  return true;
}

void AnswerFile::restore() {
  const auto before = std::exchange(before_, std::nullopt);
  if (before) {
    write(*before);
  } else {
    std::error_code ignored;
    fs::remove(path_, ignored);
  }
}

// Written beside it and renamed into place: the watcher and a reload see the old file or the
// new one, never half of it. The loader ignores the .tmp name.
void AnswerFile::write(const std::string& text) {
  const fs::path dir = path_.parent_path();
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw AnswerFileError("cannot create " + dir.string() + ": " + error.message());
  const fs::path temporary = dir / ("." + path_.filename().string() + ".tmp");
  ::unlink(temporary.c_str());
  const int fd =
      ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno("cannot write " + temporary.string());
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      ::unlink(temporary.c_str());
      throw_errno("cannot write " + temporary.string());
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || ::rename(temporary.c_str(), path_.c_str()) != 0) {
    ::unlink(temporary.c_str());
    throw_errno("cannot write " + path_.string());
  }
  if (const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace pktbroker
