#include "replay/replayer.hpp"

#include "plugins/host/tuple_match.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstring>
#include <deque>

namespace pktbroker::replay {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

std::string_view to_string(Status status) noexcept {
  switch (status) {
    case Status::complete: return "complete";
    case Status::capture_gap: return "capture_gap";
    case Status::server_silent: return "server_silent";
    case Status::reset: return "reset";
    case Status::refused: return "refused";
    case Status::unreachable: return "unreachable";
    case Status::closed_early: return "closed_early";
    case Status::response_differs: return "response_differs";
    case Status::no_recorded_answer: return "no_recorded_answer";
    case Status::stalled: return "stalled";
    case Status::turn_bytes_exceeded: return "turn_bytes_exceeded";
    case Status::turn_time_exceeded: return "turn_time_exceeded";
    case Status::not_started: return "not_started";
    case Status::skipped: return "skipped";
  }
  return "unknown";
}

namespace {

constexpr auto connect_timeout = std::chrono::seconds(5);
constexpr auto housekeeping_period = std::chrono::milliseconds(200);
constexpr std::size_t read_size = std::size_t{64} * 1024;
constexpr std::size_t max_early_reads = 4096;       // datagrams kept between turns (empty ones too)
constexpr std::size_t max_turn_datagrams = 65536;   // their sizes kept per server turn
constexpr std::size_t max_foreign_connections = 8;  // to an active data port, from elsewhere

pktb_tuple tuple_of(const RecordedFlow& flow) {
  pktb_tuple tuple{};
  tuple.family = flow.client.address.family;
  tuple.protocol = flow.protocol;
  tuple.client_port = flow.client.port;
  tuple.server_port = flow.server.port;
  std::memcpy(tuple.client_addr, flow.client.address.bytes.data(), 16);
  std::memcpy(tuple.server_addr, flow.server.address.bytes.data(), 16);
  return tuple;
}

IpAddress to_ip(const asio::ip::address& address) {
  IpAddress ip;
  if (address.is_v6()) {
    ip.family = 6;
    const auto bytes = address.to_v6().to_bytes();
    std::copy(bytes.begin(), bytes.end(), ip.bytes.begin());
  } else {
    ip.family = 4;
    const auto bytes = address.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), ip.bytes.begin());
  }
  return ip;
}

asio::ip::address to_asio(const IpAddress& address) {
  if (address.family == 6) {
    asio::ip::address_v6::bytes_type bytes;
    std::copy(address.bytes.begin(), address.bytes.end(), bytes.begin());
    return asio::ip::address_v6(bytes);
  }
  asio::ip::address_v4::bytes_type bytes;
  std::copy_n(address.bytes.begin(), 4, bytes.begin());
  return asio::ip::address_v4(bytes);
}

/// A plugin's per-flow view and state, fresh for each phase (recorded, live).
struct PluginFlowState {
  pktb_flow abi{};
  std::vector<std::uint8_t> state;

  PluginFlowState(const Plugin* plugin, const RecordedFlow& flow, std::uint64_t parent) {
    abi.tuple = tuple_of(flow);
    abi.id = flow.id;
    abi.parent_id = parent;
    if (plugin != nullptr) state.resize(plugin->descriptor().flow_state_size);
    abi.state = state.empty() ? nullptr : state.data();
  }
};

/// Host services during the recorded phase: collects the expectations plugins announce.
class RecordedSink final : public CallSink {
 public:
  std::vector<std::pair<pktb_tuple, std::uint32_t>> expected;

  int set_field(const Plugin&, std::string_view, std::string_view) override { return 0; }
  int expect(const Plugin&, const pktb_tuple& pattern, std::uint32_t wildcards,
             std::uint32_t) override {
    expected.emplace_back(pattern, wildcards);
    return 0;
  }
  int release(const Plugin&, std::uint64_t, const pktb_decision&) override { return -1; }
  int set_timer(const Plugin&, std::uint32_t) override { return -1; }
  int remember_name(const Plugin&, const IpAddress&, std::string_view, std::uint32_t) override {
    return 0;
  }
};

class Replayer;

