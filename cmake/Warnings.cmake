# Project-wide compile flags: strict warnings, optional -Werror and sanitizers.
add_compile_options(-Wall -Wextra -Wpedantic)
if(PKTBROKER_WERROR)
  add_compile_options(-Werror)
endif()
if(PKTBROKER_SANITIZE)
  add_compile_options(-fsanitize=${PKTBROKER_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${PKTBROKER_SANITIZE})
  # GCC 12's flow analysis under sanitizers reports false maybe-uninitialized warnings in
  # libstdc++ (std::regex, std::function); keep them from failing -Werror builds.
  add_compile_options(-Wno-maybe-uninitialized)
endif()
