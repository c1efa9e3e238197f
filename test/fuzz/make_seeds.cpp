// Writes the generated seed corpora: encoded protocol messages, packets, and plugin flows (in
// flow_input.hpp's format). Run by `scripts/fuzz --seeds`; its output is committed.
//   fuzz_make_seeds CORPUS_DIR
#include "pktbroker/codec.hpp"
#include "test/fuzz/flow_input.hpp"
#include "test/unit/packet_builder.hpp"
#include "test/unit/plugins/client_hello_builder.hpp"

#include <netinet/in.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

using namespace pktbroker;
using namespace pktbroker::fuzz;
using test::Bytes;
namespace fs = std::filesystem;

namespace {

fs::path corpus;

void write(const std::string& target, const std::string& name, const Bytes& bytes) {
  fs::create_directories(corpus / target);
  std::ofstream(corpus / target / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

void put16(Bytes& b, std::size_t n) {
  b.push_back(static_cast<std::uint8_t>(n >> 8));
  b.push_back(static_cast<std::uint8_t>(n));
}

std::string text(const Bytes& bytes) {
  return {bytes.begin(), bytes.end()};
}

void wire_codec_seeds() {
  using namespace proto;
  static const Bytes ip = test::ipv4(IPPROTO_TCP, test::tcp_header(40000, 80), 12);
  Packet packet;
  packet.token = 0x0102030405060708;
  packet.subscription_id = 3;
  packet.needs_verdict = true;
  packet.mark = 0x10;
  packet.uid = 1000;
  packet.ct_state = CtStateCode::new_;
  packet.wire_length = static_cast<std::uint32_t>(ip.size());
  packet.payload = ip;
  Verdict verdict{7, VerdictCode::drop, 0x20, ip};
  const std::pair<std::string, Message> messages[] = {
      {"hello", Hello{"fuzz-client", role_observe | role_verdict, 1, 1}},
      {"welcome", Welcome{1, 42, role_observe, "0.1.0"}},
      {"subscribe", Subscribe{"web", "{proto: tcp, dport: [80, 443]}", SubscriptionMode::verdict,
                              Clash::chain, -5, 128, 500, VerdictCode::drop}},
      {"subscribed", Subscribed{9}},
      {"unsubscribe", Unsubscribe{9}},
      {"packet", packet},
      {"verdict", verdict},
      {"verdict_batch",
       VerdictBatch{{{1, VerdictCode::accept, {}, {}}, {2, VerdictCode::pass, 5, {}}}}},
      {"stats_request", StatsRequest{}},
      {"stats_reply", StatsReply{{{"queue 0", "packets", 12}, {"rule no-telnet", "bytes", 3}}}},
      {"sessions_request", SessionsRequest{}},
      {"sessions_reply",
       SessionsReply{{{7, "observer", 100, 1000, 1000, role_observe, 1, 0, 5, 0, 0}}}},
      {"reload_request", ReloadRequest{}},
      {"reload_reply", ReloadReply{false, "policy.yaml:3:5: error: unknown key"}},
      {"error", Error{ErrorCode::bad_selector, "selector: unknown field"}},
      {"ping", Ping{}},
      {"pong", Pong{}},
      {"plugin_command",
       PluginCommand{"resend", {"wakeup", "--iface", "ppp0", "--addr", "192.0.2.7"}}},
      {"plugin_command_reply", PluginCommandReply{true, "woke 192.0.2.7 on ppp0\n"}},
  };
  Bytes out;
  for (const auto& [name, message] : messages) {
    if (encode(message, 5, out)) throw std::runtime_error("cannot encode " + name);
    write("wire_codec", name, out);
  }
  Bytes batch;
  for (std::uint64_t token = 1; token <= 3; ++token) {
    packet.token = token;
    if (append_to_batch(batch, packet)) throw std::runtime_error("cannot batch");
  }
  write("wire_codec", "packet_batch", batch);
}

void packet_view_seeds() {
  using namespace test;
  write("packet_view", "ipv4_tcp", ipv4(IPPROTO_TCP, tcp_header(40000, 443), 20));
  write("packet_view", "ipv4_udp_options",
        ipv4(IPPROTO_UDP, udp_header(5353, 53, 12), 12, {10, 0, 0, 1}, {10, 0, 0, 2}, 0, 8));
  write("packet_view", "ipv4_icmp", ipv4(IPPROTO_ICMP, icmp_header(8), 56));
  write("packet_view", "ipv4_fragment",
        ipv4(IPPROTO_UDP, udp_header(1, 2, 64), 64, {10, 0, 0, 1}, {10, 0, 0, 2}, 0x2000));
  write("packet_view", "ipv6_tcp_extensions",
        ipv6(0, concat({ipv6_extension(0, 60), ipv6_extension(60, 6), tcp_header(40000, 80)}), 10));
  write("packet_view", "ipv6_icmpv6", ipv6(IPPROTO_ICMPV6, icmp_header(128), 8));
  Bytes truncated = ipv4(IPPROTO_TCP, tcp_header(1, 2), 100);
  truncated.resize(48);
  write("packet_view", "ipv4_captured_prefix", truncated);
}

Bytes dns_name(const std::string& dotted) {
  Bytes out;
  std::size_t start = 0;
  while (start < dotted.size()) {
    const auto end = std::min(dotted.find('.', start), dotted.size());
    out.push_back(static_cast<std::uint8_t>(end - start));
    out.insert(out.end(), dotted.begin() + static_cast<long>(start),
               dotted.begin() + static_cast<long>(end));
    start = end + 1;
  }
  out.push_back(0);
  return out;
}

Bytes dns_query(const std::string& name) {
  Bytes m = {0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  const Bytes n = dns_name(name);
  m.insert(m.end(), n.begin(), n.end());
  m.insert(m.end(), {0, 1, 0, 1});
  return m;
}

Bytes dns_response(const std::string& name) {
  Bytes m = dns_query(name);
  m[2] = 0x81;
  m[3] = 0x80;
  m[7] = 2;
  m.insert(m.end(), {0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 0, 0, 9});
  m.insert(m.end(), {0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16});
  for (int i = 0; i < 16; ++i) m.push_back(static_cast<std::uint8_t>(i));
  return m;
}

Bytes with_length(const Bytes& message) {  // DNS over TCP
  Bytes out;
  put16(out, message.size());
  out.insert(out.end(), message.begin(), message.end());
  return out;
}

Bytes tls_client_hello(const std::string& sni) {  // one handshake record
  const Bytes message = pktbroker::test::client_hello(sni);
  Bytes record = {22, 3, 1};
  put16(record, message.size());
  record.insert(record.end(), message.begin(), message.end());
  return record;
}

void plugin_seeds() {
  const std::uint8_t tcp_flow = flow_handshake | flow_close;
  const std::uint8_t client = 0, server = seg_from_server;
  const auto flow = [](std::uint8_t options) { return Bytes{options}; };

  Bytes dns_udp = flow(flow_udp);
  append_segment(dns_udp, client, text(dns_query("www.example.test")));
  append_segment(dns_udp, server, text(dns_response("www.example.test")));
  write("plugin_dns", "udp_query_answer", dns_udp);
  Bytes dns_tcp = flow(tcp_flow);
  const Bytes query = with_length(dns_query("evil.blocked.test"));
  append_segment(dns_tcp, client, text(Bytes(query.begin(), query.begin() + 5)));
  append_segment(dns_tcp, client, text(Bytes(query.begin() + 5, query.end())));
  append_segment(dns_tcp, server, text(with_length(dns_response("evil.blocked.test"))));
  write("plugin_dns", "tcp_split_query", dns_tcp);

  Bytes http = flow(tcp_flow);
  append_segment(http, client, "GET /index.html HTTP/1.1\r\nHo");
  append_segment(http, client, "st: www.example.test\r\nUser-Agent: fuzz\r\n\r\n");
  append_segment(http, server,
                 "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n");
  append_segment(http, client,
                 "POST /upload HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 4\r\n\r\nabcd");
  append_segment(http, server | (2 << seg_wait_shift),
                 "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
  write("plugin_http", "keepalive_two_requests", http);
  Bytes http_reordered = flow(tcp_flow);
  append_segment(http_reordered, client | seg_skip, "st: blocked.test\r\n\r\n");
  append_segment(http_reordered, client | seg_resend, "GET / HTTP/1.1\r\nHo");
  write("plugin_http", "reordered", http_reordered);

  const Bytes hello = tls_client_hello("www.example.test");
  Bytes tls = flow(tcp_flow);
  append_segment(tls, client, text(Bytes(hello.begin(), hello.begin() + 40)));
  append_segment(tls, client, text(Bytes(hello.begin() + 40, hello.end())));
  append_segment(tls, server, text(Bytes{22, 3, 3, 0, 4, 2, 0, 0, 0}));
  write("plugin_tls", "split_client_hello", tls);
  Bytes tls_one = flow(flow_handshake);
  append_segment(tls_one, client, text(tls_client_hello("evil.blocked.test")));
  write("plugin_tls", "client_hello", tls_one);

  Bytes ftp = flow(tcp_flow);
  append_segment(ftp, server, "220 ready\r\n");
  append_segment(ftp, client, "USER anonymous\r\n");
  append_segment(ftp, server, "331 password\r\n");
  append_segment(ftp, client, "PASS x\r\n");
  append_segment(ftp, server, "230 in\r\n");
  append_segment(ftp, client, "PASV\r\n");
  append_segment(ftp, server, "227 Entering Passive Mode (10,0,0,2,195,80)\r\n");
  append_segment(ftp, client, "RETR file\r\n");
  append_segment(ftp, client | seg_resend | seg_skip,
                 "\xc3\x50"
                 "data");
  append_segment(ftp, client, "PORT 10,0,0,1,156,65\r\n");
  append_segment(ftp, server, "200 ok\r\n");
  append_segment(ftp, server | seg_resend | seg_skip,
                 "\x9c\x41"
                 "data");
  append_segment(ftp, client, "EPSV\r\n");
  append_segment(ftp, server, "229 Entering Extended Passive Mode (|||50000|)\r\n");
  write("plugin_ftp", "passive_and_active", ftp);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds CORPUS_DIR\n";
    return 2;
  }
  corpus = argv[1];
  wire_codec_seeds();
  packet_view_seeds();
  plugin_seeds();
  return 0;
}
