#include "broker/policy/matcher.hpp"
#include <catch2/catch.hpp>
