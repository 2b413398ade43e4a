# Shared CMake helpers. One place for how a plugin or a test is declared.

# beaconbox_add_plugin(<target> SOURCES ... [LIBS ...])
# A plugin is a MODULE library exporting only bbx_plugin_entry (version script),
# statically carrying its C++ dependencies' symbols hidden so that two plugins
# can use different versions of a library without clashing.
function(beaconbox_add_plugin target)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE beaconbox::plugin_abi ${ARG_LIBS})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${BEACONBOX_PLUGIN_OUTPUT_DIR}")
  target_link_options(${target} PRIVATE
    "-Wl,--version-script=${PROJECT_SOURCE_DIR}/plugin-abi/plugin.map"
    "-Wl,--no-undefined")
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
