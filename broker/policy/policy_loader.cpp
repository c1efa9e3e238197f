// YAML -> compiled Policy. Collects every problem with its file:line:column before giving up.
#include "broker/policy/matcher.hpp"
#include "broker/policy/policy.hpp"

#include "broker/identity/process_reader.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <tuple>

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

namespace pktbroker {
namespace {

namespace fs = std::filesystem;
using Keys = std::span<const std::string_view>;

constexpr std::string_view broker_keys[] = {"queues", "default_verdict", "malformed_verdict",
                                            "max_flows", "identity"};
constexpr std::string_view identity_keys[] = {"bpf", "timeout_ms", "fallback", "max_waiting"};
constexpr std::string_view queue_keys[] = {"num", "fail_open", "max_len",  "copy_range",
                                           "gso", "uid_gid",   "conntrack"};
constexpr std::string_view rule_keys[] = {"name",     "description", "match", "verdict",
                                          "priority", "mirror",      "until", "answers"};
constexpr std::string_view channel_keys[] = {"name",        "delivery",  "link",
                                             "max_members", "max_frame", "queue_length",
                                             "overflow",    "access",    "tap"};
constexpr std::string_view access_keys[] = {"user", "group", "uid", "gid", "rights"};
constexpr std::string_view match_keys[] = {
    "queue", "mark", "proto", "src",      "dst",       "sport",  "dport",    "iif",
    "oif",   "uid",  "gid",   "ct_state", "icmp_type", "length", "dst_name", "not"};
constexpr std::string_view mark_keys[] = {"value", "mask"};
constexpr std::string_view verdict_keys[] = {"accept", "drop", "repeat", "set_mark"};
constexpr std::string_view deliver_keys[] = {"deliver", "fallback", "timeout_ms"};
constexpr std::string_view inspect_keys[] = {"inspect", "fallback", "timeout_ms"};
constexpr std::string_view ask_keys[] = {"ask", "fallback", "timeout_ms"};
constexpr std::string_view app_exit_keys[] = {"app-exit", "start"};
constexpr std::string_view plugin_keys[] = {"name", "path", "config"};
constexpr std::string_view socket_keys[] = {"path",
                                            "mode",
                                            "group",
                                            "queue_limit",
                                            "max_sessions",
                                            "max_sessions_per_uid",
                                            "max_subscriptions",
                                            "hello_timeout_ms",
                                            "max_timeout_ms",
                                            "max_outstanding",
                                            "max_outstanding_per_uid"};
constexpr std::string_view grant_keys[] = {"user", "group", "uid", "roles", "allowed"};
constexpr std::string_view metrics_keys[] = {"listen"};
constexpr std::string_view events_keys[] = {"file", "types", "rate_limit"};
constexpr std::pair<std::string_view, EventType> event_types[] = {
    {"drop", EventType::drop},     {"accept", EventType::accept},
    {"hold", EventType::hold},     {"session", EventType::session},
    {"reload", EventType::reload}, {"channel", EventType::channel}};

// Optimal string alignment distance: edits, counting a swap of neighbours as one.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string join(Keys keys) {
  std::string text;
  for (const auto key : keys) text += (text.empty() ? "" : ", ") + std::string(key);
  return text;
}

std::optional<std::uint64_t> parse_number(std::string_view text) {
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
    base = 16;
  }
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<std::uint32_t> parse_octal(std::string_view text) {
  std::uint32_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 8);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<Cidr> parse_cidr(const std::string& text) {
  const auto slash = text.find('/');
  const std::string address = text.substr(0, slash);
  Cidr cidr;
  if (inet_pton(AF_INET, address.c_str(), cidr.network.bytes.data()) == 1) {
    cidr.network.family = 4;
  } else if (inet_pton(AF_INET6, address.c_str(), cidr.network.bytes.data()) == 1) {
    cidr.network.family = 6;
  } else {
    return std::nullopt;
  }
  const unsigned max_prefix = cidr.network.family == 4 ? 32 : 128;
  unsigned prefix = max_prefix;
  if (slash != std::string::npos) {
    const auto parsed = parse_number(std::string_view(text).substr(slash + 1));
    if (!parsed || *parsed > max_prefix || text.substr(slash + 1).starts_with("0x")) {
      return std::nullopt;
    }
    prefix = static_cast<unsigned>(*parsed);
  }
  cidr.prefix = static_cast<std::uint8_t>(prefix);
  for (unsigned bit = prefix; bit < 128; ++bit) {
    cidr.network.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80U >> (bit % 8)));
  }
  return cidr;
}

const std::map<std::string_view, std::uint8_t>& protocol_names() {
  static const std::map<std::string_view, std::uint8_t> names = {
      {"icmp", 1}, {"igmp", 2}, {"tcp", 6},     {"udp", 17},   {"gre", 47},
      {"esp", 50}, {"ah", 51},  {"icmpv6", 58}, {"sctp", 132}, {"udplite", 136}};
  return names;
}

const std::map<std::string_view, IcmpType>& icmp_type_names() {
  using T = std::optional<std::uint8_t>;
  static const std::map<std::string_view, IcmpType> names = {
      {"echo-reply", {T(0), T(129)}},
      {"echo-request", {T(8), T(128)}},
      {"dest-unreachable", {T(3), T(1)}},
      {"destination-unreachable", {T(3), T(1)}},
      {"source-quench", {T(4), {}}},
      {"redirect", {T(5), T(137)}},
      {"router-advertisement", {T(9), T(134)}},
      {"router-solicitation", {T(10), T(133)}},
      {"time-exceeded", {T(11), T(3)}},
      {"parameter-problem", {T(12), T(4)}},
      {"timestamp-request", {T(13), {}}},
      {"timestamp-reply", {T(14), {}}},
      {"packet-too-big", {{}, T(2)}},
      {"neighbor-solicitation", {{}, T(135)}},
      {"neighbor-advertisement", {{}, T(136)}}};
  return names;
}

std::string names_of(const auto& map) {
  std::string text;
  for (const auto& [name, value] : map) text += (text.empty() ? "" : ", ") + std::string(name);
  return text;
}

/// Reads one YAML file, recording diagnostics against it.
class FileReader {
 public:
  FileReader(std::string file, std::vector<Diagnostic>& diagnostics)
      : file_(std::move(file)), diagnostics_(diagnostics) {}

  [[nodiscard]] const std::string& file() const { return file_; }
  /// When the file was last saved: `until: 5m` counts from then.
  [[nodiscard]] std::chrono::system_clock::time_point saved_at() const { return saved_at_; }
  void set_saved_at(std::chrono::system_clock::time_point at) { saved_at_ = at; }

  void error(const YAML::Mark& mark, std::string message) {
    const bool known = mark.line >= 0;
    diagnostics_.push_back(
        {file_, known ? mark.line + 1 : 0, known ? mark.column + 1 : 0, std::move(message)});
  }
  void error(const YAML::Node& node, std::string message) {
    // yaml-cpp places an empty value at the next token; its key is where the user looks.
    for (const auto& [value, key_mark] : empty_values_) {
      if (value.is(node)) {
        error(key_mark, std::move(message) + " (the value is empty)");
        return;
      }
    }
    error(node.Mark(), std::move(message));
  }

  /// Checks `node` is a map whose keys are all in `allowed`, each at most once.
  /// With `plugin_fields`, keys like `dns.qname` are accepted too (the caller checks them).
  bool expect_map(const YAML::Node& node, Keys allowed, std::string_view where,
                  bool plugin_fields = false) {
    if (!node.IsMap()) {
      error(node, std::string(where) + " must be a mapping");
      return false;
    }
    std::map<std::string, int> seen;  // key -> line
    for (const auto& entry : node) {
      const std::string key = entry.first.Scalar();
      if (entry.second.IsNull()) empty_values_.emplace_back(entry.second, entry.first.Mark());
      if (const auto [first, fresh] = seen.emplace(key, entry.first.Mark().line + 1); !fresh) {
        error(entry.first, "duplicate key '" + key + "' in " + std::string(where) +
                               " (first on line " + std::to_string(first->second) + ")");
        continue;
      }
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      if (plugin_fields && key.find('.') != std::string::npos) continue;
      std::string message = "unknown key '" + key + "' in " + std::string(where);
      const auto close = std::min_element(allowed.begin(), allowed.end(), [&](auto a, auto b) {
        return edit_distance(key, a) < edit_distance(key, b);
      });
      const std::size_t tolerance = key.size() <= 4 ? 1 : 2;
      const auto extends = std::find_if(allowed.begin(), allowed.end(), [&](auto candidate) {
        return key.size() >= 3 && candidate.starts_with(key);
      });
      if (close != allowed.end() && edit_distance(key, *close) <= tolerance) {
        message += " (did you mean '" + std::string(*close) + "'?)";
      } else if (extends != allowed.end()) {
        message += " (did you mean '" + std::string(*extends) + "'?)";
      } else {
        message += "; expected one of: " + join(allowed);
      }
      error(entry.first, message);
    }
    return true;
  }

