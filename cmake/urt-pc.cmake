# Install-time half of urt.pc: put the prefix being installed to (which
# cmake --install --prefix may have changed since configure) into the file
# configured from urt.pc.in. URT_PC_IN and URT_PC_OUT are set by the install
# rule before this script; CMAKE_INSTALL_PREFIX is the install prefix (without
# DESTDIR, as the file must name the final location).
if(NOT URT_PC_IN OR NOT URT_PC_OUT)
  message(FATAL_ERROR "urt-pc.cmake: URT_PC_IN and URT_PC_OUT must be set")
endif()
get_filename_component(URT_PC_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}" ABSOLUTE)
string(REGEX REPLACE "(.)/+$" "\\1" URT_PC_INSTALL_PREFIX "${URT_PC_INSTALL_PREFIX}")
configure_file("${URT_PC_IN}" "${URT_PC_OUT}" @ONLY)