/// One flow being replayed: connect, then each turn in order. The socket is read all the
/// time: what the server sends outside a turn it answers in is kept for the next one.
class FlowRun : public std::enable_shared_from_this<FlowRun>, private CallSink {
 public:
  /// `parent`: the flow that announced this one (its plugin handles it too), or none.
  FlowRun(Replayer& replayer, std::size_t index, Endpoint live, Clock::time_point start_at,
          std::optional<std::size_t> parent);
  void start();
  /// A flow the live server opened to us (active FTP): its recorded server side is ours.
  void start_accepted(asio::ip::tcp::socket socket);
  void stop(Status status);  ///< ends the flow now (the cleanup pass)
  /// Ends the flow when it made no progress within the flow timeout, or its server turn has
  /// lasted longer than allowed.
  void check_time(Clock::time_point now);
  [[nodiscard]] bool finished() const noexcept { return finished_; }

 private:
  void do_connect();
  void next_turn();
  void send_client_turn();
  void start_server_turn();
  void read();
  void on_read(std::span<const std::uint8_t> data);
  void on_server_data(std::span<const std::uint8_t> data);
  void on_eof();
  void arm_idle();
  void end_server_turn();
  void end_drain();
  void finish(Status status, std::size_t turn = 0);
  [[nodiscard]] Status ended_status() const;
  [[nodiscard]] bool udp() const noexcept { return flow_.protocol == 17; }
  [[nodiscard]] const Turn& turn() const { return flow_.turns[turn_]; }
  [[nodiscard]] bool our_turns_left() const;
  /// --pcap-out: the connection is up (`connector` opened it), data went one way, a side closed.
  void record_open(Side connector);
  void record(bool ours, std::span<const std::uint8_t> data);
  void record_close(bool ours);
  /// Whether pktreplay sends this turn: the client's, or the server's in a mirrored flow.
  [[nodiscard]] bool ours(const Turn& t) const noexcept {
    return (t.side == Side::client) != mirrored_;
  }
  void keep(std::span<const std::uint8_t> data);
  [[nodiscard]] std::vector<std::vector<std::uint8_t>> masked(
      std::span<const std::uint8_t> data, std::span<const std::uint32_t> sizes) const;

  // CallSink: live-phase services (a plugin announcing the data connection it saw).
  int set_field(const Plugin&, std::string_view, std::string_view) override { return 0; }
  int expect(const Plugin&, const pktb_tuple& pattern, std::uint32_t, std::uint32_t) override;
  int release(const Plugin&, std::uint64_t, const pktb_decision&) override { return -1; }
  int set_timer(const Plugin&, std::uint32_t) override { return -1; }
  int remember_name(const Plugin&, const IpAddress&, std::string_view, std::uint32_t) override {
    return 0;
  }
  int replay_listen(const Plugin&, std::array<std::uint8_t, 16>& address,
                    std::uint16_t& port) override;
  void accept_data_connection(const std::shared_ptr<asio::ip::tcp::acceptor>& acceptor,
                              std::size_t child, std::size_t tries_left);

  Replayer& replayer_;
  std::size_t index_;
  const RecordedFlow& flow_;
  const Plugin* plugin_;
  PluginFlowState plugin_state_;
  asio::ip::tcp::socket tcp_;
  asio::ip::udp::socket udp_;
  asio::ip::tcp::endpoint tcp_endpoint_;
  asio::ip::udp::endpoint udp_endpoint_;
  asio::steady_timer timer_;
  Clock::time_point start_at_;
  Clock::time_point started_{};
  Clock::time_point last_progress_{};
  Clock::time_point turn_started_{};
  std::size_t turn_ = 0;
  std::unique_ptr<std::uint8_t[]> read_buffer_;  ///< read_size bytes, not zeroed: reads fill it
  bool reading_ = false;                         ///< a read is outstanding
  bool eof_ = false;                             ///< the server closed its side
  bool answering_ = false;                       ///< in a server turn, or reading the drain
  bool writing_ = false;                         ///< our turn is being written
  bool draining_ = false;  ///< after the last turn, a client's: reading until quiet
  std::deque<std::vector<std::uint8_t>> early_;  ///< read outside a server turn, for the next
  std::size_t early_bytes_ = 0;
  bool early_full_ = false;  ///< the cap was reached: nothing more kept until the next turn
  std::vector<std::uint8_t> received_;         ///< this server turn's bytes, up to max_flow_bytes
  std::uint64_t turn_bytes_ = 0;               ///< this server turn's bytes, all of them
  std::size_t datagrams_ = 0;                  ///< this server turn's datagrams (UDP) ...
  std::vector<std::uint32_t> live_datagrams_;  ///< ... and the size of each kept
  std::size_t first_difference_ = 0;           ///< turn (1-based) of the first differing answer
  std::size_t unrecorded_answer_ = 0;  ///< turn (1-based) of a live answer with no recording
  std::size_t expectations_ = 0;       ///< live announcements so far
  bool mirrored_ = false;  ///< the live server connected to us: we play the recorded server
  std::optional<LiveCapture::Conversation> recording_;               ///< with --pcap-out
  std::vector<std::shared_ptr<asio::ip::tcp::acceptor>> acceptors_;  ///< active data ports
  bool finished_ = false;
  FlowResult result_;
};

