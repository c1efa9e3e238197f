// Decides each packet of one queue: parse, match the policy, count.
#pragma once

#include "broker/counters.hpp"
#include "broker/flow/flow_inspector.hpp"
#include "broker/identity/flow_identities.hpp"
#include "broker/packet_meta.hpp"
#include "broker/policy/policy.hpp"
#include "broker/verdict.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace pktbroker {

struct RuleStats {
  std::string name;
  PacketCounters counters;
};

/// What the policy says about one packet.
struct Decision {
  Verdict verdict;  ///< final; or, when clients may take the packet, what applies if none does
  bool parsed = false;
  PacketView view;                    ///< valid when parsed
  const Delivery* deliver = nullptr;  ///< a `deliver` rule matched
  bool unmatched = false;             ///< no rule matched: subscribers may claim the packet
  Flow* flow = nullptr;               ///< the packet's flow, when plugins are loaded
  /// The packet's metadata with what the broker adds: plugin fields, the flow's ct_state, the
  /// destination's DNS name. Selectors and grants match this. Valid until the next decide().
  PacketMeta meta;
  Inspection inspection;  ///< what the flow's plugin said
  /// A plugin holds the packet: it waits until `hold_ms`, then takes `verdict`.
  std::optional<std::uint32_t> hold_ms;
  /// The matched rule hands the decision to the flow's plugin (`inspect:` lists it): only then
  /// may the plugin's release of a held packet decide it; otherwise `verdict` does.
  bool plugin_decides = false;
  std::span<const std::uint8_t> replacement;  ///< a plugin's accept-modified packet
  /// Who decided, for the event log (a static string): rule, default, plugin, expected_flow,
  /// dropped_before or malformed; and the rule that matched (valid with the policy).
  std::string_view decided_by = "default";
  std::string_view rule;
  std::string_view mirror;  ///< the rule's `mirror:` channel, or empty
  /// Its process must be looked up before a rule can decide: the packet waits for that
  /// (BrokerQueue), and meanwhile `verdict` is the identity fallback.
  std::optional<SocketKey> identity_wait;
  /// Its process is known, but from a while ago (UDP): to be looked up again, not waited for.
  std::optional<SocketKey> identity_refresh;
  AppRef app;  ///< the sending process, when a rule needed it and it is known (meta.app)
  /// An ask rule matched: the packet waits for a prompt's answer (BrokerQueue), at most
  /// ask->timeout_ms; meanwhile `verdict` is the rule's fallback. `flow_key` is its connection.
  const Ask* ask = nullptr;
  SocketKey flow_key;

  [[nodiscard]] bool offered_to_clients() const noexcept { return deliver != nullptr || unmatched; }
};

/// Lives on its queue's executor; never throws on the packet path.
class Dispatcher {
 public:
  /// With `inspector` (which must outlive the dispatcher), each packet's flow goes through
  /// its plugin before the policy is matched.
  Dispatcher(std::uint16_t queue, std::shared_ptr<const Policy> policy,
             FlowInspector* inspector = nullptr);

  /// The decision for one packet (counted per rule and malformed reason). `again`: the packet
  /// waited for its process and is decided now (it was counted when it arrived).
  [[nodiscard]] Decision decide(const PacketMeta& meta, bool again = false) noexcept;

  /// Where processes are looked up for rules with `app.*` fields (must outlive the dispatcher).
  void set_identity(IdentityResolver* identity) noexcept { identity_ = identity; }
  /// A lookup's answer for a flow (null: not found), for its waiting and later packets.
  void learn_identity(const SocketKey& key, AppRef app);
  /// A prompt's answer for a connection: its later packets (a SYN sent again) get it too,
  /// while it is the same user's.
  void learn_answer(const SocketKey& key, std::optional<std::uint32_t> uid, Verdict verdict);
  /// The programs seen opening connections lately, newest first (`pktbrokerctl apps`).
  [[nodiscard]] std::vector<proto::AppSeen> apps_seen() const;
  [[nodiscard]] const IdentityConfig& identity_config() const noexcept {
    return policy_->broker().identity;
  }

  /// The handle plugins get for a packet (pktb_packet::id) and give back to release it.
  [[nodiscard]] std::uint64_t packet_handle(std::uint32_t packet_id) const noexcept {
    return (std::uint64_t{queue_} << 32) | packet_id;
  }

  /// What a packet gets that cannot be read (the policy's malformed_verdict).
  [[nodiscard]] const Verdict& malformed_verdict() const noexcept {
    return policy_->broker().malformed_verdict;
  }

  /// A packet offered to clients that none took left with the policy's drop: remembered like
  /// a rule's drop (retransmissions are dropped again).
  void remember_drop(const Decision& decision) const noexcept {
    if (inspector_ != nullptr) inspector_->remember_drop(decision.inspection);
  }

  /// Counts the verdict a packet finally left with.
  void record(const Verdict& verdict) noexcept;

  /// Replaces the policy for the next packet. Rule counters carry over by rule name.
  void set_policy(std::shared_ptr<const Policy> policy);

  [[nodiscard]] const QueueCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] QueueCounters& counters() noexcept { return counters_; }
  [[nodiscard]] const std::vector<RuleStats>& rule_stats() const noexcept { return rules_; }

 private:
  void log_verdict(const PacketMeta& meta, const PacketView* view, std::string_view rule,
                   const Verdict& verdict) const;
  /// An `inspect` rule matched: the flow's plugin decides, if the rule names it.
  void apply_plugin(const Rule& rule, const Inspection& inspection, Decision& decision) noexcept;
  enum class Identity : std::uint8_t { known, not_found, ask };
  /// Sets decision.meta.app when the packet's process is known; `ask` when it must be looked
  /// up (the packet waits), `not_found` when it was and is not there.
  Identity find_identity(const SocketKey& key, bool again, Decision& decision) noexcept;

  /// An ask rule matched: the answer its user gave for this connection, if any.
  [[nodiscard]] const Verdict* connection_answer(const std::optional<SocketLookup>& lookup,
                                                 const PacketMeta& meta) noexcept;
  /// An ask rule matched: the first of its answer rules (just before it) that matches, else it.
  [[nodiscard]] std::size_t answer_rule(std::size_t ask_rule, const PacketMeta& meta,
                                        const PacketView& view) const noexcept;
  void note_app(const SocketKey& key, const AppRef& app) noexcept;

  std::uint16_t queue_;
  std::shared_ptr<const Policy> policy_;
  FlowInspector* inspector_;
  std::vector<std::string> dst_names_;  ///< what the last decision's meta.dst_names views
  IdentityResolver* identity_ = nullptr;
  FlowIdentities identities_;
  /// Answers given for connections, kept a minute (a SYN sent again after a `deny` is not
  /// asked again); when full, forgotten.
  struct ConnectionAnswer {
    Verdict verdict;
    std::optional<std::uint32_t> uid;
    Clock::time_point at;
  };
  static constexpr std::size_t max_connection_answers = 4096;
  static constexpr std::chrono::seconds connection_answer_age{60};
  std::unordered_map<SocketKey, ConnectionAnswer, SocketKeyHash> connection_answers_;
  /// Programs seen lately (at most max_apps_seen; the longest idle makes room).
  struct AppConnections {
    AppRef app;
    std::uint64_t connections = 0;
    Clock::time_point last{};
    std::array<SocketKey, 8> recent{};  ///< ring of the latest destinations
  };
  static constexpr std::size_t max_apps_seen = 256;
  std::vector<AppConnections> apps_;
  QueueCounters counters_;
  std::vector<RuleStats> rules_;  // parallel to policy_->rules()
};

}  // namespace pktbroker