  std::optional<std::uint64_t> number(const YAML::Node& node, std::uint64_t max,
                                      std::string_view what) {
    if (!node.IsScalar()) {
      error(node, std::string(what) + " must be a number");
      return std::nullopt;
    }
    const auto value = parse_number(node.Scalar());
    if (!value || *value > max) {
      error(node, "bad " + std::string(what) + " '" + node.Scalar() +
                      "': expected a number from 0 to " + std::to_string(max));
      return std::nullopt;
    }
    return value;
  }

  std::optional<bool> boolean(const YAML::Node& node, std::string_view what) {
    if (node.IsScalar()) {
      const std::string& text = node.Scalar();
      if (text == "true" || text == "yes" || text == "on") return true;
      if (text == "false" || text == "no" || text == "off") return false;
    }
    error(node, std::string(what) + " must be true or false");
    return std::nullopt;
  }

  /// Calls `each` for every scalar of a scalar-or-list node.
  template <typename F>
  void scalars(const YAML::Node& node, std::string_view what, F&& each) {
    if (node.IsScalar()) {
      each(node);
    } else if (node.IsSequence() && node.size() > 0) {
      for (const auto& item : node) {
        if (item.IsScalar()) {
          each(item);
        } else {
          error(item, std::string(what) + " list items must be scalars");
        }
      }
    } else {
      error(node, std::string(what) + " must be a value or a non-empty list of values");
    }
  }

  std::optional<std::pair<std::uint32_t, std::uint32_t>> range(const YAML::Node& node,
                                                               std::uint64_t max,
                                                               std::string_view what) {
    const std::string& text = node.Scalar();
    const auto dash = text.find('-');
    if (dash == std::string::npos) {
      const auto value = number(node, max, what);
      if (!value) return std::nullopt;
      return std::pair{static_cast<std::uint32_t>(*value), static_cast<std::uint32_t>(*value)};
    }
    const auto first = parse_number(std::string_view(text).substr(0, dash));
    const auto last = parse_number(std::string_view(text).substr(dash + 1));
    if (!first || !last || *first > max || *last > max || *first > *last) {
      error(node, "bad " + std::string(what) + " range '" + text +
                      "': expected FIRST-LAST with 0 <= FIRST <= LAST <= " + std::to_string(max));
      return std::nullopt;
    }
    return std::pair{static_cast<std::uint32_t>(*first), static_cast<std::uint32_t>(*last)};
  }

  std::optional<Verdict> verdict(const YAML::Node& node) {
    Verdict verdict;
    if (node.IsScalar()) {
      const auto kind = verdict_kind(node.Scalar());
      if (!kind) {
        error(node, "unknown verdict '" + node.Scalar() + "'; expected accept, drop or repeat");
        return std::nullopt;
      }
      verdict.kind = *kind;
      return verdict;
    }
    if (!expect_map(node, verdict_keys, "verdict")) return std::nullopt;
    int kinds = 0;
    bool ok = true;
    for (const auto& entry : node) {
      const std::string key = entry.first.Scalar();
      if (key == "set_mark") {
        const auto mark = number(entry.second, 0xffffffff, "set_mark");
        ok = ok && mark.has_value();
        if (mark) verdict.set_mark = static_cast<std::uint32_t>(*mark);
      } else if (const auto kind = verdict_kind(key)) {
        const auto enabled = boolean(entry.second, key);
        ok = ok && enabled.has_value();
        if (enabled && *enabled) {
          verdict.kind = *kind;
          ++kinds;
        }
      }
    }
    if (ok && kinds != 1) {
      error(node, "a verdict needs exactly one of accept: true, drop: true or repeat: true");
      return std::nullopt;
    }
    if (!ok) return std::nullopt;
    return verdict;
  }