class Replayer {
 public:
  Replayer(const std::vector<RecordedFlow>& flows, const PluginSet& plugins, const Options& options,
           const Progress& progress)
      : flows_(flows),
        plugins_(plugins),
        options_(options),
        progress_(progress),
        housekeeping_(io_),
        results_(flows.size()),
        children_(flows.size()),
        parent_of_(flows.size()) {}

  Summary run();

  asio::io_context& io() { return io_; }
  const Options& options() const { return options_; }
  const RecordedFlow& flow(std::size_t index) const { return flows_[index]; }
  const Plugin* plugin_for(const RecordedFlow& flow) const {
    return plugins_.for_flow(flow.protocol, flow.server.port).get();
  }
  /// The live endpoint of a recorded server.
  Endpoint live_endpoint(const Endpoint& recorded) const;
  /// The recorded flow `parent`'s n-th announcement (from 0) stands for, if any left.
  [[nodiscard]] std::optional<std::size_t> child(std::size_t parent, std::size_t n) const;
  /// A live announcement by `parent`: replays its expected flow to the live endpoint ...
  void start_child(std::size_t parent, std::size_t child, Endpoint live);
  /// ... or on a connection the live server made to us.
  void start_accepted_child(std::size_t parent, std::size_t child, asio::ip::tcp::socket socket);
  void finished(std::size_t index, FlowResult result);

 private:
  void find_children();
  void launch();
  void start_flow(std::size_t index, Endpoint live, Clock::time_point at,
                  std::optional<std::size_t> parent = std::nullopt);
  void housekeeping();

  const std::vector<RecordedFlow>& flows_;
  const PluginSet& plugins_;
  const Options& options_;
  const Progress& progress_;
  asio::io_context io_;
  asio::steady_timer housekeeping_;
  Clock::time_point t0_{};
  std::vector<std::optional<FlowResult>> results_;
  std::vector<std::vector<std::size_t>> children_;     ///< expected flows, in announcement order
  std::vector<std::optional<std::size_t>> parent_of_;  ///< the flow that announces each child
  std::deque<std::size_t> waiting_;                    ///< root flows not started yet
  std::vector<std::weak_ptr<FlowRun>> running_;
  std::size_t active_ = 0;
  std::size_t done_ = 0;
};

FlowRun::FlowRun(Replayer& replayer, std::size_t index, Endpoint live, Clock::time_point start_at,
                 std::optional<std::size_t> parent)
    : replayer_(replayer),
      index_(index),
      flow_(replayer.flow(index)),
      plugin_(replayer.plugin_for(parent ? replayer.flow(*parent) : flow_)),
      plugin_state_(plugin_, flow_, parent ? replayer.flow(*parent).id : 0),
      tcp_(replayer.io()),
      udp_(replayer.io()),
      tcp_endpoint_(to_asio(live.address), live.port),
      udp_endpoint_(to_asio(live.address), live.port),
      timer_(replayer.io()),
      start_at_(start_at),
      read_buffer_(std::make_unique_for_overwrite<std::uint8_t[]>(read_size)) {
  result_.id = flow_.id;
  result_.protocol = flow_.protocol;
  result_.recorded_server = flow_.server;
  result_.live_server = live;
  result_.turns = flow_.turns.size();
  result_.plugin = plugin_ != nullptr ? plugin_->name() : "";
  result_.gaps = flow_.gaps;
  result_.gap_bytes = flow_.gap_bytes;
}

void FlowRun::start() {
  last_progress_ =
      std::max(Clock::now(), start_at_);  // a flow waiting for its start is not stalled
  timer_.expires_at(start_at_);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
    if (!error && !self->finished_) self->do_connect();
  });
}

