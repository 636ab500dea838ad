// TEST ADDON ONLY: crash points. With KMIP_AGENT_TEST_CRASH_AT=<step> in the environment, the
// process kills itself with SIGKILL when the emulator reaches that step of Drive::Create
// (aside-created, image-sized, state-written, state-renamed, image-renamed), like `kill -9` would.
#include <signal.h>

#include <cstdlib>
#include <cstring>

extern "C" void kmip_agent_crash_point(const char* step) {
  const char* at = std::getenv("KMIP_AGENT_TEST_CRASH_AT");
  if (at != nullptr && std::strcmp(at, step) == 0) ::raise(SIGKILL);
}
