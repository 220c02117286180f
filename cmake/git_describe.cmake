# git_describe.cmake: writes OUT, a header defining SIGFLOW_GIT_DESCRIBE (git
# describe of SRC, "" outside a git checkout), at every build but only when it
# changed, so --version and sigflow_build_info name the commit built without
# recompiling anything when it did not change.
set(describe "")
find_package(Git QUIET)
if(GIT_FOUND AND EXISTS "${SRC}/.git")
  execute_process(COMMAND "${GIT_EXECUTABLE}" describe --always --dirty --tags
                  WORKING_DIRECTORY "${SRC}" OUTPUT_VARIABLE describe
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
set(text "#define SIGFLOW_GIT_DESCRIBE \"${describe}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