void FlowRun::do_connect() {
  started_ = last_progress_ = Clock::now();
  if (udp()) {
    boost::system::error_code error;
    udp_.open(udp_endpoint_.protocol(), error);
    if (!error) udp_.connect(udp_endpoint_, error);
    if (error) return finish(Status::unreachable);
    record_open(Side::client);
    read();
    return next_turn();
  }
  timer_.expires_after(connect_timeout);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
    if (!error) self->finish(Status::unreachable);
  });
  tcp_.async_connect(tcp_endpoint_, [self = shared_from_this()](boost::system::error_code error) {
    if (self->finished_) return;
    self->timer_.cancel();
    if (error == asio::error::connection_refused) return self->finish(Status::refused);
    if (error) return self->finish(Status::unreachable);
    self->last_progress_ = Clock::now();
    self->record_open(Side::client);
    self->read();
    self->next_turn();
  });
}

bool FlowRun::our_turns_left() const {
  return std::any_of(flow_.turns.begin() + static_cast<long>(turn_), flow_.turns.end(),
                     [this](const Turn& t) { return ours(t); });
}

void FlowRun::record_open(Side connector) {
  LiveCapture* capture = replayer_.options().pcap_out;
  if (capture == nullptr) return;
  boost::system::error_code error;
  const auto local = udp() ? Endpoint{to_ip(udp_.local_endpoint(error).address()),
                                      udp_.local_endpoint(error).port()}
                           : Endpoint{to_ip(tcp_.local_endpoint(error).address()),
                                      tcp_.local_endpoint(error).port()};
  if (error) return;
  const bool we_connected = connector == Side::client;
  recording_ = capture->open(flow_.protocol, we_connected ? local : result_.live_server,
                             we_connected ? result_.live_server : local);
}

// In the recording the connector is the client: us, unless the live server connected to us.
void FlowRun::record(bool ours, std::span<const std::uint8_t> data) {
  if (!recording_) return;
  replayer_.options().pcap_out->data(*recording_, ours != mirrored_ ? Side::client : Side::server,
                                     data);
}

void FlowRun::record_close(bool ours) {
  if (!recording_) return;
  replayer_.options().pcap_out->close(*recording_, ours != mirrored_ ? Side::client : Side::server);
}

void FlowRun::start_accepted(asio::ip::tcp::socket socket) {
  mirrored_ = true;
  tcp_ = std::move(socket);
  boost::system::error_code error;
  const auto peer = tcp_.remote_endpoint(error);
  if (!error) {
    result_.live_server = {to_ip(peer.address()), peer.port()};
  }
  started_ = last_progress_ = Clock::now();
  record_open(Side::server);
  read();
  next_turn();
}

// The data connection must come from the live server's host; another host's attempts are
// closed, a few of them, before the port is given up.
void FlowRun::accept_data_connection(const std::shared_ptr<asio::ip::tcp::acceptor>& acceptor,
                                     std::size_t child, std::size_t tries_left) {
  acceptor->async_accept([self = shared_from_this(), acceptor, child, tries_left](
                             boost::system::error_code error, asio::ip::tcp::socket socket) {
    if (error || self->finished_) return;
    boost::system::error_code ignored;
    const auto server = self->tcp_.remote_endpoint(ignored).address();
    if (socket.remote_endpoint(ignored).address() != server) {
      socket.close(ignored);
      if (tries_left > 0) self->accept_data_connection(acceptor, child, tries_left - 1);
      return;
    }
    acceptor->close(ignored);
    self->replayer_.start_accepted_child(self->index_, child, std::move(socket));
  });
}

int FlowRun::replay_listen(const Plugin&, std::array<std::uint8_t, 16>& address,
                           std::uint16_t& port) {
  if (udp() || finished_) return -1;
  // The command names an address of the recorded family: the live side must have it too.
  if (tcp_endpoint_.address().is_v6() != (flow_.client.address.family == 6)) return -1;
  const auto child = replayer_.child(index_, expectations_);
  if (!child) return -1;
  boost::system::error_code error;
  const auto local = tcp_.local_endpoint(error);
  if (error) return -1;
  auto acceptor = std::make_shared<asio::ip::tcp::acceptor>(replayer_.io());
  const asio::ip::tcp::endpoint any_port(local.address(), 0);
  acceptor->open(any_port.protocol(), error);
  if (!error) acceptor->bind(any_port, error);
  if (!error) acceptor->listen(1, error);
  const auto listening = acceptor->local_endpoint(error);
  if (error) return -1;
  ++expectations_;
  acceptors_.push_back(acceptor);
  accept_data_connection(acceptor, *child, max_foreign_connections);
  const IpAddress ip = to_ip(listening.address());
  address = ip.bytes;
  port = listening.port();
  return 0;
}

