# Debian packages by CPack (scripts/package builds them with prefix /usr):
#   pktbroker          the daemon, pktbrokerctl, pktreplay, plugins, policy, unit, man pages,
#                      bash completions
#   libpktbroker0      the client library
#   libpktbroker-dev   its headers, the plugin SDK header, pkg-config and CMake files
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL daemon lib dev)
set(CPACK_PACKAGE_NAME pktbroker)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Each package's description below starts with its own synopsis line.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
set(CPACK_PACKAGE_CONTACT "pktbroker maintainers <maintainers@users.noreply.h-seed-8b8a94d5.example>")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://pktbroker.example/")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/client)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME pktbroker)
set(CPACK_COMPONENT_DAEMON_DEPENDS lib)
# systemd: the unit and systemd-sysusers (the postinst creates the user with it).
set(CPACK_DEBIAN_DAEMON_PACKAGE_DEPENDS "iptables, systemd")
set(CPACK_COMPONENT_DAEMON_DESCRIPTION "packet-policy broker for netfilter NFQUEUE
pktbrokerd owns NFQUEUE queues and gives every queued packet exactly one
verdict: from a YAML policy, from protocol-decoder plugins (dns, http, tls,
ftp, resend), or from client programs connected over a Unix socket, so that
many programs share one kernel queue. Includes pktbrokerctl (control) and
pktreplay (replays the client side of captured flows against live servers).")

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libpktbroker0)
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)  # only libpktbroker0 has a public library
set(CPACK_COMPONENT_LIB_DESCRIPTION "client library for pktbrokerd
libpktbroker lets a program subscribe to packets of a pktbrokerd queue and
give their verdicts, synchronously or with Boost.Asio.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libpktbroker-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libboost-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION "development files for libpktbroker and pktbroker plugins
Headers, pkg-config and CMake package files for programs using libpktbroker,
and the C header of the plugin ABI (pktbroker/plugin.h) for protocol plugins.")

# Maintainer scripts: the daemon's user and unit (as dh_installsystemd would write them), the
# policy as conffiles, ldconfig for the library.
set(deb_work ${PROJECT_BINARY_DIR}/packaging)
file(GLOB policy_drop_ins RELATIVE ${PROJECT_SOURCE_DIR}/config
     ${PROJECT_SOURCE_DIR}/config/policy.d/*.yaml ${PROJECT_SOURCE_DIR}/config/policy.d/*.example)
list(TRANSFORM policy_drop_ins PREPEND "${CMAKE_INSTALL_FULL_SYSCONFDIR}/pktbroker/")
list(JOIN policy_drop_ins "\n" conffiles)
file(WRITE ${deb_work}/daemon/conffiles
     "${CMAKE_INSTALL_FULL_SYSCONFDIR}/pktbroker/policy.yaml\n${conffiles}\n"
     "${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d/pktbroker\n")
file(WRITE ${deb_work}/lib/triggers "activate-noawait ldconfig\n")
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA ${deb_work}/lib/triggers)
foreach(script postinst prerm postrm)
  configure_file(${PROJECT_SOURCE_DIR}/packaging/deb/${script} ${deb_work}/daemon/${script}
                 COPYONLY)
endforeach()
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_EXTRA
    ${deb_work}/daemon/conffiles ${deb_work}/daemon/postinst ${deb_work}/daemon/prerm
    ${deb_work}/daemon/postrm)

# Each package's /usr/share/doc/NAME: copyright and changelog.gz.
set(changelog ${deb_work}/changelog.gz)
add_custom_command(OUTPUT ${changelog}
  COMMAND sh -c "gzip -9n < '${PROJECT_SOURCE_DIR}/packaging/changelog' > '${changelog}'"
  DEPENDS ${PROJECT_SOURCE_DIR}/packaging/changelog VERBATIM)
add_custom_target(package_changelog ALL DEPENDS ${changelog})
set(deb_packages pktbroker libpktbroker0 libpktbroker-dev)
foreach(component package IN ZIP_LISTS CPACK_COMPONENTS_ALL deb_packages)
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/copyright ${changelog}
          DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${package} COMPONENT ${component})
endforeach()

include(CPack)
