# Shared CMake helpers. One place for how a plugin or a test is declared.

# beaconbox_add_plugin(<target> SOURCES ... [LIBS ...] [VERSION <v>])
# A plugin is a MODULE library exporting only bbx_plugin_entry (version script),
# statically carrying its C++ dependencies' symbols hidden so that two plugins
# can use different versions of a library without clashing.
#
# Each plugin versions on its own: its version is the one line of VERSION in its
# directory (plugins/<dir>/VERSION), or the VERSION argument (test fixtures), and
# reaches the code as BEACONBOX_PLUGIN_VERSION, which its entry reports as `.version`.
# A plugin under plugins/ is installed as install component plugin-<dir>:
# <prefix>/lib/beaconbox/plugins/<target>.so, the path config/config.toml names.
function(beaconbox_add_plugin target)
  cmake_parse_arguments(ARG "" "VERSION" "SOURCES;LIBS" ${ARGN})
  # plugins/<dir>/: a shipped plugin (its VERSION file is required); elsewhere a fixture.
  file(RELATIVE_PATH plugin_dir "${PROJECT_SOURCE_DIR}/plugins" "${CMAKE_CURRENT_SOURCE_DIR}")
  if(plugin_dir MATCHES "^\\.\\.|/" OR plugin_dir STREQUAL "")
    set(plugin_dir "")
  endif()
  if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/VERSION")
    file(STRINGS "${CMAKE_CURRENT_SOURCE_DIR}/VERSION" plugin_version LIMIT_COUNT 1)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/VERSION")
  elseif(ARG_VERSION AND NOT plugin_dir)
    set(plugin_version "${ARG_VERSION}")
  else()
    message(FATAL_ERROR "plugin ${target} has no version: write one line such as 0.1.0 "
                        "to ${CMAKE_CURRENT_SOURCE_DIR}/VERSION")
  endif()
  string(STRIP "${plugin_version}" plugin_version)
  if(NOT plugin_version MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+([~+.-][A-Za-z0-9.~+-]*)?$")
    message(FATAL_ERROR "plugin ${target}: ${CMAKE_CURRENT_SOURCE_DIR}/VERSION holds "
                        "\"${plugin_version}\", not a version such as 0.1.0")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_compile_definitions(${target} PRIVATE BEACONBOX_PLUGIN_VERSION="${plugin_version}")
  set_target_properties(${target} PROPERTIES BEACONBOX_PLUGIN_VERSION "${plugin_version}")
  target_link_libraries(${target} PRIVATE beaconbox::plugin_abi ${ARG_LIBS})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${BEACONBOX_PLUGIN_OUTPUT_DIR}")
  target_link_options(${target} PRIVATE
    "-Wl,--version-script=${PROJECT_SOURCE_DIR}/plugin-abi/plugin.map"
    "-Wl,--no-undefined")
  # Always lib/, not GNUInstallDirs' multiarch libdir: the path config.toml names.
  if(plugin_dir)
    install(TARGETS ${target} LIBRARY DESTINATION lib/beaconbox/plugins COMPONENT plugin-${plugin_dir})
  endif()
endfunction()

# beaconbox_add_test(<name> SOURCES ... [LIBS ...] [LABELS ...])
# One GoogleTest binary per component, registered with ctest. Test binaries stay in
# the build tree, out of _output/.
function(beaconbox_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE GTest::gtest GTest::gtest_main ${ARG_LIBS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/tests")
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
    ENVIRONMENT "BEACONBOX_SOURCE_DIR=${PROJECT_SOURCE_DIR};BEACONBOX_BUILD_DIR=${CMAKE_BINARY_DIR};BEACONBOX_OUTPUT_DIR=${BEACONBOX_OUTPUT_DIR}")
endfunction()