Status FlowRun::ended_status() const {
  if (first_difference_ != 0) return Status::response_differs;
  if (unrecorded_answer_ != 0) return Status::no_recorded_answer;
  return flow_.gaps != 0 ? Status::capture_gap : Status::complete;
}

void FlowRun::next_turn() {
  if (finished_) return;
  if (turn_ == flow_.turns.size()) {
    // After the client's last words, the server's answer (the capture has none) is read
    // until it is quiet or closes.
    if (!draining_ && !eof_ && !flow_.turns.empty() && ours(flow_.turns.back())) {
      draining_ = true;
      // As recorded: a side that closed first (an FTP upload's end) is waited for.
      const Side us = mirrored_ ? Side::server : Side::client;
      if (!udp() && flow_.closed_first == us) {
        boost::system::error_code ignored;
        tcp_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
        record_close(true);
      }
      return start_server_turn();
    }
    return finish(ended_status(), first_difference_ != 0 ? first_difference_ : unrecorded_answer_);
  }
  if (!ours(turn())) return start_server_turn();
  const auto& options = replayer_.options();
  if (options.timing == Timing::original && turn_ > 0) {
    // Keep the recorded pause before this client turn, scaled.
    const auto gap = std::chrono::duration_cast<Clock::duration>(
        (turn().time - flow_.turns[turn_ - 1].time) / options.speed);
    if (gap > Clock::duration::zero()) {
      timer_.expires_after(gap);
      return timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
        if (!e && !self->finished_) self->send_client_turn();
      });
    }
  }
  send_client_turn();
}

void FlowRun::send_client_turn() {
  auto data = std::make_shared<std::vector<std::uint8_t>>(turn().data);
  if (plugin_ != nullptr &&
      !plugin_->call_replay_client_data(*this, plugin_state_.abi, *data, data->size() + 256)) {
    ++turn_;  // the plugin skips this turn
    return next_turn();
  }
  result_.bytes_sent += data->size();
  writing_ = true;
  turn_started_ = Clock::now();
  const auto done = [self = shared_from_this(), data](boost::system::error_code error,
                                                      std::size_t) {
    self->writing_ = false;
    if (self->finished_) return;
    if (error) {
      const Status status = error == asio::error::connection_reset     ? Status::reset
                            : error == asio::error::connection_refused ? Status::refused
                                                                       : Status::closed_early;
      return self->finish(status, self->turn_ + 1);
    }
    self->last_progress_ = Clock::now();
    self->record(true, *data);
    ++self->turn_;
    self->next_turn();
  };
  if (!udp()) return asio::async_write(tcp_, asio::buffer(*data), done);
  udp_.async_send(asio::buffer(*data), done);  // a client turn is one datagram (flows.cpp)
}

void FlowRun::start_server_turn() {
  answering_ = true;
  early_full_ = false;
  turn_started_ = Clock::now();
  received_.clear();
  turn_bytes_ = 0;
  datagrams_ = 0;
  live_datagrams_.clear();
  arm_idle();
  const std::size_t turn = turn_;
  const bool drain = draining_;
  // What came early belongs to this turn (it may end the turn, and start the next).
  while (!early_.empty() && answering_ && turn_ == turn && draining_ == drain && !finished_) {
    const std::vector<std::uint8_t> data = std::move(early_.front());
    early_.pop_front();
    early_bytes_ -= std::min(early_bytes_, data.size());
    on_server_data(data);
  }
  if (eof_ && answering_ && turn_ == turn && draining_ == drain && !finished_) on_eof();
}

void FlowRun::read() {
  if (reading_ || eof_ || finished_) return;
  reading_ = true;
  const auto handler = [self = shared_from_this()](boost::system::error_code error,
                                                   std::size_t size) {
    self->reading_ = false;
    if (self->finished_) return;
    if (error == asio::error::eof) {
      self->eof_ = true;
      self->record_close(false);
      return self->on_eof();
    }
    const std::size_t turn = self->turn_ + 1;
    if (error == asio::error::connection_reset) return self->finish(Status::reset, turn);
    if (error == asio::error::connection_refused) return self->finish(Status::refused, turn);
    if (error) return self->finish(Status::closed_early, turn);
    self->on_read({self->read_buffer_.get(), size});
    self->read();
  };
  if (udp()) {
    udp_.async_receive(asio::buffer(read_buffer_.get(), read_size), handler);
  } else {
    tcp_.async_read_some(asio::buffer(read_buffer_.get(), read_size), handler);
  }
}