  /// `{inspect: [PLUGIN, ...], fallback: VERDICT, timeout_ms: N}`
  bool inspection(const YAML::Node& node, Rule& rule) {
    if (!expect_map(node, inspect_keys, "verdict")) return false;
    Inspect inspect;
    const std::size_t errors_before = diagnostics_.size();
    scalars(node["inspect"], "inspect", [&](const YAML::Node& item) {
      if (valid_plugin_name(item.Scalar())) {
        inspect.plugins.push_back(item.Scalar());
        reference_plugin(item.Scalar(), item.Mark());
      } else {
        error(item, "bad plugin name '" + item.Scalar() + "' in inspect");
      }
    });
    if (node["timeout_ms"]) {
      const auto timeout = number(node["timeout_ms"], 60'000, "timeout_ms");
      if (timeout) inspect.hold_timeout_ms = static_cast<std::uint32_t>(*timeout);
    }
    rule.verdict = Verdict{};
    if (node["fallback"]) {
      if (const auto fallback = verdict(node["fallback"])) rule.verdict = *fallback;
    }
    rule.inspect = std::move(inspect);
    return diagnostics_.size() == errors_before;
  }

  /// `{ask: true, timeout_ms: N, fallback: VERDICT}` (the fallback is drop unless given)
  bool asking(const YAML::Node& node, Rule& rule) {
    if (!expect_map(node, ask_keys, "verdict")) return false;
    const std::size_t errors_before = diagnostics_.size();
    const auto enabled = boolean(node["ask"], "ask");
    if (enabled && !*enabled) error(node["ask"], "ask: false is no verdict; leave ask out");
    Ask ask;
    if (node["timeout_ms"]) {
      const auto timeout = number(node["timeout_ms"], 3'600'000, "timeout_ms");
      if (timeout && *timeout < 100) error(node["timeout_ms"], "an ask waits at least 100 ms");
      if (timeout) ask.timeout_ms = static_cast<std::uint32_t>(*timeout);
    }
    rule.verdict = Verdict{VerdictKind::drop, std::nullopt};
    if (node["fallback"]) {
      const auto fallback = verdict(node["fallback"]);
      if (fallback && fallback->kind == VerdictKind::repeat) {
        error(node["fallback"], "an ask's fallback is accept or drop");
      } else if (fallback) {
        rule.verdict = *fallback;
      }
    }
    rule.ask = ask;
    return diagnostics_.size() == errors_before;
  }

  /// `plugins:` entries: `{name: dns, path: /usr/lib/..., config: {key: value}}`
  void plugins(const YAML::Node& node, std::vector<PluginSpec>& specs) {
    if (node.IsNull()) return;
    if (!node.IsSequence()) {
      error(node, "plugins must be a list");
      return;
    }
    for (const auto& item : node) {
      if (!expect_map(item, plugin_keys, "plugin")) continue;
      PluginSpec spec;
      spec.origin = file_ + ":" + std::to_string(item.Mark().line + 1);
      const YAML::Node name = item["name"];
      if (!name || !name.IsScalar() || !valid_plugin_name(name.Scalar())) {
        error(name ? name : item, "a plugin needs a name of 1 to 32 of a-z, 0-9, _");
        continue;
      }
      spec.name = name.Scalar();
      for (const PluginSpec& earlier : specs) {
        if (earlier.name == spec.name) {
          error(name,
                "plugin '" + spec.name + "' is listed twice (first at " + earlier.origin + ")");
        }
      }
      if (const YAML::Node path = item["path"]) {
        if (!path.IsScalar() || path.Scalar().empty()) {
          error(path, "path must be the plugin's shared object file");
          continue;
        }
        spec.path = path.Scalar();
        if (spec.path.is_relative()) spec.path = fs::path(file_).parent_path() / spec.path;
      }
      if (const YAML::Node config = item["config"]) {
        if (!config.IsMap()) {
          error(config, "config must be a mapping of names to values");
          continue;
        }
        for (const auto& entry : config) {
          if (!entry.second.IsScalar()) {
            error(entry.second,
                  "plugin config values must be scalars (" + entry.first.Scalar() + ")");
            continue;
          }
          spec.config[entry.first.Scalar()] = entry.second.Scalar();
        }
      }
      specs.push_back(std::move(spec));
    }
  }

  /// Plugin names used by rules, with their positions, checked against `plugins:` at the end.
  struct PluginReference {
    std::string plugin;
    Diagnostic where;
  };
  [[nodiscard]] std::vector<PluginReference>& plugin_references() { return plugin_references_; }

  /// `{deliver: NAME, fallback: VERDICT, timeout_ms: N}`
  bool delivery(const YAML::Node& node, Rule& rule) {
    if (!expect_map(node, deliver_keys, "verdict")) return false;
    Delivery delivery;
    bool ok = true;
    const YAML::Node name = node["deliver"];
    if (!name.IsScalar() || name.Scalar().empty()) {
      error(name, "deliver names the subscription that receives the packets");
      ok = false;
    } else {
      delivery.subscription = name.Scalar();
    }
    if (node["timeout_ms"]) {
      const auto timeout = number(node["timeout_ms"], 3'600'000, "timeout_ms");
      ok = ok && timeout.has_value();
      delivery.timeout_ms = static_cast<std::uint32_t>(timeout.value_or(0));
    }
    rule.verdict = Verdict{};
    if (node["fallback"]) {
      const auto fallback = verdict(node["fallback"]);
      ok = ok && fallback.has_value();
      if (fallback) rule.verdict = *fallback;
    }
    rule.deliver = delivery;
    return ok;
  }

  /// A whole match expression (a rule's `match:`, a grant's `allowed:`, a selector): its
  /// fields and the fields of its `not:`. Empty on errors (they are reported).
  std::shared_ptr<const Matcher> matcher(const YAML::Node& node) {
    auto required = match(node, false);
    if (!required) return nullptr;
    MatchFields excluded;
    if (const YAML::Node negated = node["not"]) {
      auto not_fields = match(negated, true);
      if (!not_fields) return nullptr;
      excluded = std::move(*not_fields);
    }
    return std::make_shared<Matcher>(std::move(*required), std::move(excluded));
  }

  std::optional<MatchFields> match(const YAML::Node& node, bool negated) {
    const std::string_view where = negated ? "not" : "match";
    if (!expect_map(node,
                    negated ? Keys(match_keys).first(std::size(match_keys) - 1) : Keys(match_keys),
                    where, true)) {
      return std::nullopt;
    }
    const std::size_t errors_before = diagnostics_.size();
    MatchFields fields;
    for (const auto& entry : node) {
      const std::string key = entry.first.Scalar();
      const YAML::Node& value = entry.second;
      if (key == "queue") {
        scalars(value, key, [&](const YAML::Node& item) {
          if (auto n = number(item, 0xffff, "queue"))
            fields.queues.push_back(static_cast<std::uint16_t>(*n));
        });
      } else if (key == "mark") {
        mark(value, fields);
      } else if (key == "proto") {
        scalars(value, key, [&](const YAML::Node& item) { protocol(item, fields); });
      } else if (key == "src" || key == "dst") {
        auto& blocks = key == "src" ? fields.src : fields.dst;
        scalars(value, key, [&](const YAML::Node& item) {
          if (auto cidr = parse_cidr(item.Scalar())) {
            blocks.push_back(*cidr);
          } else {
            error(item, "bad address or CIDR '" + item.Scalar() + "' in " + key);
          }
        });
      } else if (key == "sport" || key == "dport") {
        PortSet ports;
        scalars(value, key, [&](const YAML::Node& item) {
          if (auto r = range(item, 0xffff, "port")) {
            ports.add(static_cast<std::uint16_t>(r->first), static_cast<std::uint16_t>(r->second));
          }
        });
        (key == "sport" ? fields.sport : fields.dport) = ports;
      } else if (key == "iif" || key == "oif") {
        auto& names = key == "iif" ? fields.iif : fields.oif;
        scalars(value, key, [&](const YAML::Node& item) {
          if (item.Scalar().empty() || item.Scalar().size() >= 16) {
            error(item, "bad interface name '" + item.Scalar() + "' in " + key);
          } else {
            names.push_back(item.Scalar());
          }
        });
      } else if (key == "uid" || key == "gid") {
        scalars(value, key, [&](const YAML::Node& item) { owner(item, key == "uid", fields); });
      } else if (key == "ct_state") {
        scalars(value, key, [&](const YAML::Node& item) { ct_state(item, fields); });
      } else if (key == "icmp_type") {
        scalars(value, key, [&](const YAML::Node& item) { icmp_type(item, fields); });
      } else if (key == "length") {
        if (value.IsScalar()) {
          fields.length = range(value, 0xffffffff, "length");
        } else {
          error(value, "length must be a number or a range like 64-1500");
        }
      } else if (key == "dst_name") {
        FieldMatch names{key, {}};
        scalars(value, key, [&](const YAML::Node& item) {
          if (item.Scalar().empty()) {
            error(item, "empty pattern in dst_name");
          } else {
            names.patterns.push_back(item.Scalar());
          }
        });
        fields.dst_name = std::move(names);
      } else if (key.starts_with("app.")) {
        app_field(entry.first, value, fields);
      } else if (key.find('.') != std::string::npos) {
        plugin_field(entry.first, value, fields);
      }
    }
    if (diagnostics_.size() != errors_before) return std::nullopt;
    return fields;
  }

 private:
  void reference_plugin(const std::string& plugin, const YAML::Mark& mark) {
    plugin_references_.push_back({plugin, {file_, mark.line + 1, mark.column + 1, {}}});
  }

  /// `app.path: /usr/bin/curl` (or name, cmdline, cgroup, parent) or a list of patterns.
  void app_field(const YAML::Node& key_node, const YAML::Node& value, MatchFields& fields) {
    using Attribute = AppMatch::Attribute;
    static const std::map<std::string, Attribute, std::less<>> attributes{
        {"app.path", Attribute::path},
        {"app.name", Attribute::name},
        {"app.cmdline", Attribute::cmdline},
        {"app.cgroup", Attribute::cgroup},
        {"app.parent", Attribute::parent}};
    const std::string& key = key_node.Scalar();
    const auto found = attributes.find(key);
    if (found == attributes.end()) {
      error(key_node, "unknown field '" + key +
                          "': expected app.path, app.name, app.cmdline, app.cgroup or app.parent");
      return;
    }
    AppMatch match{found->second, {}};
    scalars(value, key, [&](const YAML::Node& item) {
      const std::string& pattern = item.Scalar();
      if (pattern.empty()) {
        error(item, "empty pattern in " + key);
      } else if ((match.attribute == Attribute::path || match.attribute == Attribute::parent) &&
                 pattern.front() != '/' && pattern.front() != '*') {
        error(item, key + " '" + pattern + "' must be an absolute path (or start with *)");
      } else if (match.attribute == Attribute::cgroup && pattern.front() != '/') {
        error(item, "app.cgroup '" + pattern + "' must be a cgroup path, starting with /");
      } else if (match.attribute == Attribute::name && pattern.size() > 15) {
        error(item, "app.name '" + pattern +
                        "' is longer than a process name can be (15 bytes: the kernel's comm)");
      } else {
        match.patterns.push_back(pattern);
      }
    });
    fields.app.push_back(std::move(match));
  }

  /// `dns.qname: "*.example.com"` or a list of such patterns.
  void plugin_field(const YAML::Node& key_node, const YAML::Node& value, MatchFields& fields) {
    const std::string& key = key_node.Scalar();
    const auto dot = key.find('.');
    const std::string plugin = key.substr(0, dot);
    if (!valid_plugin_name(plugin) || !valid_plugin_name(key.substr(dot + 1))) {
      error(key_node, "bad plugin field '" + key + "': expected PLUGIN.FIELD, e.g. dns.qname");
      return;
    }
    FieldMatch match{key, {}};
    scalars(value, key, [&](const YAML::Node& item) {
      if (item.Scalar().empty()) {
        error(item, "empty pattern in " + key);
      } else {
        match.patterns.push_back(item.Scalar());
      }
    });
    reference_plugin(plugin, key_node.Mark());
    fields.plugin_fields.push_back(std::move(match));
  }

  static std::optional<VerdictKind> verdict_kind(std::string_view text) {
    if (text == "accept") return VerdictKind::accept;
    if (text == "drop") return VerdictKind::drop;
    if (text == "repeat") return VerdictKind::repeat;
    return std::nullopt;
  }

  void mark(const YAML::Node& node, MatchFields& fields) {
    if (node.IsScalar()) {
      if (auto value = number(node, 0xffffffff, "mark")) {
        fields.mark = std::pair{static_cast<std::uint32_t>(*value), 0xffffffffU};
      }
      return;
    }
    if (!expect_map(node, mark_keys, "mark")) return;
    if (!node["value"]) {
      error(node, "mark needs a value");
      return;
    }
    const auto value = number(node["value"], 0xffffffff, "mark value");
    const auto mask = node["mask"] ? number(node["mask"], 0xffffffff, "mark mask")
                                   : std::optional<std::uint64_t>(0xffffffff);
    if (!value || !mask) return;
    if ((*value & ~*mask) != 0) {
      error(node["value"], "mark value has bits outside its mask, so it can never match");
      return;
    }
    fields.mark = std::pair{static_cast<std::uint32_t>(*value), static_cast<std::uint32_t>(*mask)};
  }

  void protocol(const YAML::Node& item, MatchFields& fields) {
    const auto& names = protocol_names();
    if (const auto found = names.find(item.Scalar()); found != names.end()) {
      fields.protocols.push_back(found->second);
    } else if (const auto n = parse_number(item.Scalar())) {
      if (*n > 255) {
        error(item, "bad protocol number '" + item.Scalar() + "': expected 0 to 255");
      } else {
        fields.protocols.push_back(static_cast<std::uint8_t>(*n));
      }
    } else {
      error(item, "unknown protocol '" + item.Scalar() +
                      "'; expected a number or one of: " + names_of(names));
    }
  }

  void owner(const YAML::Node& item, bool user, MatchFields& fields) {
    auto& ids = user ? fields.uids : fields.gids;
    if (const auto n = parse_number(item.Scalar())) {
      if (*n > 0xffffffff) {
        error(item, std::string("bad ") + (user ? "uid" : "gid") + " '" + item.Scalar() +
                        "': expected 0 to 4294967295 or a " + (user ? "user" : "group") + " name");
      } else {
        ids.push_back(static_cast<std::uint32_t>(*n));
      }
      return;
    }
    const std::string& name = item.Scalar();
    if (user) {
      if (const passwd* entry = getpwnam(name.c_str())) {
        ids.push_back(entry->pw_uid);
        return;
      }
    } else if (const group* entry = getgrnam(name.c_str())) {
      ids.push_back(entry->gr_gid);
      return;
    }
    error(item, std::string("unknown ") + (user ? "user" : "group") + " '" + name + "'");
  }

  void ct_state(const YAML::Node& item, MatchFields& fields) {
    static const std::map<std::string_view, CtState> states = {
        {"new", CtState::new_},
        {"established", CtState::established},
        {"related", CtState::related}};
    const auto found = states.find(item.Scalar());
    if (found == states.end()) {
      error(item, "unknown ct_state '" + item.Scalar() + "'; expected new, established or related");
      return;
    }
    fields.ct_states |= static_cast<std::uint8_t>(1U << static_cast<unsigned>(found->second));
  }

  void icmp_type(const YAML::Node& item, MatchFields& fields) {
    const auto& names = icmp_type_names();
    if (const auto found = names.find(item.Scalar()); found != names.end()) {
      fields.icmp_types.push_back(found->second);
    } else if (const auto n = parse_number(item.Scalar())) {
      if (*n > 255) {
        error(item, "bad icmp_type number '" + item.Scalar() + "': expected 0 to 255");
      } else {
        const auto type = static_cast<std::uint8_t>(*n);
        fields.icmp_types.push_back({type, type});
      }
    } else {
      error(item, "unknown icmp_type '" + item.Scalar() +
                      "'; expected a number or one of: " + names_of(names));
    }
  }

  std::string file_;
  std::chrono::system_clock::time_point saved_at_ = std::chrono::system_clock::now();
  std::vector<Diagnostic>& diagnostics_;
  std::vector<std::pair<YAML::Node, YAML::Mark>> empty_values_;  ///< value, its key's position
  std::vector<PluginReference> plugin_references_;
};

struct RuleDraft {
  Rule rule;
  int priority = 0;
  int column = 0;
  bool valid = true;  // invalid drafts only take part in the duplicate-name check
};

// `identity: {bpf: true, timeout_ms: 500, fallback: drop, max_waiting: 1024}`
void read_identity(FileReader& reader, const YAML::Node& node, IdentityConfig& identity) {
  if (!reader.expect_map(node, identity_keys, "identity")) return;
  if (node["bpf"]) {
    if (auto b = reader.boolean(node["bpf"], "bpf")) identity.bpf = *b;
  }
  if (node["timeout_ms"]) {
    if (auto n = reader.number(node["timeout_ms"], 60'000, "identity timeout_ms")) {
      if (*n == 0) reader.error(node["timeout_ms"], "identity timeout_ms must be at least 1");
      identity.timeout_ms = static_cast<std::uint32_t>(*n);
    }
  }
  if (node["fallback"]) {
    if (auto v = reader.verdict(node["fallback"])) identity.fallback = *v;
  }
  if (node["max_waiting"]) {
    if (auto n = reader.number(node["max_waiting"], 65536, "identity max_waiting")) {
      if (*n == 0) reader.error(node["max_waiting"], "identity max_waiting must be at least 1");
      identity.max_waiting = static_cast<std::uint32_t>(*n);
    }
  }
}

void read_broker(FileReader& reader, const YAML::Node& node, BrokerConfig& config) {
  if (!reader.expect_map(node, broker_keys, "broker")) return;
  if (const YAML::Node queues = node["queues"]) {
    config.queues.clear();
    if (!queues.IsSequence() || queues.size() == 0) {
      reader.error(queues, "queues must be a non-empty list");
    } else {
      std::map<std::uint16_t, int> seen;
      for (const auto& item : queues) {
        if (!reader.expect_map(item, queue_keys, "queue")) continue;
        QueueConfig queue;
        if (!item["num"]) {
          reader.error(item, "a queue needs num");
          continue;
        }
        if (auto n = reader.number(item["num"], 0xffff, "queue num"))
          queue.num = static_cast<std::uint16_t>(*n);
        if (item["max_len"]) {
          if (auto n = reader.number(item["max_len"], 0xffffffff, "max_len")) {
            if (*n == 0) reader.error(item["max_len"], "max_len must be at least 1");
            queue.max_len = static_cast<std::uint32_t>(*n);
          }
        }
        if (item["copy_range"]) {
          if (auto n = reader.number(item["copy_range"], 0xffff, "copy_range"))
            queue.copy_range = static_cast<std::uint32_t>(*n);
        }
        const auto flag = [&](const char* key, bool& target) {
          if (item[key]) {
            if (auto b = reader.boolean(item[key], key)) target = *b;
          }
        };
        flag("fail_open", queue.fail_open);
        flag("gso", queue.gso);
        flag("uid_gid", queue.uid_gid);
        flag("conntrack", queue.conntrack);
        if (const auto [it, fresh] = seen.emplace(queue.num, item.Mark().line + 1); !fresh) {
          reader.error(item["num"], "queue " + std::to_string(queue.num) +
                                        " is listed twice (first on line " +
                                        std::to_string(it->second) + ")");
          continue;
        }
        config.queues.push_back(queue);
      }
    }
  }
  if (node["default_verdict"]) {
    if (auto v = reader.verdict(node["default_verdict"])) config.default_verdict = *v;
  }
  if (node["malformed_verdict"]) {
    if (auto v = reader.verdict(node["malformed_verdict"])) config.malformed_verdict = *v;
  }
  if (node["max_flows"]) {
    if (auto n = reader.number(node["max_flows"], 100'000'000, "max_flows")) {
      config.max_flows = std::max<std::uint64_t>(*n, 1);
    }
  }
  if (const YAML::Node identity = node["identity"])
    read_identity(reader, identity, config.identity);
}

void read_socket(FileReader& reader, const YAML::Node& node, SocketConfig& socket) {
  if (!reader.expect_map(node, socket_keys, "socket")) return;
  if (const YAML::Node path = node["path"]) {
    if (!path.IsScalar() || !path.Scalar().starts_with("/") || path.Scalar().size() >= 108) {
      reader.error(path, "socket path must be an absolute path shorter than 108 bytes");
    } else {
      socket.path = path.Scalar();
    }
  }
  if (const YAML::Node mode = node["mode"]) {
    const auto value = mode.IsScalar() ? parse_octal(mode.Scalar()) : std::nullopt;
    if (!value || *value > 0777) {
      reader.error(mode, "socket mode must be octal permissions such as 0660");
    } else {
      socket.mode = *value;
    }
  }
  if (const YAML::Node group = node["group"]) {
    if (!group.IsScalar() || getgrnam(group.Scalar().c_str()) == nullptr) {
      reader.error(group, "unknown group '" + group.Scalar() + "' for the socket");
    } else {
      socket.group = group.Scalar();
    }
  }
  const auto bound = [&](const char* key, std::uint64_t max, std::uint32_t& out) {
    const YAML::Node limit = node[key];
    if (!limit) return;
    if (auto n = reader.number(limit, max, key)) {
      if (*n == 0) reader.error(limit, std::string(key) + " must be at least 1");
      out = static_cast<std::uint32_t>(*n);
    }
  };
  bound("queue_limit", 1'000'000, socket.queue_limit);
  bound("max_sessions", 100'000, socket.max_sessions);
  bound("max_sessions_per_uid", 100'000, socket.max_sessions_per_uid);
  bound("max_subscriptions", 100'000, socket.max_subscriptions);
  bound("hello_timeout_ms", 3'600'000, socket.hello_timeout_ms);
  bound("max_timeout_ms", 3'600'000, socket.max_timeout_ms);
  bound("max_outstanding", 1'000'000, socket.max_outstanding);
  bound("max_outstanding_per_uid", 1'000'000, socket.max_outstanding_per_uid);
}

// "192.0.2.1:9410" or "[2001:db8::1]:9410": a numeric address (no name lookups) and a port.
bool valid_listen_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = text.substr(0, colon);
  const std::string port = text.substr(colon + 1);
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (error != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535) {
    return false;
  }
  std::uint8_t address[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), address) == 1;
  }
  return inet_pton(AF_INET, host.c_str(), address) == 1;
}

void read_metrics(FileReader& reader, const YAML::Node& node, std::string& listen) {
  if (!reader.expect_map(node, metrics_keys, "metrics")) return;
  if (const YAML::Node address = node["listen"]) {
    if (!address.IsScalar() || !valid_listen_address(address.Scalar())) {
      reader.error(address,
                   "metrics listen must be ADDRESS:PORT, such as 127.0.0.1:9410 or "
                   "[::1]:9410");
    } else {
      listen = address.Scalar();
    }
  }
}

void read_events(FileReader& reader, const YAML::Node& node, EventsConfig& events) {
  if (!reader.expect_map(node, events_keys, "events")) return;
  if (const YAML::Node file = node["file"]) {
    if (!file.IsScalar() || !file.Scalar().starts_with("/")) {
      reader.error(file, "events file must be an absolute path");
    } else {
      events.file = file.Scalar();
    }
  } else {
    reader.error(node, "events needs a file: the path of the JSON event log");
  }
  if (const YAML::Node types = node["types"]) {
    events.types = 0;
    const auto add = [&](const YAML::Node& item) {
      const auto* found = std::find_if(std::begin(event_types), std::end(event_types),
                                       [&](const auto& t) { return t.first == item.Scalar(); });
      if (!item.IsScalar() || found == std::end(event_types)) {
        reader.error(item, "unknown event type '" + (item.IsScalar() ? item.Scalar() : "") +
                               "'; expected drop, accept, hold, session, reload or channel");
      } else {
        events.types |= event_type_bit(found->second);
      }
    };
    if (types.IsSequence()) {
      for (const YAML::Node& item : types) add(item);
      if (types.size() == 0) reader.error(types, "events types must name at least one type");
    } else {
      add(types);
    }
  }
  if (const YAML::Node limit = node["rate_limit"]) {
    if (auto n = reader.number(limit, 10'000'000, "rate_limit")) {
      if (*n == 0) reader.error(limit, "rate_limit must be at least 1");
      events.rate_limit = static_cast<std::uint32_t>(*n);
    }
  }
}

void read_clients(FileReader& reader, const YAML::Node& node, std::vector<ClientGrant>& grants) {
  if (!node.IsSequence()) {
    reader.error(node, "clients must be a list of grants");
    return;
  }
  for (const auto& item : node) {
    if (!reader.expect_map(item, grant_keys, "client grant")) continue;
    ClientGrant grant;
    grant.origin = reader.file() + ":" + std::to_string(item.Mark().line + 1);
    const int who = (item["user"] ? 1 : 0) + (item["group"] ? 1 : 0) + (item["uid"] ? 1 : 0);
    if (who != 1) {
      reader.error(item, "a grant names exactly one of user, group or uid");
      continue;
    }
    bool ok = true;
    if (const YAML::Node user = item["user"]) {
      const passwd* entry = user.IsScalar() ? getpwnam(user.Scalar().c_str()) : nullptr;
      if (entry == nullptr) {
        reader.error(user, "unknown user '" + user.Scalar() + "'");
        ok = false;
      } else {
        grant.id = entry->pw_uid;
      }
    } else if (const YAML::Node group = item["group"]) {
      const struct group* entry = group.IsScalar() ? getgrnam(group.Scalar().c_str()) : nullptr;
      if (entry == nullptr) {
        reader.error(group, "unknown group '" + group.Scalar() + "'");
        ok = false;
      } else {
        grant.kind = ClientGrant::Kind::gid;
        grant.id = entry->gr_gid;
      }
    } else if (auto uid = reader.number(item["uid"], 0xffffffff, "uid")) {
      grant.id = static_cast<std::uint32_t>(*uid);
    } else {
      ok = false;
    }
    if (!item["roles"]) {
      reader.error(item, "a grant needs roles: [observe, verdict, manage, prompt]");
      continue;
    }
    reader.scalars(item["roles"], "roles", [&](const YAML::Node& role) {
      if (role.Scalar() == "observe") {
        grant.roles |= proto::role_observe;
      } else if (role.Scalar() == "verdict") {
        grant.roles |= proto::role_verdict;
      } else if (role.Scalar() == "manage") {
        grant.roles |= proto::role_manage;
      } else if (role.Scalar() == "prompt") {
        grant.roles |= proto::role_prompt;
      } else {
        reader.error(role, "unknown role '" + role.Scalar() +
                               "'; expected observe, verdict, manage or prompt");
        ok = false;
      }
    });
    if (const YAML::Node allowed = item["allowed"]) {
      grant.allowed = reader.matcher(allowed);
      grant.allowed_text = YAML::Dump(allowed);
      ok = ok && grant.allowed != nullptr;
      if (grant.allowed && grant.allowed->uses_app()) {
        // A packet's process is looked up only for rules: a grant could not rely on it.
        reader.error(allowed, "app.* fields are for rules; a grant's allowed: cannot use them");
        ok = false;
      }
    }
    if (ok) grants.push_back(std::move(grant));
  }
}

// When pktbrokerd first loaded a policy: `until: restart` rules saved before it have expired.
std::chrono::system_clock::time_point first_load() {
  static const auto at = std::chrono::system_clock::now();
  return at;
}

// `until:`: a duration from when the file was saved (90s, 5m, 2h, 7d), a UTC time
// (2026-12-01T18:00:00Z), or `restart` (until pktbrokerd restarts). nullopt for `restart` saved
// after pktbrokerd started (no expiry), and for errors (reported).
std::optional<std::chrono::system_clock::time_point> until_time(FileReader& reader,
                                                                const YAML::Node& node) {
  using namespace std::chrono;
  const std::string text = node.IsScalar() ? node.Scalar() : std::string();
  if (text == "app-exit") {
    reader.error(node,
                 "until: app-exit needs the process: answers write it as "
                 "{app-exit: PID, start: TICKS}");
    return std::nullopt;
  }
  if (text == "restart") {
    if (reader.saved_at() < first_load()) return first_load();  // already over
    return std::nullopt;
  }
  std::uint64_t count = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  const std::string_view unit(end, text.data() + text.size() - end);
  static const std::map<std::string_view, seconds, std::less<>> units{
      {"s", seconds(1)}, {"m", minutes(1)}, {"h", hours(1)}, {"d", days(1)}};
  if (error == std::errc() && end != text.data() && units.contains(unit) && count <= 3650 * 86400) {
    return reader.saved_at() + count * units.find(unit)->second;
  }
  std::tm utc{};
  if (const char* rest = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &utc);
      rest != nullptr && *rest == '\0') {
    return system_clock::from_time_t(::timegm(&utc));
  }
  reader.error(node,
               "until must be a duration (90s, 5m, 2h, 7d), a UTC time like "
               "2026-12-01T18:00:00Z, or restart");
  return std::nullopt;
}

// A node as one line of YAML flow, for listings (`pktbrokerctl rules`).
std::string flow_text(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << node;
  return out.c_str();
}

// `until: {app-exit: PID, start: TICKS}`
std::optional<ProcessRef> until_exit(FileReader& reader, const YAML::Node& node) {
  if (!reader.expect_map(node, app_exit_keys, "until")) return std::nullopt;
  const auto pid = reader.number(node["app-exit"], 0x3fffffff, "app-exit");
  const auto start = reader.number(node["start"], UINT64_MAX, "start");
  if (!pid || !start) return std::nullopt;
  return ProcessRef{static_cast<std::uint32_t>(*pid), *start};
}

// The uid N of a file policy.d/answers-uidN.yaml, or nullopt for any other file.
std::optional<std::uint32_t> answer_file_uid(const fs::path& file) {
  const std::string name = file.filename().string();
  constexpr std::string_view prefix = "answers-uid";
  if (file.parent_path().filename() != "policy.d" || !name.starts_with(prefix) ||
      !name.ends_with(".yaml")) {
    return std::nullopt;
  }
  const std::string_view digits =
      std::string_view(name).substr(prefix.size(), name.size() - prefix.size() - 5);
  std::uint32_t uid = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), uid);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return uid;
}

