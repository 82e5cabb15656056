# SPDX-License-Identifier: Apache-2.0
# The generated config header and what `cmake --install` lays out:
#   include/gdp/*.hpp                      the public headers and the generated config.hpp
#   lib/libgdp.a, lib/libgdp_io.a          the libraries with a public API
#   bin/gdp_app                            when built
#   lib/cmake/gdp/gdpConfig.cmake, gdpConfigVersion.cmake, gdpTargets*.cmake
#                                          the CMake package: gdp::gdp, gdp::io
# Included from the top-level CMakeLists.txt once every target exists. The other libraries
# (gdp_reference, gdp_dist) are built for the tests and gdp_app: their headers live in src/ and
# include the implementation, so they are not part of the installed API.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# include/gdp/config.hpp: gdp's version and the Kokkos it is compiled against.
string(REGEX MATCHALL "[0-9]+" gdp_kokkos_version_parts "${Kokkos_VERSION}")
list(GET gdp_kokkos_version_parts 0 gdp_kokkos_major)
list(GET gdp_kokkos_version_parts 1 gdp_kokkos_minor)
list(GET gdp_kokkos_version_parts 2 gdp_kokkos_patch)
math(EXPR GDP_KOKKOS_VERSION_NUMBER
     "${gdp_kokkos_major} * 10000 + ${gdp_kokkos_minor} * 100 + ${gdp_kokkos_patch}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/gdp_config.hpp.in
               ${PROJECT_BINARY_DIR}/include/gdp/config.hpp @ONLY)
target_include_directories(gdp PUBLIC $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>)

set(gdp_installed_libraries gdp gdp_io)
set_target_properties(gdp_io PROPERTIES EXPORT_NAME io)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/gdp ${PROJECT_BINARY_DIR}/include/gdp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp")
install(TARGETS ${gdp_installed_libraries} EXPORT gdpTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET gdp_app)
  install(TARGETS gdp_app RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

set(gdp_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/gdp)
install(EXPORT gdpTargets NAMESPACE gdp:: DESTINATION ${gdp_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/gdpConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/gdpConfig.cmake
                              INSTALL_DESTINATION ${gdp_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/gdpConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/gdpConfig.cmake ${PROJECT_BINARY_DIR}/gdpConfigVersion.cmake
        DESTINATION ${gdp_cmake_dir})
