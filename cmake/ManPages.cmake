# Man pages: doc/man/NAME.SECTION.scd -> NAME.SECTION.gz (scdoc, then gzip -9n as Debian wants),
# installed in share/man/manSECTION with the daemon. A page scdoc refuses fails the build.
find_program(SCDOC scdoc REQUIRED)
file(GLOB man_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/doc/man/*.scd)
set(man_pages)
foreach(source IN LISTS man_sources)
  get_filename_component(page ${source} NAME_WLE)  # pktbrokerd.8
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  set(output ${PROJECT_BINARY_DIR}/man/${page}.gz)
  add_custom_command(OUTPUT ${output}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
    COMMAND sh -c "${SCDOC} < '${source}' > '${output}.roff' && gzip -9n < '${output}.roff' > '${output}' && rm '${output}.roff'"
    DEPENDS ${source} VERBATIM)
  list(APPEND man_pages ${output})
  install(FILES ${output} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT daemon)
endforeach()
add_custom_target(man_pages ALL DEPENDS ${man_pages})