// Answer rules live only in their user's answer file, decide only that user's packets, and
// decide at once: a user's answer never reaches past what that user was asked.
bool check_answer_rule(FileReader& reader, const YAML::Node& item, Rule& rule,
                       const Matcher* matcher) {
  const auto owner = answer_file_uid(reader.file());
  const YAML::Node answers = item["answers"];
  if (!answers) {
    if (!owner) return true;
    reader.error(item, "an answer file holds only rules with answers: ASK_RULE");
    return false;
  }
  if (!owner) {
    reader.error(answers, "answers: is for a user's answer file (policy.d/answers-uidUID.yaml)");
    return false;
  }
  bool ok = true;
  if (!answers.IsScalar() || answers.Scalar().empty()) {
    reader.error(answers, "answers names the ask rule this rule answers");
    ok = false;
  } else {
    rule.answers = answers.Scalar();
  }
  rule.answer_uid = *owner;
  // What an answer may look at: the program, the user, the addresses and ports. Nothing that
  // could stop loading later (a group or interface renamed, a plugin unloaded).
  static const std::set<std::string, std::less<>> answer_keys{
      "uid",      "proto",    "src",         "dst",        "sport",      "dport",
      "app.path", "app.name", "app.cmdline", "app.cgroup", "app.parent", "not"};
  const YAML::Node match = item["match"];
  for (const YAML::Node& fields : {match, match && match.IsMap() ? match["not"] : YAML::Node()}) {
    if (!fields || !fields.IsMap()) continue;
    for (const auto& entry : fields) {
      if (!answer_keys.contains(entry.first.Scalar())) {
        reader.error(entry.first,
                     "an answer rule matches uid, proto, src, dst, sport, dport and app.* "
                     "only, not " +
                         entry.first.Scalar());
        ok = false;
      }
    }
  }
  if (matcher != nullptr &&
      (matcher->required().uids != std::vector{*owner} || !matcher->excluded().uids.empty())) {
    reader.error(item["match"] ? item["match"] : item,
                 "an answer rule of uid " + std::to_string(*owner) +
                     " must match uid: " + std::to_string(*owner));
    ok = false;
  }
  if (rule.deliver || rule.inspect || rule.ask || item["mirror"] || item["priority"]) {
    reader.error(item,
                 "an answer rule's verdict is accept or drop, without mirror or priority (it "
                 "sits at its ask rule)");
    ok = false;
  }
  return ok;
}

