#include "broker/policy/policy.hpp"
#include <catch2/catch.hpp>