void FlowRun::on_read(std::span<const std::uint8_t> data) {
  record(false, data);
  result_.bytes_received += data.size();
  if (answering_) {
    last_progress_ = Clock::now();  // between turns only our writes are progress
    return on_server_data(data);
  }
  // Between turns: kept (up to the per-flow cap) for the next turn the server answers in.
  // Past the cap the rest is only counted, so what is kept stays in one piece.
  result_.between_turns += data.size();
  if (early_full_ || early_bytes_ + data.size() > replayer_.options().max_flow_bytes ||
      early_.size() == max_early_reads) {
    early_full_ = true;
    return;
  }
  early_bytes_ += data.size();
  if (!udp() && !early_.empty()) {  // a stream: one piece
    early_.back().insert(early_.back().end(), data.begin(), data.end());
  } else {
    early_.emplace_back(data.begin(), data.end());
  }
}

void FlowRun::on_server_data(std::span<const std::uint8_t> data) {
  const auto& options = replayer_.options();
  turn_bytes_ += data.size();
  if (turn_bytes_ > options.turn_max_bytes) {
    return finish(Status::turn_bytes_exceeded, turn_ + 1);
  }
  // Kept up to the per-flow cap: a server that streams forever costs bounded memory.
  const std::size_t room =
      options.max_flow_bytes - std::min(received_.size(), options.max_flow_bytes);
  received_.insert(received_.end(), data.begin(),
                   data.begin() + static_cast<long>(std::min(data.size(), room)));
  ++datagrams_;
  if (udp() && room != 0 && live_datagrams_.size() < max_turn_datagrams) {
    live_datagrams_.push_back(static_cast<std::uint32_t>(std::min(data.size(), room)));
  }
  if (draining_) return arm_idle();  // no recording to say when it is over: until quiet
  pktb_turn verdict = PKTB_EXPECT_MORE;
  if (plugin_ != nullptr && plugin_->descriptor().replay_server_data != nullptr) {
    // A UDP plugin judges each datagram; a TCP plugin the turn's stream so far.
    verdict = plugin_->call_replay_server_data(
        *this, plugin_state_.abi, udp() ? data : std::span<const std::uint8_t>(received_),
        turn().data);
  } else if (udp() ? datagrams_ >= std::max<std::size_t>(turn().datagrams.size(), 1)
                   : turn_bytes_ >= turn().data.size() + turn().missing) {
    verdict = PKTB_TURN_OVER;  // the default: as much as was recorded
  }
  if (verdict == PKTB_FLOW_DONE) {
    timer_.cancel();
    keep(received_);
    answering_ = false;
    turn_ = flow_.turns.size();
    draining_ = true;  // the plugin says the flow is over: nothing more to read
    return next_turn();
  }
  if (verdict == PKTB_TURN_OVER) return end_server_turn();
  arm_idle();
}

// The server closed: fine once the client has nothing left to say, unless it closed without
// the answer it gave in the capture.
void FlowRun::on_eof() {
  if (!answering_) return;  // the next server turn (or the drain) finds it
  const bool unanswered = !draining_ && turn_bytes_ == 0 && datagrams_ == 0 && !turn().data.empty();
  if (our_turns_left() || unanswered) return finish(Status::closed_early, turn_ + 1);
  timer_.cancel();
  if (draining_) return end_drain();
  keep(received_);
  answering_ = false;
  turn_ = flow_.turns.size();
  draining_ = true;
  next_turn();
}

void FlowRun::arm_idle() {
  timer_.expires_after(replayer_.options().turn_timeout);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
    if (error || self->finished_ || !self->answering_) return;
    if (self->draining_) return self->end_drain();
    // The server went quiet: with nothing said it is silent, otherwise its turn is over.
    if (self->turn_bytes_ == 0 && self->datagrams_ == 0) {
      self->finish(Status::server_silent, self->turn_ + 1);
    } else {
      self->end_server_turn();
    }
  });
}

// The turn's messages as the plugin masks them: each UDP datagram on its own (a DNS id is
// at the start of each), a TCP turn as one.
std::vector<std::vector<std::uint8_t>> FlowRun::masked(std::span<const std::uint8_t> data,
                                                       std::span<const std::uint32_t> sizes) const {
  std::vector<std::vector<std::uint8_t>> messages;
  std::size_t at = 0;
  for (const std::uint32_t size : sizes) {
    const std::size_t end = std::min(data.size(), at + size);
    messages.emplace_back(data.begin() + static_cast<long>(at),
                          data.begin() + static_cast<long>(end));
    at = end;
  }
  if (at < data.size() || sizes.empty())
    messages.emplace_back(data.begin() + static_cast<long>(at), data.end());
  if (plugin_ != nullptr) {
    PluginFlowState scratch(plugin_, flow_, 0);  // masks see no live state
    for (auto& message : messages) plugin_->call_replay_mask(scratch.abi, message);
  }
  return messages;
}

