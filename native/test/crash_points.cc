// TEST ADDON ONLY: crash points. With KMIP_AGENT_TEST_CRASH_AT=<step> in the environment, the
// process kills itself with SIGKILL when the emulator reaches that step, like `kill -9` would: of
// Drive::Create (aside-created, image-sized, state-written, state-renamed, image-renamed), or of a state
// file write (state-file-tmp-partial, state-file-tmp-synced, state-file-renamed).
#include <signal.h>

#include <cstdlib>
#include <cstring>

extern "C" void kmip_agent_crash_point(const char* step) {
  const char* at = std::getenv("KMIP_AGENT_TEST_CRASH_AT");
  if (at != nullptr && std::strcmp(at, step) == 0) ::raise(SIGKILL);
}