void read_rules(FileReader& reader, const YAML::Node& node, std::vector<RuleDraft>& rules) {
  if (node.IsNull()) return;  // `rules:` with every rule commented out
  if (!node.IsSequence()) {
    reader.error(node, "rules must be a list");
    return;
  }
  for (const auto& item : node) {
    if (!reader.expect_map(item, rule_keys, "rule")) continue;
    RuleDraft draft;
    draft.rule.file = reader.file();
    draft.rule.line = item.Mark().line + 1;
    draft.column = item.Mark().column + 1;
    bool ok = true;
    if (!item["name"] || !item["name"].IsScalar() || item["name"].Scalar().empty()) {
      reader.error(item, "a rule needs a name");
      ok = false;
    } else {
      draft.rule.name = item["name"].Scalar();
    }
    if (!item["verdict"]) {
      reader.error(item, "rule '" + draft.rule.name + "' needs a verdict");
      ok = false;
    } else if (item["verdict"].IsMap() && item["verdict"]["deliver"]) {
      ok = reader.delivery(item["verdict"], draft.rule) && ok;
    } else if (item["verdict"].IsMap() && item["verdict"]["inspect"]) {
      ok = reader.inspection(item["verdict"], draft.rule) && ok;
    } else if (item["verdict"].IsMap() && item["verdict"]["ask"]) {
      ok = reader.asking(item["verdict"], draft.rule) && ok;
    } else if (auto verdict = reader.verdict(item["verdict"])) {
      draft.rule.verdict = *verdict;
    } else {
      ok = false;
    }
    std::shared_ptr<const Matcher> matcher =
        std::make_shared<Matcher>(MatchFields{}, MatchFields{});
    if (const YAML::Node match = item["match"]) {
      matcher = reader.matcher(match);
      ok = ok && matcher != nullptr;
    }
    if (item["priority"]) {
      if (!item["priority"].IsScalar()) {
        reader.error(item["priority"], "priority must be a number");
        ok = false;
      } else {
        const std::string& text = item["priority"].Scalar();
        int priority = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), priority);
        if (error != std::errc() || end != text.data() + text.size()) {
          reader.error(item["priority"], "priority must be a whole number, e.g. -10 or 50");
          ok = false;
        }
        draft.priority = priority;
        draft.rule.priority = priority;
      }
    }
    if (const YAML::Node until = item["until"]; until && until.IsMap()) {
      if (auto process = until_exit(reader, until)) {
        draft.rule.until_exit = *process;
        // Gone already (or the pid is another process now): expired.
        if (process_start_ticks(process->pid) != process->start_ticks) {
          draft.rule.until = std::chrono::system_clock::time_point{};
        }
      } else {
        ok = false;
      }
    } else if (until) {
      if (auto at = until_time(reader, until)) {
        draft.rule.until = *at;
      } else if (!until.IsScalar() || until.Scalar() != "restart") {
        ok = false;
      }
    }
    draft.rule.match_text = item["match"] ? flow_text(item["match"]) : "{}";
    draft.rule.verdict_text = flow_text(item["verdict"]);
    if (const YAML::Node mirror = item["mirror"]) {
      if (!mirror.IsScalar() || !proto::valid_channel_name(mirror.Scalar())) {
        reader.error(mirror, "mirror names a channel declared under channels:");
        ok = false;
      } else if (draft.rule.deliver || draft.rule.inspect || draft.rule.ask) {
        reader.error(mirror,
                     "mirror needs a rule whose verdict the policy decides at once "
                     "(not deliver, inspect or ask)");
        ok = false;
      } else {
        draft.rule.mirror = mirror.Scalar();
      }
    }
    ok = check_answer_rule(reader, item, draft.rule, matcher.get()) && ok;
    draft.valid = ok;
    if (ok) draft.rule.matcher = std::move(matcher);
    rules.push_back(std::move(draft));
  }
}