void FlowRun::keep(std::span<const std::uint8_t> live) {
  if (!replayer_.options().compare || first_difference_ != 0) return;
  if (turn().missing != 0) return;  // the capture lost part of it: nothing to compare with
  // An answer larger than --max-flow-memory was not kept whole: it is counted, not compared.
  if (turn_bytes_ > live.size() || turn().data.size() > replayer_.options().max_flow_bytes) {
    return;
  }
  auto recorded = masked(turn().data, turn().datagrams);
  auto mine = masked(live, live_datagrams_);
  if (udp()) {  // datagrams answer in any order (A and AAAA)
    std::sort(recorded.begin(), recorded.end());
    std::sort(mine.begin(), mine.end());
  }
  if (recorded != mine) first_difference_ = turn_ + 1;
}

void FlowRun::end_server_turn() {
  timer_.cancel();
  keep(received_);
  answering_ = false;
  ++turn_;
  next_turn();
}

// The answer after the client's last turn has been read. Under --compare it has nothing to
// be compared with (silence matches silence).
void FlowRun::end_drain() {
  answering_ = false;
  if (replayer_.options().compare && unrecorded_answer_ == 0 && turn_bytes_ > 0) {
    unrecorded_answer_ = flow_.turns.size() + 1;
  }
  next_turn();
}

int FlowRun::expect(const Plugin&, const pktb_tuple& pattern, std::uint32_t, std::uint32_t) {
  Endpoint live = result_.live_server;  // the announced host is often a private address
  live.port = pattern.server_port;
  const auto child = replayer_.child(index_, expectations_++);
  if (!child) return -1;
  replayer_.start_child(index_, *child, live);
  return 0;
}

void FlowRun::stop(Status status) {
  finish(status, turn_ + 1);
}

void FlowRun::check_time(Clock::time_point now) {
  if (finished_) return;
  if (now - last_progress_ > replayer_.options().flow_timeout) return stop(Status::stalled);
  // A server turn, or our turn's write (a server that does not read), lasts this long at most.
  const bool busy = answering_ || writing_;
  if (busy && now - turn_started_ > replayer_.options().turn_max_time) {
    stop(Status::turn_time_exceeded);
  }
}

void FlowRun::finish(Status status, std::size_t turn) {
  if (finished_) return;
  finished_ = true;
  timer_.cancel();
  boost::system::error_code ignored;
  tcp_.close(ignored);
  udp_.close(ignored);
  for (const auto& acceptor : acceptors_) acceptor->close(ignored);
  record_close(true);
  result_.status = status;
  result_.turn = status == Status::complete ? 0 : turn;
  if (started_ != Clock::time_point{}) {
    result_.duration =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
  }
  replayer_.finished(index_, result_);
}

Endpoint Replayer::live_endpoint(const Endpoint& recorded) const {
  if (const auto found = options_.map.find(recorded.to_string()); found != options_.map.end()) {
    return found->second;
  }
  return {options_.target, options_.target_port.value_or(recorded.port)};
}

// Plugins read each recorded flow first: a flow they announce (an FTP data connection) is
// replayed when the live server announces its counterpart, not on its own.
void Replayer::find_children() {
  for (std::size_t parent = 0; parent < flows_.size(); ++parent) {
    const RecordedFlow& flow = flows_[parent];
    const Plugin* plugin = plugin_for(flow);
    if (plugin == nullptr || plugin->descriptor().replay_recorded == nullptr ||
        !flow.skip_reason.empty()) {
      continue;
    }
    PluginFlowState state(plugin, flow, 0);
    RecordedSink sink;
    std::uint32_t sequence[2] = {0, 0};
    for (const Turn& turn : flow.turns) {
      const int side = turn.side == Side::client ? PKTB_FROM_CLIENT : PKTB_FROM_SERVER;
      pktb_packet packet{};
      packet.l4_data = turn.data.data();
      packet.l4_len = turn.data.size();
      packet.tcp_seq = sequence[side];
      packet.tcp_flags = 0x10;
      packet.direction = static_cast<std::uint8_t>(side);
      sequence[side] += static_cast<std::uint32_t>(turn.data.size());
      plugin->call_replay_recorded(sink, state.abi, packet);
    }
    for (const auto& [pattern, wildcards] : sink.expected) {
      for (std::size_t child = parent + 1; child < flows_.size(); ++child) {
        if (!parent_of_[child] && tuple_matches(tuple_of(flows_[child]), pattern, wildcards)) {
          children_[parent].push_back(child);
          parent_of_[child] = parent;
          break;
        }
      }
    }
  }
}

