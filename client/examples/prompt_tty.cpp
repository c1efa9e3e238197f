// pktbroker-prompt-tty: answers the `ask` prompts of your user (root: --all, everyone's) in a
// terminal, one question at a time, oldest first:
//
//   [1/2] curl (/usr/bin/curl, pid 4242, uid 1000) -> tcp 192.0.2.7:443
//         3 connection(s) waiting, 27s left, then drop (rule ask-outgoing)
//   a/d allow/deny once  A/D always  m/M 15 minutes  e/E until it exits  s skip  q quit
//
// Keys are read one at a time (the terminal's line editing and echo are off while it runs).
// What a program calls itself is shown with control bytes as \xNN: a hostile program cannot
// repaint the prompt with escape sequences.
#include "pktbroker/client.hpp"
#include "tools/terminal_text.hpp"

#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

namespace proto = pktbroker::proto;

termios saved_terminal{};
bool terminal_changed = false;

void restore_terminal() {
  if (terminal_changed) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_terminal);
}

void on_signal(int) {
  restore_terminal();
  std::_Exit(0);
}

void raw_keys() {
  if (::isatty(STDIN_FILENO) == 0 || ::tcgetattr(STDIN_FILENO, &saved_terminal) != 0) return;
  termios keys = saved_terminal;
  keys.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  keys.c_cc[VMIN] = 1;
  keys.c_cc[VTIME] = 0;
  terminal_changed = ::tcsetattr(STDIN_FILENO, TCSANOW, &keys) == 0;
  std::atexit(restore_terminal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_signal);
}

using pktbroker::prompt_destination;
using pktbroker::terminal_text;

const char* verdict_text(proto::VerdictCode code) {
  return code == proto::VerdictCode::accept ? "accept" : "drop";
}

class PromptTty {
 public:
  explicit PromptTty(pktbroker::Client& client) : client_(client) {}

  void add(proto::Prompt prompt) {
    prompts_.push_back(std::move(prompt));
    if (prompts_.size() == 1) show();
  }

  void closed(const proto::PromptClosed& closed) {
    const auto it = std::find_if(prompts_.begin(), prompts_.end(),
                                 [&](const proto::Prompt& p) { return p.id == closed.id; });
    if (it == prompts_.end()) return;  // answered here: said already
    const bool current = it == prompts_.begin();
    std::printf("prompt %llu (%s): %s\n", static_cast<unsigned long long>(closed.id),
                terminal_text(it->name).c_str(),
                closed.how == proto::PromptEnd::timed_out
                    ? ("timed out: " + std::string(verdict_text(closed.verdict))).c_str()
                    : ("answered elsewhere: " + terminal_text(closed.text)).c_str());
    prompts_.erase(it);
    if (current) show();
  }

  /// One key; false to quit.
  bool key(char c) {
    if (c == 'q') return false;
    if (prompts_.empty()) return true;
    // A key typed for the question before (which just ended) must not answer this one: keys
    // are taken only once it has been on the screen a moment.
    if (std::chrono::steady_clock::now() - shown_at_ < settle) {
      ::tcflush(STDIN_FILENO, TCIFLUSH);
      return true;
    }
    proto::PromptAnswer answer{prompts_.front().id, proto::AnswerDecision::allow,
                               proto::AnswerSpan::once, 0};
    switch (c) {
      case 'a': break;
      case 'd': answer.decision = proto::AnswerDecision::deny; break;
      case 'A': answer.span = proto::AnswerSpan::always; break;
      case 'D':
        answer.decision = proto::AnswerDecision::deny;
        answer.span = proto::AnswerSpan::always;
        break;
      case 'm':
      case 'M':
        answer.decision = c == 'm' ? proto::AnswerDecision::allow : proto::AnswerDecision::deny;
        answer.span = proto::AnswerSpan::minutes;
        answer.minutes = 15;
        break;
      case 'e':
      case 'E':
        answer.decision = c == 'e' ? proto::AnswerDecision::allow : proto::AnswerDecision::deny;
        answer.span = proto::AnswerSpan::app_exit;
        break;
      case 's':
        std::rotate(prompts_.begin(), prompts_.begin() + 1, prompts_.end());
        show();
        return true;
      default: return true;
    }
    prompts_.erase(prompts_.begin());
    std::string result;
    if (const auto error = client_.answer(answer, result)) {
      std::printf("not answered: %s\n", error == pktbroker::ClientError::broker_error
                                            ? terminal_text(client_.last_error().text).c_str()
                                            : error.message().c_str());
    } else {
      std::printf("answered: %s %s: %s\n",
                  answer.decision == proto::AnswerDecision::allow ? "allow" : "deny",
                  span_text(answer), terminal_text(result).c_str());
    }
    show();
    return true;
  }

