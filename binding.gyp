{
  "variables": {
    # Everything under native/ except native/test/, which holds the test seams (scripted ioctl port,
    # scripted transport, pass-through device fixture) and their JS entry points.
    "production_sources": ["<!@(find native -name '*.cc' -not -path '*/test/*' | sort)"],
    "test_sources": ["<!@(find native/test -name '*.cc' | sort)"]
  },
  "target_defaults": {
    "include_dirs": [
      "<!(node -p \"require('node-addon-api').include_dir\")",
      "native"
    ],
    "defines": [
      "NAPI_VERSION=8",
      "NAPI_DISABLE_CPP_EXCEPTIONS",
      "KMIP_AGENT_VERSION=\"<!(node -p \"require('./package.json').version\")\""
    ],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-fexceptions"],
    "libraries": ["-lcryptsetup"]
  },
  "targets": [
    {
      # The addon's code, compiled once for both addons below; whole-archive linked, since each
      # native module registers itself from a static initializer that nothing else references.
      "target_name": "kmip_agent_objects",
      "type": "static_library",
      "cflags": ["-fPIC"],
      "sources": ["<@(production_sources)"]
    },
    {
      # The shipped addon: no test seams.
      "target_name": "kmip_agent_native",
      "dependencies": ["kmip_agent_objects"],
      "sources": [],
      "ldflags": ["-Wl,--whole-archive", "<(PRODUCT_DIR)/kmip_agent_objects.a", "-Wl,--no-whole-archive"]
    },
    {
      # Tests only (loaded through KMIP_AGENT_ADDON, see test/support/addon.ts): the same code plus
      # native/test/.
      "target_name": "kmip_agent_native_test",
      "dependencies": ["kmip_agent_objects"],
      "sources": ["<@(test_sources)"],
      "ldflags": ["-Wl,--whole-archive", "<(PRODUCT_DIR)/kmip_agent_objects.a", "-Wl,--no-whole-archive"]
    }
  ]
}