Summary Replayer::run() {
  find_children();
  for (std::size_t i = 0; i < flows_.size(); ++i) {
    if (!flows_[i].skip_reason.empty()) {
      FlowResult& result = results_[i].emplace();
      result.id = flows_[i].id;
      result.protocol = flows_[i].protocol;
      result.recorded_server = flows_[i].server;
      result.turns = flows_[i].turns.size();
      result.status = Status::skipped;
      result.reason = flows_[i].skip_reason;
      ++done_;
    } else if (!parent_of_[i]) {
      waiting_.push_back(i);
    }
  }
  t0_ = Clock::now();
  launch();
  housekeeping();
  io_.run();
  Summary summary;
  summary.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0_);
  for (std::size_t i = 0; i < flows_.size(); ++i) {
    FlowResult result;
    if (results_[i]) {
      result = *results_[i];
    } else {  // an expected flow its parent never announced live
      result.id = flows_[i].id;
      result.protocol = flows_[i].protocol;
      result.recorded_server = flows_[i].server;
      result.turns = flows_[i].turns.size();
    }
    if (parent_of_[i]) result.parent = flows_[*parent_of_[i]].id;
    summary.flows.push_back(std::move(result));
  }
  return summary;
}

void Replayer::launch() {
  while (!waiting_.empty() && active_ < options_.concurrency) {
    const std::size_t index = waiting_.front();
    waiting_.pop_front();
    auto at = t0_;
    if (options_.timing == Timing::original) {
      at += std::chrono::duration_cast<Clock::duration>(flows_[index].start / options_.speed);
    }
    start_flow(index, live_endpoint(flows_[index].server), at);
  }
}

void Replayer::start_flow(std::size_t index, Endpoint live, Clock::time_point at,
                          std::optional<std::size_t> parent) {
  ++active_;
  auto run = std::make_shared<FlowRun>(*this, index, live, at, parent);
  running_.push_back(run);
  run->start();
}

std::optional<std::size_t> Replayer::child(std::size_t parent, std::size_t n) const {
  if (n >= children_[parent].size() || results_[children_[parent][n]]) return std::nullopt;
  return children_[parent][n];
}

void Replayer::start_child(std::size_t parent, std::size_t child, Endpoint live) {
  start_flow(child, live, Clock::now(), parent);  // at once: the server waits for it
}

void Replayer::start_accepted_child(std::size_t parent, std::size_t child,
                                    asio::ip::tcp::socket socket) {
  ++active_;
  auto run = std::make_shared<FlowRun>(*this, child, Endpoint{}, Clock::now(), parent);
  running_.push_back(run);
  run->start_accepted(std::move(socket));
}

void Replayer::finished(std::size_t index, FlowResult result) {
  results_[index] = std::move(result);
  --active_;
  ++done_;
  launch();
  if (active_ == 0 && waiting_.empty()) housekeeping_.cancel();  // nothing left to watch
}

// Reports progress and ends flows that made no progress within the flow timeout.
void Replayer::housekeeping() {
  const auto now = Clock::now();
  std::erase_if(running_, [&](const std::weak_ptr<FlowRun>& weak) {
    const auto run = weak.lock();
    if (!run || run->finished()) return true;
    run->check_time(now);
    return false;
  });
  if (progress_) progress_(done_, flows_.size(), active_);
  if (active_ == 0 && waiting_.empty()) return;  // io_.run() returns once the rest unwinds
  housekeeping_.expires_after(housekeeping_period);
  housekeeping_.async_wait([this](const boost::system::error_code& error) {
    if (!error) housekeeping();
  });
}

}  // namespace

Summary replay_flows(const std::vector<RecordedFlow>& flows, const PluginSet& plugins,
                     const Options& options, const Progress& progress) {
  Replayer replayer(flows, plugins, options, progress);
  return replayer.run();
}

}  // namespace pktbroker::replay