 private:
  static const char* span_text(const proto::PromptAnswer& answer) {
    switch (answer.span) {
      case proto::AnswerSpan::once: return "once";
      case proto::AnswerSpan::minutes: return "for 15 minutes";
      case proto::AnswerSpan::app_exit: return "until it exits";
      case proto::AnswerSpan::always: return "always";
    }
    return "";
  }

  void show() {
    shown_at_ = std::chrono::steady_clock::now();
    if (prompts_.empty()) {
      std::printf("waiting for prompts (q quits)\n");
    } else {
      const proto::Prompt& p = prompts_.front();
      std::printf("[1/%zu] %s (%s, pid %u, uid %u) -> %s\n", prompts_.size(),
                  terminal_text(p.name).c_str(), terminal_text(p.path).c_str(), p.pid, p.uid,
                  prompt_destination(p).c_str());
      std::printf("      %u connection(s) waiting, %us left, then %s (rule %s)\n", p.waiting,
                  (p.left_ms + 999) / 1000, verdict_text(p.fallback),
                  terminal_text(p.rule).c_str());
      std::printf(
          "  a/d allow/deny once  A/D always  m/M 15 minutes  e/E until it exits  s skip  "
          "q quit\n");
    }
    std::fflush(stdout);
  }

  static constexpr std::chrono::milliseconds settle{500};
  pktbroker::Client& client_;
  std::vector<proto::Prompt> prompts_;
  std::chrono::steady_clock::time_point shown_at_{};
};

int fail(const pktbroker::Client& client, const char* what, std::error_code error) {
  std::fprintf(stderr, "pktbroker-prompt-tty: %s: %s\n", what,
               error == pktbroker::ClientError::broker_error ? client.last_error().text.c_str()
                                                             : error.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket = proto::default_socket_path;
  proto::PromptScope scope = proto::PromptScope::own;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--all") {
      scope = proto::PromptScope::all;
    } else if (arg == "-h" || arg == "--help" || arg.starts_with('-')) {
      std::printf(
          "usage: pktbroker-prompt-tty [--all] [SOCKET]\n"
          "Answers the ask prompts of your user (--all: everyone's; root only) in this\n"
          "terminal. SOCKET defaults to %s.\n",
          proto::default_socket_path);
      return arg.starts_with("-h") || arg == "--help" ? 0 : 2;
    } else {
      socket = arg;
    }
  }
  pktbroker::Client client;
  if (const auto error = client.connect(socket, "prompt-tty", proto::role_prompt)) {
    return fail(client, "connect", error);
  }
  if (const auto error = client.watch_prompts(scope)) return fail(client, "watch", error);
  raw_keys();
  PromptTty tty(client);
  std::printf("waiting for prompts (q quits)\n");
  std::fflush(stdout);
  for (;;) {
    pktbroker::Client::PromptEvent event;
    std::error_code error;
    while (!(error = client.next_prompt_event(event, 0))) {
      if (auto* prompt = std::get_if<proto::Prompt>(&event)) {
        tty.add(std::move(*prompt));
      } else {
        tty.closed(std::get<proto::PromptClosed>(event));
      }
    }
    if (error != pktbroker::ClientError::timeout) return fail(client, "the broker", error);
    std::array<pollfd, 2> wait{{{STDIN_FILENO, POLLIN, 0}, {client.native_handle(), POLLIN, 0}}};
    if (::poll(wait.data(), wait.size(), -1) < 0) continue;  // a signal: look again
    if (wait[0].revents != 0) {
      char c = 0;
      if (::read(STDIN_FILENO, &c, 1) != 1 || !tty.key(c)) return 0;
    }
  }
}
