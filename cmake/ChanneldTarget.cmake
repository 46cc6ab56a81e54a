# Warnings and sanitizers are set per target by this helper (as spdlog does), never by editing
# CMAKE_CXX_FLAGS, so third-party headers and test frameworks keep their own settings.
function(channeld_set_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
                                           -Wformat=2)
  # No -Wnull-dereference: GCC 12 reports false positives inside Asio's scheduler.
  if(CHANNELD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(CHANNELD_SANITIZE)
    # No vptr check: it needs the typeinfo of SOCI's internal classes, which libsoci does not
    # export, so every target linking the store would fail to link.
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=vptr
                                             -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=vptr)
  endif()
  if(CHANNELD_TSAN)
    # -Wno-tsan: Asio's handler completion uses std::atomic_thread_fence, which GCC warns TSan
    # does not model; the hand-over it guards also goes through the scheduler's mutex.
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
    target_link_options(${target} PRIVATE -fsanitize=thread)
  endif()
  if(CHANNELD_FUZZ)
    # Coverage for libFuzzer in every library the targets link; ASan and UBSan catch what a
    # crash alone would not.
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined
                                             -fno-sanitize=vptr -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=vptr)
  endif()
  # Boost 1.74's asio/awaitable.hpp misses <utility> under GCC 12 in C++20 mode.
  target_compile_options(${target} PRIVATE -include utility)
endfunction()

# channeld_component(NAME SOURCES ... DEPS ...): one library target per folder under daemon/.
function(channeld_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(channeld_${name} STATIC ${ARG_SOURCES})
  add_library(channeld::${name} ALIAS channeld_${name})
  target_include_directories(channeld_${name} PUBLIC ${PROJECT_SOURCE_DIR}/daemon)
  target_link_libraries(channeld_${name} PUBLIC ${ARG_DEPS})
  channeld_set_options(channeld_${name})
endfunction()
