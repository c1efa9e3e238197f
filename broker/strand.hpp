// The broker's io objects are bound to concrete strands, not to Asio's type-erased
// any_io_executor: every async wait copies its object's executor, and copying an
// any_io_executor that holds a strand allocates (48 bytes, once per wake-up).
#pragma once

#include "pktbroker/seq_packet_protocol.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/basic_stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

namespace pktbroker {

using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
using StrandTimer =
    boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                      boost::asio::wait_traits<std::chrono::steady_clock>, Strand>;
using StrandDescriptor = boost::asio::posix::basic_stream_descriptor<Strand>;
using StrandSocket = SeqPacketProtocol::socket::rebind_executor<Strand>::other;

}  // namespace pktbroker