/// `access:` of a channel: `{user|group|uid|gid: WHO, rights: [receive, send, manage]}`.
std::optional<proto::ChannelAccess> read_access(FileReader& reader, const YAML::Node& item) {
  if (!reader.expect_map(item, access_keys, "channel access")) return std::nullopt;
  const int who = (item["user"] ? 1 : 0) + (item["group"] ? 1 : 0) + (item["uid"] ? 1 : 0) +
                  (item["gid"] ? 1 : 0);
  if (who != 1) {
    reader.error(item, "an access entry names exactly one of user, group, uid or gid");
    return std::nullopt;
  }
  proto::ChannelAccess access;
  bool ok = true;
  if (const YAML::Node user = item["user"]) {
    const passwd* entry = user.IsScalar() ? getpwnam(user.Scalar().c_str()) : nullptr;
    ok = entry != nullptr;
    if (!ok) reader.error(user, "unknown user '" + user.Scalar() + "'");
    if (ok) access.id = entry->pw_uid;
  } else if (const YAML::Node group = item["group"]) {
    const struct group* entry = group.IsScalar() ? getgrnam(group.Scalar().c_str()) : nullptr;
    ok = entry != nullptr;
    if (!ok) reader.error(group, "unknown group '" + group.Scalar() + "'");
    if (ok) access = {proto::ChannelAccess::Kind::gid, entry->gr_gid, 0};
  } else {
    const bool is_uid = static_cast<bool>(item["uid"]);
    const auto id =
        reader.number(is_uid ? item["uid"] : item["gid"], 0xffffffff, is_uid ? "uid" : "gid");
    ok = id.has_value();
    access.kind = is_uid ? proto::ChannelAccess::Kind::uid : proto::ChannelAccess::Kind::gid;
    access.id = static_cast<std::uint32_t>(id.value_or(0));
  }
  if (!item["rights"]) {
    reader.error(item, "an access entry needs rights: [receive, send, manage]");
    return std::nullopt;
  }
  reader.scalars(item["rights"], "rights", [&](const YAML::Node& right) {
    if (right.Scalar() == "receive") {
      access.rights |= proto::right_receive;
    } else if (right.Scalar() == "send") {
      access.rights |= proto::right_send;
    } else if (right.Scalar() == "manage") {
      access.rights |= proto::right_manage;
    } else {
      reader.error(right,
                   "unknown right '" + right.Scalar() + "'; expected receive, send or manage");
      ok = false;
    }
  });
  return ok ? std::optional(access) : std::nullopt;
}

