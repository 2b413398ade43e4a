# cmake -P script run by ctest (see CMakeLists.txt). Everything it makes lives under
# WORK_DIR, removed at the start and at the end, also on failure.

function(cleanup_and_fail message)
  file(REMOVE_RECURSE "${WORK_DIR}")
  message(FATAL_ERROR "${message}")
endfunction()

# run(<what> <output-var> COMMAND ...): runs, fails the test on a non-zero exit.
function(run what out_var)
  execute_process(${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    cleanup_and_fail("${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

# 1. Ship the ABI as an operator gets it.
run("installing the plugin ABI" ignored
  COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --component plugin_abi --prefix "${prefix}")
foreach(file include/beaconbox/plugin_abi.h share/beaconbox/plugin-abi/plugin.map
             share/beaconbox/plugin-abi/proto/beaconbox/plugin/v1/vmm.proto
             bin/beaconbox-vmm-conformance)
  if(NOT EXISTS "${prefix}/${file}")
    cleanup_and_fail("the installed ABI lacks ${file}")
  endif()
endforeach()
# The VMM conformance suite runs from the installed package (its usage; a VMM plugin
# is what the vmm_conformance_* tests give it).
run("running the installed beaconbox-vmm-conformance --help" ignored
  COMMAND "${prefix}/bin/beaconbox-vmm-conformance" --help)

# 2. Build the separate project against the installed package alone.
run("configuring the out-of-tree plugin" ignored
  COMMAND ${CMAKE_COMMAND} -S "${PROJECT_DIR}" -B "${WORK_DIR}/build"
          "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run("building the out-of-tree plugin" ignored COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
set(plugin "${WORK_DIR}/build/storage-example.so")
set(newer_plugin "${WORK_DIR}/build/storage-example-newer.so")
foreach(built "${plugin}" "${newer_plugin}")
  if(NOT EXISTS "${built}")
    cleanup_and_fail("the build made no ${built}")
  endif()
endforeach()

# 2b. And without CMake: the installed pkg-config file alone gives the compiler flags
#     and the version script (its prefix is relative to the .pc, so this prefix).
file(GLOB_RECURSE pc_files "${prefix}/*/beaconbox-plugin-abi.pc")
list(LENGTH pc_files pc_count)
if(NOT pc_count EQUAL 1)
  cleanup_and_fail("the installed ABI has ${pc_count} beaconbox-plugin-abi.pc: ${pc_files}")
endif()
get_filename_component(pc_dir "${pc_files}" DIRECTORY)
find_program(PKG_CONFIG_BIN pkg-config REQUIRED)
set(ENV{PKG_CONFIG_LIBDIR} "${pc_dir}")
set(ENV{PKG_CONFIG_PATH} "")
run("pkg-config --cflags" pc_cflags COMMAND "${PKG_CONFIG_BIN}" --cflags beaconbox-plugin-abi)
run("pkg-config --variable=version_script" pc_script
  COMMAND "${PKG_CONFIG_BIN}" --variable=version_script beaconbox-plugin-abi)
run("pkg-config --modversion" pc_version COMMAND "${PKG_CONFIG_BIN}" --modversion beaconbox-plugin-abi)
string(STRIP "${pc_cflags}" pc_cflags)
string(STRIP "${pc_script}" pc_script)
string(STRIP "${pc_version}" pc_version)
if(NOT pc_version STREQUAL "2.0.0" OR NOT EXISTS "${pc_script}")
  cleanup_and_fail("pkg-config says version '${pc_version}', version script '${pc_script}'")
endif()
separate_arguments(pc_cflags UNIX_COMMAND "${pc_cflags}")
set(pc_plugin "${WORK_DIR}/pkg-config/storage-example.so")
file(MAKE_DIRECTORY "${WORK_DIR}/pkg-config")
run("building the plugin with cc and pkg-config" ignored
  COMMAND cc -std=c11 -shared -fPIC -fvisibility=hidden ${pc_cflags}
          "-Wl,--version-script=${pc_script}" -Wl,--no-undefined
          -o "${pc_plugin}" "${PROJECT_DIR}/storage_example.c")
file(WRITE "${WORK_DIR}/pc.toml" "[plugins.storage.example]\npath = \"${pc_plugin}\"\n")
run("beaconbox-ctl plugins (pkg-config build)" pc_listing
  COMMAND "${CTL}" --config "${WORK_DIR}/pc.toml" plugins)
if(NOT pc_listing MATCHES "storage +example +1\\.0\\.0 +2 +${WORK_DIR}/pkg-config/storage-example\\.so")
  cleanup_and_fail("the plugin built with pkg-config is not listed:\n${pc_listing}")
endif()

# 3. It exports the entry and nothing else of its own.
run("listing its symbols" symbols COMMAND nm -D --defined-only "${plugin}")
string(REGEX MATCHALL " T [A-Za-z_0-9]+" exported "${symbols}")
if(NOT exported STREQUAL " T bbx_plugin_entry")
  cleanup_and_fail("exports are not just bbx_plugin_entry:\n${symbols}")
endif()

# 4. The host loads it: listed with its ops, and a config choosing it validates.
file(WRITE "${WORK_DIR}/config.toml" "[vm]
vmm = \"fake\"
[network]
mode = \"none\"
[storage]
driver = \"example\"
[plugins.vmm.fake]
path = \"${FIXTURE_VMM}\"
[plugins.storage.example]
path = \"build/storage-example.so\"
[plugins.storage.example.config]
greeting = \"hello from the operator\"
")
run("beaconbox-ctl plugins" listing COMMAND "${CTL}" --config "${WORK_DIR}/config.toml" plugins)
if(NOT listing MATCHES "storage +example +1\\.0\\.0 +2 +${WORK_DIR}/build/storage-example\\.so"
   OR NOT listing MATCHES "ops: init, fini, check, prepare, release"
   OR NOT listing MATCHES "config.greeting \\(a string, default \"hello\", env BEACONBOX_EXAMPLE_GREETING\\)")
  cleanup_and_fail("beaconbox-ctl plugins does not show the plugin:\n${listing}")
endif()
run("beaconbox-ctl config validate" validated
  COMMAND "${CTL}" config validate "${WORK_DIR}/config.toml")
if(NOT validated STREQUAL "OK\n")
  cleanup_and_fail("config validate said: ${validated}")
endif()

# 5. Its own check line is printed under its name by `beaconbox-ctl check` (whose
#    exit code reflects the host's own checks, e.g. the kernel, so it is not asserted).
execute_process(COMMAND "${CTL}" --config "${WORK_DIR}/config.toml" check
  OUTPUT_VARIABLE checked ERROR_VARIABLE ignored)
if(NOT checked MATCHES "plugin +storage/example 1\\.0\\.0 \\(ABI 2\\) loads and inits\nOK +example +nothing to check")
  cleanup_and_fail("beaconbox-ctl check does not show the plugin's own line:\n${checked}")
endif()

# 6. The same plugin built against a "newer" header (every table, key and the answer
#    one member longer) loads in this host too, its keys walked with its own stride.
string(REPLACE "storage-example.so" "storage-example-newer.so" newer_config
  "[vm]\nvmm = \"fake\"\n[network]\nmode = \"none\"\n[storage]\ndriver = \"example-newer\"\n[plugins.vmm.fake]\npath = \"${FIXTURE_VMM}\"\n[plugins.storage.example-newer]\npath = \"build/storage-example.so\"\n[plugins.storage.example-newer.config]\nrepeat = 3\n")
file(WRITE "${WORK_DIR}/newer.toml" "${newer_config}")
run("beaconbox-ctl plugins (newer)" newer_listing
  COMMAND "${CTL}" --config "${WORK_DIR}/newer.toml" plugins)
if(NOT newer_listing MATCHES "storage +example-newer +1\\.0\\.0 +2 "
   OR NOT newer_listing MATCHES "config.repeat \\(an integer, default 1\\): how often to greet")
  cleanup_and_fail("the newer plugin is not listed right:\n${newer_listing}")
endif()
run("beaconbox-ctl config validate (newer)" validated
  COMMAND "${CTL}" config validate "${WORK_DIR}/newer.toml")

# 7. And refuses a key its schema does not have.
file(APPEND "${WORK_DIR}/config.toml" "colour = \"red\"\n")
execute_process(COMMAND "${CTL}" config validate "${WORK_DIR}/config.toml"
  RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(NOT rc EQUAL 1 OR NOT err MATCHES "unknown key plugins.storage.example.config.colour")
  cleanup_and_fail("an unknown key was not refused (${rc}): ${err}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "out-of-tree plugin built against the installed ABI and loaded")
