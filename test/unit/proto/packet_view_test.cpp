#include "pktbroker/packet_view.hpp"
#include <catch2/catch.hpp>