void read_channels(FileReader& reader, const YAML::Node& node, std::vector<ChannelConfig>& out) {
  if (!node.IsSequence()) {
    reader.error(node, "channels must be a list of channels");
    return;
  }
  for (const auto& item : node) {
    if (!reader.expect_map(item, channel_keys, "channel")) continue;
    ChannelConfig channel;
    proto::ChannelCreate& spec = channel.spec;
    channel.origin = reader.file() + ":" + std::to_string(item.Mark().line + 1);
    channel.column = item.Mark().column + 1;
    bool ok = true;
    const YAML::Node name = item["name"];
    if (!name || !name.IsScalar() || !proto::valid_channel_name(name.Scalar())) {
      reader.error(name ? name : item,
                   "a channel needs a name: 1 to 64 of a-z, 0-9, '_', '.', '-'");
      ok = false;
    } else {
      spec.name = name.Scalar();
    }
    spec.delivery = "broadcast";
    if (const YAML::Node delivery = item["delivery"]) {
      ok = delivery.IsScalar() && valid_plugin_name(delivery.Scalar());
      if (!ok)
        reader.error(delivery, "delivery names a delivery-policy plugin: broadcast, switch, ...");
      if (ok) spec.delivery = delivery.Scalar();
    }
    if (const YAML::Node link = item["link"]) {
      if (link.IsScalar() && link.Scalar() == "ip") {
        spec.link = proto::LinkType::ip;
      } else if (!link.IsScalar() || link.Scalar() != "ethernet") {
        reader.error(link, "link is ethernet or ip");
        ok = false;
      }
    }
    spec.max_frame = spec.link == proto::LinkType::ip ? 65535 : 1518;
    const auto bound = [&](const char* key, std::uint64_t low, std::uint64_t high,
                           std::uint32_t& value) {
      if (const YAML::Node n = item[key]) {
        const auto parsed = reader.number(n, high, key);
        if (parsed && *parsed < low) {
          reader.error(n, std::string(key) + " must be at least " + std::to_string(low));
        }
        ok = ok && parsed && *parsed >= low;
        if (parsed) value = static_cast<std::uint32_t>(*parsed);
      }
    };
    bound("max_members", 1, 4096, spec.max_members);
    bound("max_frame", 14, proto::max_frame, spec.max_frame);
    bound("queue_length", 1, 65536, spec.queue_length);
    if (const YAML::Node overflow = item["overflow"]) {
      if (overflow.IsScalar() && overflow.Scalar() == "backpressure") {
        spec.overflow = proto::Overflow::backpressure;
      } else if (!overflow.IsScalar() || overflow.Scalar() != "drop") {
        reader.error(overflow, "overflow is drop or backpressure");
        ok = false;
      }
    }
    if (const YAML::Node access = item["access"]) {
      if (!access.IsSequence()) {
        reader.error(access, "access must be a list of {user|group|uid|gid: WHO, rights: [...]}");
        ok = false;
      } else {
        for (const auto& entry : access) {
          if (auto parsed = read_access(reader, entry)) {
            spec.access.push_back(*parsed);
          } else {
            ok = false;
          }
        }
      }
    }
    if (const YAML::Node taps = item["tap"]) {
      reader.scalars(taps, "tap", [&](const YAML::Node& tap) {
        if (tap.Scalar().empty() || tap.Scalar().size() > 15 ||
            tap.Scalar().find_first_of("/ :") != std::string::npos) {
          reader.error(tap, "tap names an interface: 1 to 15 characters, no '/', ':' or space");
          ok = false;
        } else {
          channel.taps.push_back(tap.Scalar());
        }
      });
    }
    if (ok) out.push_back(std::move(channel));
  }
}

YAML::Node load_yaml(FileReader& reader, std::string_view text) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& error) {
    reader.error(error.mark, "YAML syntax: " + error.msg);
    return {};
  }
}

/// What the files read so far add up to.
struct PolicyDraft {
  BrokerConfig broker;
  std::vector<RuleDraft> rules;
  std::vector<FileReader::PluginReference> plugin_references;
  std::vector<std::string> left_out;  ///< answer files or rules not used, and why
};

/// A top-level key of a policy file and the function that reads its value.
struct Section {
  std::string_view key;
  bool in_drop_ins;  ///< allowed in policy.d/*.yaml, not only in the main file
  void (*read)(FileReader&, const YAML::Node&, PolicyDraft&);
};

constexpr Section sections[] = {
    {"broker", false,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) { read_broker(r, n, d.broker); }},
    {"rules", true,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) { read_rules(r, n, d.rules); }},
    {"socket", false,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) {
       read_socket(r, n, d.broker.socket);
     }},
    {"clients", false,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) {
       read_clients(r, n, d.broker.clients);
     }},
    {"plugins", false,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) { r.plugins(n, d.broker.plugins); }},
    {"metrics", false,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) {
       read_metrics(r, n, d.broker.metrics_listen);
     }},
    {"events", false,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) {
       read_events(r, n, d.broker.events);
     }},
    {"channels", false,
     [](FileReader& r, const YAML::Node& n, PolicyDraft& d) {
       read_channels(r, n, d.broker.channels);
     }},
};

/// Channels: unique names and taps, mirrors that name an ip channel; each delivery plugin
/// not listed under plugins: is loaded with its defaults.
void check_channels(PolicyDraft& policy, std::vector<Diagnostic>& diagnostics) {
  std::map<std::string, const ChannelConfig*> names;
  std::set<std::string> taps;
  for (const ChannelConfig& channel : policy.broker.channels) {
    const auto where = [&](std::string message) {
      const auto colon = channel.origin.rfind(':');
      diagnostics.push_back({channel.origin.substr(0, colon),
                             std::stoi(channel.origin.substr(colon + 1)), channel.column,
                             std::move(message)});
    };
    if (!names.emplace(channel.spec.name, &channel).second) {
      where("duplicate channel name '" + channel.spec.name + "'");
    }
    for (const std::string& tap : channel.taps) {
      if (!taps.insert(tap).second) where("tap '" + tap + "' is named twice");
    }
    auto& plugins = policy.broker.plugins;
    if (std::none_of(plugins.begin(), plugins.end(),
                     [&](const PluginSpec& p) { return p.name == channel.spec.delivery; })) {
      plugins.push_back({channel.spec.delivery, {}, {}, channel.origin});
    }
  }
  for (const RuleDraft& draft : policy.rules) {
    if (draft.rule.mirror.empty()) continue;
    const auto found = names.find(draft.rule.mirror);
    if (found == names.end()) {
      diagnostics.push_back({draft.rule.file, draft.rule.line, draft.column,
                             "rule '" + draft.rule.name + "' mirrors to channel '" +
                                 draft.rule.mirror + "', which channels: does not declare"});
    } else if (found->second->spec.link != proto::LinkType::ip) {
      diagnostics.push_back({draft.rule.file, draft.rule.line, draft.column,
                             "rule '" + draft.rule.name + "' mirrors packets to channel '" +
                                 draft.rule.mirror +
                                 "', which carries ethernet frames: give it "
                                 "link: ip"});
    }
  }
}

std::vector<std::string_view> section_keys(bool drop_in) {
  std::vector<std::string_view> keys;
  for (const Section& section : sections) {
    if (section.in_drop_ins || !drop_in) keys.push_back(section.key);
  }
  return keys;
}

void read_document(FileReader& reader, std::string_view text, bool drop_in, PolicyDraft& draft) {
  static const std::vector<std::string_view> main_keys = section_keys(false);
  static const std::vector<std::string_view> drop_in_keys = section_keys(true);
  const YAML::Node root = load_yaml(reader, text);
  if (!root || root.IsNull()) return;  // an empty file (or a syntax error already reported)
  if (!reader.expect_map(root, drop_in ? drop_in_keys : main_keys,
                         drop_in ? "a policy.d drop-in (only rules: is allowed)" : "the policy")) {
    return;
  }
  for (const Section& section : sections) {
    const YAML::Node node = root[std::string(section.key)];
    if (node && (section.in_drop_ins || !drop_in)) section.read(reader, node, draft);
  }
  auto& references = reader.plugin_references();
  draft.plugin_references.insert(draft.plugin_references.end(), references.begin(),
                                 references.end());
  references.clear();
}

