# The systemd unit, its sysusers entry and the bash completions. With prefix /usr (the package)
# they go where Debian 12's systemd and bash-completion look (/lib/systemd/system,
# /usr/lib/sysusers.d, /usr/share/bash-completion/completions); with any other prefix, under it.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(PKTBROKER_UNIT_DIR /lib/systemd/system)
else()
  set(PKTBROKER_UNIT_DIR lib/systemd/system)
endif()
configure_file(${PROJECT_SOURCE_DIR}/config/pktbrokerd.service.in
               ${PROJECT_BINARY_DIR}/pktbrokerd.service @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pktbrokerd.service DESTINATION ${PKTBROKER_UNIT_DIR}
        COMPONENT daemon)
install(FILES ${PROJECT_SOURCE_DIR}/config/pktbroker.sysusers DESTINATION lib/sysusers.d
        RENAME pktbroker.conf COMPONENT daemon)
# logrotate for the event log: with the package only (its paths are the unit's).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/logrotate
          DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d RENAME pktbroker
          COMPONENT daemon)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/config/completion/pktbrokerd
              ${PROJECT_SOURCE_DIR}/config/completion/pktbrokerctl
              ${PROJECT_SOURCE_DIR}/config/completion/pktreplay
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT daemon)
