# Run by `cmake --install` (see CMakeLists.txt): CMAKE_INSTALL_PREFIX is the install-time
# prefix here, and file(INSTALL) prepends DESTDIR. Inputs: BLOCKD_SOURCE_DIR,
# BLOCKD_WORK_DIR, BLOCKD_UNITS, BLOCKD_UNIT_DIR, BLOCKD_SYSCONFDIR, BLOCKD_SAMPLE_CONFIG.
# Without trailing slashes, so prefix "/" is "" and "${prefix}/sbin" is "/sbin".
set(prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" prefix "${prefix}")

function(blockd_absolute out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

# blockd and blockctl are installed to PREFIX/sbin and PREFIX/bin (server/, tools/).
set(sbindir "${prefix}/sbin")
set(bindir "${prefix}/bin")

# GNUInstallDirs' CMAKE_INSTALL_FULL_SYSCONFDIR, for the prefix known only now.
if(IS_ABSOLUTE "${BLOCKD_SYSCONFDIR}")
  set(confdir "${BLOCKD_SYSCONFDIR}")
elseif(prefix STREQUAL "/usr" OR prefix STREQUAL "")
  set(confdir "/${BLOCKD_SYSCONFDIR}")
elseif(prefix MATCHES "^/opt/(.+)$")
  set(confdir "/${BLOCKD_SYSCONFDIR}/opt/${CMAKE_MATCH_1}")
else()
  set(confdir "${prefix}/${BLOCKD_SYSCONFDIR}")
endif()

blockd_absolute(unitdir "${BLOCKD_UNIT_DIR}")

# The units, with this prefix's paths.
string(RANDOM LENGTH 8 nonce)
set(stage "${BLOCKD_WORK_DIR}/install-units-${nonce}")
file(MAKE_DIRECTORY "${stage}")
foreach(unit IN LISTS BLOCKD_UNITS)
  file(READ "${BLOCKD_SOURCE_DIR}/${unit}" text)
  string(REPLACE "ExecStart=/usr/sbin/blockd" "ExecStart=${sbindir}/blockd" text "${text}")
  if(NOT confdir STREQUAL "/etc")
    string(REPLACE "ExecStart=${sbindir}/blockd" "ExecStart=${sbindir}/blockd --config ${confdir}/blockd/blockd.toml"
           text "${text}")
  endif()
  string(REPLACE "=/usr/bin/blockctl " "=${bindir}/blockctl " text "${text}")
  file(WRITE "${stage}/${unit}" "${text}")
  file(INSTALL DESTINATION "${unitdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${stage}/${unit}")
endforeach()
file(REMOVE_RECURSE "${stage}")

# The sample config, never over an operator's own (an identical one is "Up-to-date").
set(config "$ENV{DESTDIR}${confdir}/blockd/blockd.toml")
set(rename "")
if(EXISTS "${config}")
  file(READ "${config}" existing)
  file(READ "${BLOCKD_SAMPLE_CONFIG}" sample)
  if(NOT existing STREQUAL sample)
    message(STATUS "Keeping ${config}: it differs from the sample, which goes to blockd.toml.dist")
    set(rename RENAME blockd.toml.dist)
  endif()
endif()
file(INSTALL DESTINATION "${confdir}/blockd" TYPE FILE ${rename}
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES "${BLOCKD_SAMPLE_CONFIG}")