std::shared_ptr<const Policy> finish(PolicyDraft policy, std::vector<Diagnostic> diagnostics) {
  check_channels(policy, diagnostics);
  std::vector<RuleDraft>& drafts = policy.rules;
  std::map<std::string, const RuleDraft*> names;
  // An answer rule named like another rule is left out: a user's file never stops loading.
  std::set<std::string> other_names;
  for (const auto& draft : drafts) {
    if (draft.rule.answers.empty()) other_names.insert(draft.rule.name);
  }
  std::set<std::string> answer_names;
  std::erase_if(drafts, [&](const RuleDraft& draft) {
    if (draft.rule.answers.empty()) return false;
    const bool taken =
        other_names.contains(draft.rule.name) || !answer_names.insert(draft.rule.name).second;
    if (taken) {
      policy.left_out.push_back(draft.rule.name + " (" + draft.rule.file + ":" +
                                std::to_string(draft.rule.line) + "), named like another rule");
    }
    return taken;
  });
  for (const auto& draft : drafts) {
    if (draft.rule.name.empty()) continue;
    const auto [it, fresh] = names.emplace(draft.rule.name, &draft);
    if (!fresh) {
      diagnostics.push_back({draft.rule.file, draft.rule.line, draft.column,
                             "duplicate rule name '" + draft.rule.name + "' (first defined at " +
                                 it->second->rule.file + ":" +
                                 std::to_string(it->second->rule.line) + ")"});
    }
  }
  for (auto& reference : policy.plugin_references) {
    const auto& loaded = policy.broker.plugins;
    if (std::none_of(loaded.begin(), loaded.end(),
                     [&](const PluginSpec& spec) { return spec.name == reference.plugin; })) {
      reference.where.message =
          "plugin '" + reference.plugin +
          "' is used here but not loaded: add it to the policy's plugins: list";
      diagnostics.push_back(std::move(reference.where));
    }
  }
  if (!diagnostics.empty()) {
    // Report in reading order: files as they were read, then by position.
    std::vector<std::string> files;
    for (const auto& d : diagnostics) {
      if (std::find(files.begin(), files.end(), d.file) == files.end()) files.push_back(d.file);
    }
    const auto rank = [&](const Diagnostic& d) {
      return std::tuple(std::find(files.begin(), files.end(), d.file) - files.begin(), d.line,
                        d.column);
    };
    std::stable_sort(diagnostics.begin(), diagnostics.end(),
                     [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
    throw PolicyError(std::move(diagnostics));
  }
  std::stable_sort(drafts.begin(), drafts.end(),
                   [](const RuleDraft& a, const RuleDraft& b) { return a.priority < b.priority; });
  std::vector<Rule> rules;
  std::vector<std::string> expired;
  std::map<std::string, std::vector<Rule>> answers;  // by the ask rule they answer
  rules.reserve(drafts.size());
  const auto now = std::chrono::system_clock::now();
  const auto origin = [](const Rule& rule) {
    return rule.name + " (" + rule.file + ":" + std::to_string(rule.line) + ")";
  };
  for (auto& draft : drafts) {
    if (draft.rule.until && *draft.rule.until <= now) {
      expired.push_back(origin(draft.rule));
    } else if (!draft.rule.answers.empty()) {
      answers[draft.rule.answers].push_back(std::move(draft.rule));
    } else {
      rules.push_back(std::move(draft.rule));
    }
  }
  // Each ask rule's answers just before it, in file order.
  std::vector<Rule> placed;
  placed.reserve(drafts.size());
  for (Rule& rule : rules) {
    if (const auto found = answers.find(rule.name); found != answers.end() && rule.ask) {
      rule.answer_rules = found->second.size();
      for (Rule& answer : found->second) placed.push_back(std::move(answer));
      answers.erase(found);
    }
    placed.push_back(std::move(rule));
  }
  // An ask rule removed since: its answers are left out (a reload never fails on them).
  for (const auto& [target, orphans] : answers) {
    for (const Rule& orphan : orphans) {
      expired.push_back(origin(orphan) + ", answering '" + target + "', no ask rule now");
    }
  }
  rules = std::move(placed);
  for (std::string& reason : policy.left_out) expired.push_back(std::move(reason));
  forget_interface_names();
  auto compiled = std::make_shared<Policy>(std::move(policy.broker), std::move(rules));
  compiled->set_expired(std::move(expired));
  return compiled;
}

std::optional<std::string> read_file(const fs::path& path, std::vector<Diagnostic>& diagnostics) {
  std::ifstream file(path);
  if (!file) {
    diagnostics.push_back(
        {path.string(), 0, 0, "cannot read the file: " + std::string(std::strerror(errno))});
    return std::nullopt;
  }
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// When the file was last written (now when it cannot be told).
std::chrono::system_clock::time_point saved_at(const fs::path& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) return std::chrono::system_clock::now();
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(status.st_mtim.tv_sec) +
          std::chrono::nanoseconds(status.st_mtim.tv_nsec)));
}

// A user's answer file with a problem is left out whole (logged), never failing the policy:
// pktbrokerd writes it, and what it holds may go stale (a rule named later by the admin).
void read_answer_file(const fs::path& path, PolicyDraft& draft) {
  std::vector<Diagnostic> problems;
  auto answers = std::make_unique<PolicyDraft>();  // (on the stack, GCC 12 warns wrongly)
  if (const auto text = read_file(path, problems)) {
    FileReader reader(path.string(), problems);
    reader.set_saved_at(saved_at(path));
    read_document(reader, *text, true, *answers);
  }
  if (!problems.empty()) {
    draft.left_out.push_back(path.string() + ", whole: " + problems.front().to_string());
    return;
  }
  for (RuleDraft& rule : answers->rules) draft.rules.push_back(std::move(rule));
}

}  // namespace

std::shared_ptr<const Matcher> compile_match(std::string_view yaml, std::string_view source) {
  std::vector<Diagnostic> diagnostics;
  FileReader reader(std::string(source), diagnostics);
  if (yaml.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return std::make_shared<Matcher>(MatchFields{}, MatchFields{});
  }
  const YAML::Node root = load_yaml(reader, yaml);
  std::shared_ptr<const Matcher> matcher;
  if (root) {
    matcher = reader.matcher(root);
    if (matcher && matcher->uses_app()) {
      reader.error(root, "app.* fields are for policy rules; a selector cannot use them");
    }
  }
  if (!diagnostics.empty()) throw PolicyError(std::move(diagnostics));
  return matcher;
}

std::shared_ptr<const Policy> parse_policy(std::string_view yaml, std::string_view file_name) {
  std::vector<Diagnostic> diagnostics;
  FileReader reader(std::string(file_name), diagnostics);
  first_load();
  reader.set_saved_at(std::chrono::system_clock::now());
  PolicyDraft draft;
  read_document(reader, yaml, false, draft);
  return finish(std::move(draft), std::move(diagnostics));
}

std::vector<Diagnostic> check_answer_file(std::string_view text, const fs::path& path) {
  std::vector<Diagnostic> problems;
  FileReader reader(path.string(), problems);
  reader.set_saved_at(std::chrono::system_clock::now());
  auto draft = std::make_unique<PolicyDraft>();
  read_document(reader, text, true, *draft);
  return problems;
}

fs::path answer_file(const fs::path& config, std::uint32_t uid) {
  return config.parent_path() / "policy.d" / ("answers-uid" + std::to_string(uid) + ".yaml");
}

std::shared_ptr<const Policy> load_policy(const fs::path& file) {
  std::vector<Diagnostic> diagnostics;
  PolicyDraft draft;
  first_load();
  if (const auto text = read_file(file, diagnostics)) {
    FileReader reader(file.string(), diagnostics);
    reader.set_saved_at(saved_at(file));
    read_document(reader, *text, false, draft);
  }
  const fs::path drop_in_dir = file.parent_path() / "policy.d";
  std::error_code error;
  if (fs::is_directory(drop_in_dir, error)) {
    std::set<fs::path> drop_ins;  // file-name order
    for (const auto& entry : fs::directory_iterator(drop_in_dir, error)) {
      if (entry.path().extension() == ".yaml" && entry.is_regular_file(error))
        drop_ins.insert(entry.path());
    }
    for (const auto& path : drop_ins) {
      if (answer_file_uid(path)) {
        read_answer_file(path, draft);
        continue;
      }
      if (const auto text = read_file(path, diagnostics)) {
        FileReader reader(path.string(), diagnostics);
        reader.set_saved_at(saved_at(path));
        read_document(reader, *text, true, draft);
      }
    }
  }
  return finish(std::move(draft), std::move(diagnostics));
}

}  // namespace pktbroker
