# Each bad argument must make the probe exit with status 2 and a message.
# Usage: cmake -DPROBE=<path> -P probe_badargs.cmake
cmake_minimum_required(VERSION 3.19)
foreach(args "--bogus" "--load;nosuch" "--duration;abc" "--duration" "--interval;-5"
             "--tickers;0" "--load;" "--csv" "--pool-priority;high" "--pool-priority")
  execute_process(COMMAND ${PROBE} ${args} RESULT_VARIABLE rc
    OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "'${args}': exit ${rc}, expected 2")
  endif()
  if(NOT err MATCHES "urt-latency-probe: ")
    message(FATAL_ERROR "'${args}': no message on stderr")
  endif()
endforeach()
execute_process(COMMAND ${PROBE} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "--load")
  message(FATAL_ERROR "--help: exit ${rc}")
endif()
