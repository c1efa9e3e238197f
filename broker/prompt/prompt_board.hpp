// The `ask` verdict's other half: questions for people. A queue hands over each packet an ask
// rule holds; identical questions (same user, program, destination, rule) merge into one
// prompt; prompt clients of the connection's user (root: of anyone) see it and answer; the
// answer releases every waiting packet at once and, unless it is for once, becomes a rule in
// the user's answer file. All state lives on the board's strand.
#pragma once

#include "broker/broker_queue.hpp"
#include "broker/identity/identity_resolver.hpp"
#include "broker/identity/socket_key.hpp"
#include "broker/policy/policy.hpp"
#include "broker/verdict_tracker.hpp"
#include "pktbroker/protocol.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace pktbroker {

class AnswerFile;
struct AnswerRule;
class Session;

/// A packet an ask rule holds, as its queue hands it over.
struct AskRequest {
  BrokerQueue* queue = nullptr;
  PacketToken token = 0;
  AppRef app;             ///< the sending process (complete)
  std::uint32_t uid = 0;  ///< the socket's owner: whose prompt it is
  SocketKey flow;
  std::string rule;  ///< the ask rule
  Verdict fallback;
  Clock::time_point deadline;
};

struct PromptCounters {
  std::uint64_t prompts = 0;    ///< questions asked
  std::uint64_t merged = 0;     ///< packets added to a question already asked
  std::uint64_t answered = 0;   ///< questions answered
  std::uint64_t timed_out = 0;  ///< questions nobody answered in time: the fallback
  std::uint64_t unwatched = 0;  ///< packets whose user had no prompt client: the fallback
  std::uint64_t overflows = 0;  ///< packets past the board's bounds: the fallback
  std::uint64_t rules_written = 0;
  std::uint64_t rule_errors = 0;  ///< answers whose rule could not be written (applied once)
};

/// What the board needs of the rest of the broker.
struct PromptHost {
  /// The policy file (answer files go to the policy.d beside it).
  std::filesystem::path config;
  /// Loads the policy again: true, or false and why (ControlHandler::reload).
  std::function<std::pair<bool, std::string>()> reload;
};

class PromptBoard {
 public:
  static constexpr std::size_t max_prompts = 1024;
  static constexpr std::size_t max_prompts_per_uid = 32;
  /// Packets one user's questions hold at once, all queues together: a user cannot take the
  /// queues' ask bound from the others.
  static constexpr std::size_t max_waiting_per_uid = 128;
  /// Rules one non-root user's answers and add-rule/delete-rule write a minute: each reloads.
  static constexpr std::size_t max_rule_writes_per_minute = 20;

  PromptBoard(boost::asio::io_context& io, PromptHost host);

  // Any thread; each posts to the board's strand.
  void set_policy(std::shared_ptr<const Policy> policy);
  void ask(AskRequest request);
  void watch(std::shared_ptr<Session> session, proto::PromptScope scope, std::uint32_t request);
  void answer(std::shared_ptr<Session> session, proto::PromptAnswer answer, std::uint32_t request);
  void pending(std::shared_ptr<Session> session, std::uint32_t request);
  void add_rule(std::shared_ptr<Session> session, proto::RuleAdd rule, std::uint32_t request);
  void delete_rule(std::shared_ptr<Session> session, proto::RuleDelete rule, std::uint32_t request);
  void session_closed(std::uint32_t session_id);
  /// No more questions; those pending are left to the queues (their stop gives the fallbacks).
  void stop();

  [[nodiscard]] PromptCounters counters() const noexcept;

 private:
  /// What makes two questions the same: user, program (path and command line), destination
  /// (family, address, protocol, port; any local port), and ask rule.
  struct Key {
    std::uint32_t uid = 0;
    std::string path;
    std::string cmdline;
    SocketKey flow;
    std::string rule;
  };
  struct Waiter {
    BrokerQueue* queue;
    PacketToken token;
  };
  struct Prompt {
    std::uint64_t id = 0;
    Key key;
    AppRef app;
    Verdict fallback;
    Clock::time_point deadline;
    std::vector<Waiter> waiting;
  };
  struct Watcher {
    std::uint32_t session_id = 0;
    std::weak_ptr<Session> session;
    std::uint32_t uid = 0;
    bool all = false;
  };
  struct KeyLess {
    bool operator()(const Key& a, const Key& b) const noexcept;
  };

  void on_ask(AskRequest& request);
  [[nodiscard]] bool watched(std::uint32_t uid) const noexcept;
  [[nodiscard]] proto::Prompt describe(const Prompt& prompt) const;
  /// Ends a prompt: its packets get `verdict`, watchers hear how.
  void close(std::map<std::uint64_t, Prompt>::iterator it, const Verdict& verdict,
             proto::PromptEnd how, const std::string& text);
  void send_to_watchers(std::uint32_t uid, const proto::Message& message);
  void arm_timer();
  void on_timer();
  /// Writes an answer rule and reloads: the rule's name and file, or throws AnswerFileError
  /// (with the policy's problems only for root: they may show other users' rules).
  std::string write_rule(std::uint32_t uid, const AnswerRule& rule, std::uint32_t by);
  static void release(const std::vector<Waiter>& waiting, const Verdict& verdict,
                      BrokerQueue::AskOutcome outcome);

  PromptHost host_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<const Policy> policy_;
  std::map<std::uint64_t, Prompt> prompts_;  // by id: oldest first
  std::map<Key, std::uint64_t, KeyLess> by_key_;
  struct UidState {
    std::size_t prompts = 0;
    std::size_t waiting = 0;  ///< packets
    Clock::time_point writes_since{};
    std::size_t writes = 0;  ///< rules written since writes_since
  };
  std::map<std::uint32_t, UidState> per_uid_;
  /// Counts a rule write of `uid`; throws AnswerFileError past the minute's budget.
  void charge_write(std::uint32_t uid);
  /// Reloads after `file` changed; puts it back and throws AnswerFileError when that fails.
  void reload_or_restore(AnswerFile& file, std::uint32_t by);
  std::vector<Watcher> watchers_;
  std::uint64_t next_id_ = 1;
  bool stopped_ = false;
  std::atomic<std::uint64_t> asked_{0}, merged_{0}, answered_{0}, timed_out_{0}, unwatched_{0},
      overflows_{0}, rules_written_{0}, rule_errors_{0};
};

}  // namespace pktbroker
