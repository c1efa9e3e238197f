# Project-wide compile flags: strict warnings, optional -Werror and sanitizers.
add_compile_options(-Wall -Wextra -Wpedantic)
if(PKTBROKER_WERROR)
  add_compile_options(-Werror)
endif()
if(PKTBROKER_SANITIZE)
  add_compile_options(-fsanitize=${PKTBROKER_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${PKTBROKER_SANITIZE})
endif()
