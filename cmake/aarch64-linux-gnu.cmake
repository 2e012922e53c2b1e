# CMake toolchain file for 64-bit ARM Linux boards with Debian's cross compilers
# (apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu):
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=/path/to/arenalm/cmake/aarch64-linux-gnu.cmake \
#         -DCMAKE_PREFIX_PATH=/opt/arenalm-aarch64   # where scripts/install.sh --target put arenalm
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Libraries and headers from the target's root only; packages (arenalm's
# CMake files) also from CMAKE_PREFIX_PATH on the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
