# Generates C++ from containerd's own .proto files, installed by Debian's
# golang-github-containerd-containerd-dev. They are read from the system at build
# time and never copied into this repository.
#
# Debian's protoc cannot compile gogoproto's `import weak` and custom options for
# C++, so each file is first rewritten into the build tree without them; the wire
# format does not depend on either.

set(CONTAINERD_GOCODE_ROOT "/usr/share/gocode/src" CACHE PATH
    "Root holding github.com/containerd/containerd (golang-github-containerd-containerd-dev)")
set(_ctrd "github.com/containerd/containerd")
set(_ctrd_protos
  ${_ctrd}/runtime/v2/task/shim.proto
  ${_ctrd}/api/types/mount.proto
  ${_ctrd}/api/types/task/task.proto
  ${_ctrd}/api/events/task.proto
  ${_ctrd}/api/services/ttrpc/events/v1/events.proto
  ${_ctrd}/runtime/v2/runc/options/oci.proto
  github.com/containerd/cgroups/v2/stats/metrics.proto)

# The well-known types containerd's messages import (Any, Empty, Timestamp), generated
# again as protobuf-lite code: the host and the guest use the lite runtime only
# (libprotobuf-lite; issue 16: the full runtime cost the shim 1.9 MiB of RSS). The
# generated headers are found before /usr/include's full ones.
set(_wkt_out_dir "${CMAKE_BINARY_DIR}/protobuf-wkt-lite/gen")
set(_wkt_protos google/protobuf/any.proto google/protobuf/empty.proto google/protobuf/timestamp.proto)
set(_wkt_sources)
foreach(proto ${_wkt_protos})
  string(REGEX REPLACE "\\.proto$" ".pb.cc" generated "${proto}")
  list(APPEND _wkt_sources "${_wkt_out_dir}/${generated}")
endforeach()
add_custom_command(
  OUTPUT ${_wkt_sources}
  COMMAND ${CMAKE_COMMAND} -E make_directory "${_wkt_out_dir}"
  COMMAND protobuf::protoc -I /usr/include --cpp_out "lite:${_wkt_out_dir}" ${_wkt_protos}
  VERBATIM)
add_library(protobuf_wkt_lite STATIC ${_wkt_sources})
target_include_directories(protobuf_wkt_lite SYSTEM BEFORE PUBLIC "${_wkt_out_dir}")
target_link_libraries(protobuf_wkt_lite PUBLIC protobuf::libprotobuf-lite)
target_compile_options(protobuf_wkt_lite PRIVATE -w)
add_library(beaconbox::protobuf_wkt_lite ALIAS protobuf_wkt_lite)

set(_ctrd_src_dir "${CMAKE_BINARY_DIR}/containerd-proto/src")
set(_ctrd_out_dir "${CMAKE_BINARY_DIR}/containerd-proto/gen")
set(_ctrd_sources)
foreach(proto ${_ctrd_protos})
  set(system_file "${CONTAINERD_GOCODE_ROOT}/${proto}")
  if(NOT EXISTS "${system_file}")
    message(FATAL_ERROR "${system_file} is missing: run scripts/setup.sh "
                        "(installs golang-github-containerd-containerd-dev)")
  endif()
  get_filename_component(dir "${proto}" DIRECTORY)
  get_filename_component(stem "${proto}" NAME_WE)
  set(clean_file "${_ctrd_src_dir}/${proto}")
  add_custom_command(
    OUTPUT "${clean_file}"
    COMMAND ${CMAKE_COMMAND} -E make_directory "${_ctrd_src_dir}/${dir}"
    COMMAND sed -E
            -e "/^import weak /d"
            -e "/^[[:space:]]*import \"gogoproto\\/gogo.proto\";/d"
            -e "/^[[:space:]]*option \\((gogoproto|containerd\\.plugin)\\.[a-z_]+\\)/d"
            -e "s/\\[\\((gogoproto|containerd\\.plugin)\\.[^]]*\\]//g"
            "${system_file}" > "${clean_file}"
    DEPENDS "${system_file}"
    VERBATIM)
  list(APPEND _ctrd_clean "${clean_file}")
  list(APPEND _ctrd_sources "${_ctrd_out_dir}/${dir}/${stem}.pb.cc")
endforeach()

add_custom_command(
  OUTPUT ${_ctrd_sources}
  COMMAND ${CMAKE_COMMAND} -E make_directory "${_ctrd_out_dir}"
  COMMAND protobuf::protoc -I "${_ctrd_src_dir}" -I /usr/include --cpp_out "lite:${_ctrd_out_dir}" ${_ctrd_protos}
  DEPENDS ${_ctrd_clean}
  WORKING_DIRECTORY "${_ctrd_src_dir}"
  VERBATIM)

# containerd's Task, event and mount messages, for the shim and the guest.
add_library(containerd_api STATIC ${_ctrd_sources})
target_include_directories(containerd_api SYSTEM PUBLIC "${_ctrd_out_dir}")
target_link_libraries(containerd_api PUBLIC protobuf_wkt_lite protobuf::libprotobuf-lite)
target_compile_options(containerd_api PRIVATE -w)
add_library(beaconbox::containerd_api ALIAS containerd_api)

# runc's shim options (what containerd hands a shim's `start` action on stdin), for
# the shim only; generated on their own so that the guest's messages stay as they are.
set(_runc_options_proto ${_ctrd}/runtime/v2/runc/options/oci.proto)
set(_runc_options_system "${CONTAINERD_GOCODE_ROOT}/${_runc_options_proto}")
if(NOT EXISTS "${_runc_options_system}")
  message(FATAL_ERROR "${_runc_options_system} is missing: run scripts/setup.sh "
                      "(installs golang-github-containerd-containerd-dev)")
endif()
set(_runc_options_src_dir "${CMAKE_BINARY_DIR}/containerd-proto/runc-options-src")
set(_runc_options_clean "${_runc_options_src_dir}/${_runc_options_proto}")
get_filename_component(_runc_options_dir "${_runc_options_proto}" DIRECTORY)
add_custom_command(
  OUTPUT "${_runc_options_clean}"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${_runc_options_src_dir}/${_runc_options_dir}"
  COMMAND sed -E
          -e "/^import weak /d"
          -e "/^[[:space:]]*option \\((gogoproto|containerd\\.plugin)\\.[a-z_]+\\)/d"
          -e "s/\\[\\((gogoproto|containerd\\.plugin)\\.[^]]*\\]//g"
          "${_runc_options_system}" > "${_runc_options_clean}"
  DEPENDS "${_runc_options_system}"
  VERBATIM)
set(_runc_options_out_dir "${CMAKE_BINARY_DIR}/containerd-proto/runc-options-gen")
set(_runc_options_source "${_runc_options_out_dir}/${_runc_options_dir}/oci.pb.cc")
add_custom_command(
  OUTPUT "${_runc_options_source}"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${_runc_options_out_dir}"
  COMMAND protobuf::protoc -I "${_runc_options_src_dir}" --cpp_out "lite:${_runc_options_out_dir}"
          ${_runc_options_proto}
  DEPENDS "${_runc_options_clean}"
  WORKING_DIRECTORY "${_runc_options_src_dir}"
  VERBATIM)
add_library(containerd_runc_options STATIC "${_runc_options_source}")
target_include_directories(containerd_runc_options SYSTEM PUBLIC "${_runc_options_out_dir}")
target_link_libraries(containerd_runc_options PUBLIC protobuf_wkt_lite protobuf::libprotobuf-lite)
target_compile_options(containerd_runc_options PRIVATE -w)
add_library(beaconbox::containerd_runc_options ALIAS containerd_runc_options)
