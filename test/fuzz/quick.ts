/** Inputs per target in the bounded run of the normal suite (seconds in all, on 2 cores). */
export const QUICK_COUNTS: Record<string, number> = {
  'ttlv-decode': 20_000,
  'kmip-client-response': 20_000,
  'tcg-parsers': 10_000,
  'emulator-compacket': 1_000,
  'tcg-host-stack': 1_000,
  'sed-opal-structs': 2_000,
  'luks2-header': 60,
};
