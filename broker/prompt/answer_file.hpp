// A user's answer file (policy.d/answers-uid<UID>.yaml): the rules that answers to `ask`
// prompts and `pktbrokerctl add-rule` write. Only pktbrokerd writes it; each rule answers one
// ask rule and matches only its user's packets (the loader checks both).
#pragma once

#include "broker/policy/policy.hpp"

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace pktbroker {

/// A rule to write.
struct AnswerRule {
  std::string answers;  ///< the ask rule
  /// The match, a YAML flow mapping; `uid:` is added (or must already be the file's user).
  std::string match;
  VerdictKind verdict = VerdictKind::drop;
  /// Empty (no end), a duration from now (90s, 5m, 2h, 7d) or a UTC time
  /// (2026-12-01T18:00:00Z): written as an absolute time, so that a later rewrite of the file
  /// does not extend it.
  std::string until;
  std::optional<ProcessRef> until_exit;  ///< instead of `until`: while this process runs
};

/// Why a rule could not be added or removed (the text is for the client).
class AnswerFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class AnswerFile {
 public:
  static constexpr std::size_t max_rules = 1024;
  static constexpr std::size_t max_match = 512;  ///< bytes of a match given to add()

  /// The answer file of `uid` beside the policy file `config`.
  AnswerFile(const std::filesystem::path& config, std::uint32_t uid);

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// Adds a rule and returns its name (ans-u<UID>-<N>). Rules past their end are pruned.
  /// Throws AnswerFileError, and writes nothing, when the file would not load.
  std::string add(const AnswerRule& rule);
  /// Removes the rule `name`; false when the file holds none of that name.
  bool remove(const std::string& name);
  /// Puts back what the file held before the last add() or remove() (the policy refused it).
  void restore();

 private:
  std::filesystem::path path_;
  std::uint32_t uid_;
  std::optional<std::string> before_;  ///< the file's text before the last change; none: absent

  void write(const std::string& text);
};

/// `pattern` matched literally by app.path's glob (`*`, `?`, `[` and `\` escaped).
std::string glob_literal(std::string_view text);

}  // namespace pktbroker
