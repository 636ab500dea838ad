// Test-only TCMU handler (issue 13, item 3): serves an emulated Opal 2 drive (native/emulator) to the
// guest kernel as a real SCSI disk through target_core_user, so that sd, the kernel's sed-opal and
// SG_IO meet the emulator's TPer and data plane. Built on the host by test/vm/tcmu.ts (bookworm on
// both sides, so the binary runs in the guest); never shipped.
//
//   tcmu-opal create IMAGE SIZE_MIB SERIAL     a factory-fresh drive (prints nothing secret)
//   tcmu-opal serve IMAGE /dev/uioN            answers the command ring until SIGTERM; SIGUSR1 power-cycles
//
// The ring protocol is the kernel's (include/uapi/linux/target_core_user.h, which compiles as C only:
// ring_abi.c hands its offsets over): the mailbox at the
// start of the UIO map, commands from cmd_tail to cmd_head, iovec bases as offsets into the map,
// the response written over the entry, then a 4-byte write to the UIO fd says "done". One command at
// a time, in order. Every command it does not serve gets ILLEGAL REQUEST / INVALID COMMAND OPERATION
// CODE, a malformed one ILLEGAL REQUEST / INVALID FIELD IN CDB, and it never stops serving for either.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "emulator/drive.h"
#include "emulator/tper.h"

namespace {

using kmip_agent::CodedError;
using kmip_agent::emulator::Drive;
using kmip_agent::emulator::TPer;

constexpr uint32_t kBlock = 512;
constexpr uint8_t kGood = 0x00;
constexpr uint8_t kCheckCondition = 0x02;

// Sense keys and additional sense codes used here (SPC-4).
constexpr uint8_t kIllegalRequest = 0x05;
constexpr uint8_t kDataProtect = 0x07;
constexpr uint8_t kMediumError = 0x03;
constexpr uint16_t kInvalidOpcode = 0x2000;
constexpr uint16_t kLbaOutOfRange = 0x2100;
constexpr uint16_t kInvalidFieldInCdb = 0x2400;
constexpr uint16_t kAccessNotAuthorized = 0x7471;  // LOGICAL UNIT ACCESS NOT AUTHORIZED
constexpr uint16_t kUnrecoveredRead = 0x1100;

void Log(const std::string& line) { std::fprintf(stderr, "tcmu-opal: %s\n", line.c_str()); }

uint64_t Be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}
void PutBe(uint8_t* p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

struct Outcome {
  uint8_t status = kGood;
  uint8_t sense_key = 0;
  uint16_t asc = 0;
  std::vector<uint8_t> data_in;  // what goes back to the initiator (truncated to its buffers)
};

Outcome Check(uint8_t key, uint16_t asc) { return {kCheckCondition, key, asc, {}}; }

// One SCSI logical unit: the emulated drive behind its CDBs.
class OpalLun {
 public:
  explicit OpalLun(std::unique_ptr<Drive> drive) : drive_(std::move(drive)) {}

  void PowerCycle() {
    drive_->PowerCycle();
    tper_ = std::make_unique<TPer>(*drive_);
    Log("power cycled " + drive_->path());
  }

  Outcome Execute(const uint8_t* cdb, size_t cdb_len, const std::vector<uint8_t>& data_out, size_t alloc) {
    try {
      return Dispatch(cdb, cdb_len, data_out, alloc);
    } catch (const CodedError& e) {
      if (e.code() == "EMU_DATA_PROTECT") return Check(kDataProtect, kAccessNotAuthorized);
      if (e.code() == "EMU_LBA_OUT_OF_RANGE") return Check(kIllegalRequest, kLbaOutOfRange);
      // The TPer refused the IF-SEND/IF-RECV (framing, protocol, ComID): the CDB's fields were wrong.
      Log("command 0x" + Hex(cdb[0]) + " failed: " + e.code() + ": " + e.what());
      return Check(kIllegalRequest, kInvalidFieldInCdb);
    } catch (const std::exception& e) {
      Log("command 0x" + Hex(cdb[0]) + " failed: " + e.what());
      return Check(kMediumError, kUnrecoveredRead);
    }
  }

 private:
  static std::string Hex(uint8_t b) {
    char s[3];
    std::snprintf(s, sizeof s, "%02x", b);
    return s;
  }

  static size_t CdbLength(uint8_t opcode) {
    switch (opcode >> 5) {
      case 0: return 6;
      case 1: case 2: return 10;
      case 4: return 16;
      case 5: return 12;
      default: return 0;
    }
  }

  Outcome Dispatch(const uint8_t* cdb, size_t cdb_len, const std::vector<uint8_t>& out, size_t alloc) {
    const uint8_t op = cdb[0];
    const size_t need = CdbLength(op);
    if (need == 0 || cdb_len < need) return Check(kIllegalRequest, kInvalidOpcode);
    switch (op) {
      case 0x00: return {};  // TEST UNIT READY
      case 0x12: return Inquiry(cdb);
      case 0x25: return ReadCapacity10();
      case 0x9E:  // SERVICE ACTION IN(16)
        if ((cdb[1] & 0x1F) == 0x10) return ReadCapacity16(Be(cdb + 10, 4));
        return Check(kIllegalRequest, kInvalidFieldInCdb);
      case 0xA3:  // MAINTENANCE IN
        if ((cdb[1] & 0x1F) == 0x0C) return ReportSupportedOpcodes(cdb);
        return Check(kIllegalRequest, kInvalidFieldInCdb);
      case 0x28: return Read(Be(cdb + 2, 4), Be(cdb + 7, 2));
      case 0x88: return Read(Be(cdb + 2, 8), Be(cdb + 10, 4));
      case 0x2A: return Write(Be(cdb + 2, 4), Be(cdb + 7, 2), out);
      case 0x8A: return Write(Be(cdb + 2, 8), Be(cdb + 10, 4), out);
      case 0x35: case 0x91: return {};  // SYNCHRONIZE CACHE(10/16): every write is already on the image
      case 0xA2: {  // SECURITY PROTOCOL IN
        const size_t len = AllocationLength(cdb);
        Outcome o;
        o.data_in = tper_->IfRecv(cdb[1], static_cast<uint16_t>(Be(cdb + 2, 2)), len);
        o.data_in.resize(len, 0);
        return o;
      }
      case 0xB5: {  // SECURITY PROTOCOL OUT
        const size_t len = AllocationLength(cdb);
        if (out.size() < len) return Check(kIllegalRequest, kInvalidFieldInCdb);
        tper_->IfSend(cdb[1], static_cast<uint16_t>(Be(cdb + 2, 2)), std::vector<uint8_t>(out.begin(), out.begin() + len));
        return {};
      }
      default:
        (void)alloc;
        return Check(kIllegalRequest, kInvalidOpcode);
    }
  }

  // SECURITY PROTOCOL IN/OUT transfer length: bytes, or 512-byte units with INC_512.
  static size_t AllocationLength(const uint8_t* cdb) {
    const uint64_t n = Be(cdb + 6, 4);
    return (cdb[4] & 0x80) ? n * kBlock : n;
  }

  Outcome Inquiry(const uint8_t* cdb) {
    Outcome o;
    const size_t alloc = Be(cdb + 3, 2);
    const std::string& serial = drive_->state().serial;
    if (cdb[1] & 0x01) {  // EVPD
      switch (cdb[2]) {
        case 0x00: o.data_in = {0x00, 0x00, 0x00, 0x03, 0x00, 0x80, 0x83}; break;
        case 0x80:
          o.data_in = {0x00, 0x80, 0x00, static_cast<uint8_t>(serial.size())};
          o.data_in.insert(o.data_in.end(), serial.begin(), serial.end());
          break;
        case 0x83: {  // one T10 vendor ID designator: "KMIPVM  " + serial
          std::string id = "KMIPVM  " + serial;
          o.data_in = {0x00, 0x83, 0x00, static_cast<uint8_t>(id.size() + 4), 0x02, 0x01, 0x00,
                       static_cast<uint8_t>(id.size())};
          o.data_in.insert(o.data_in.end(), id.begin(), id.end());
          break;
        }
        default: return Check(kIllegalRequest, kInvalidFieldInCdb);
      }
    } else {
      if (cdb[2] != 0) return Check(kIllegalRequest, kInvalidFieldInCdb);
      o.data_in.assign(36, 0);
      o.data_in[0] = 0x00;  // direct-access block device
      o.data_in[2] = 0x06;  // SPC-4: sd only asks for supported opcodes (and so security) from SPC-3 up
      o.data_in[3] = 0x02;  // response data format 2
      o.data_in[4] = 31;
      std::memcpy(&o.data_in[8], "KMIPVM  ", 8);
      std::memcpy(&o.data_in[16], "Emulated Opal 2 ", 16);
      std::memcpy(&o.data_in[32], "0001", 4);
    }
    if (o.data_in.size() > alloc) o.data_in.resize(alloc);
    return o;
  }

  Outcome ReadCapacity10() {
    Outcome o;
    o.data_in.assign(8, 0);
    const uint64_t last = drive_->state().blocks - 1;
    PutBe(&o.data_in[0], last > 0xFFFFFFFFull ? 0xFFFFFFFFull : last, 4);
    PutBe(&o.data_in[4], kBlock, 4);
    return o;
  }

  Outcome ReadCapacity16(size_t alloc) {
    Outcome o;
    o.data_in.assign(32, 0);
    PutBe(&o.data_in[0], drive_->state().blocks - 1, 8);
    PutBe(&o.data_in[8], kBlock, 4);
    if (o.data_in.size() > alloc) o.data_in.resize(alloc);
    return o;
  }

  // Reporting options 1 (one command by opcode): what sd asks to decide whether the disk takes
  // SECURITY PROTOCOL IN/OUT. The full list (options 0) is not served.
  Outcome ReportSupportedOpcodes(const uint8_t* cdb) {
    const uint8_t options = cdb[2] & 0x07;
    if (options != 1) return Check(kIllegalRequest, kInvalidFieldInCdb);
    const uint8_t op = cdb[3];
    static const uint8_t kServed[] = {0x00, 0x12, 0x25, 0x28, 0x2A, 0x35, 0x88, 0x8A, 0x91, 0xA2, 0xB5};
    Outcome o;
    o.data_in.assign(4, 0);
    o.data_in[1] = 0x01;  // not supported
    for (uint8_t s : kServed) {
      if (s != op) continue;
      const size_t len = CdbLength(op);
      o.data_in[1] = 0x03;  // supported, as the standard says
      PutBe(&o.data_in[2], len, 2);
      o.data_in.resize(4 + len, 0xFF);
      o.data_in[4] = op;
    }
    const size_t alloc = Be(cdb + 6, 4);
    if (o.data_in.size() > alloc) o.data_in.resize(alloc);
    return o;
  }

  Outcome Read(uint64_t lba, uint64_t count) {
    Outcome o;
    if (count == 0) return o;
    o.data_in = drive_->Read(lba, count);
    return o;
  }

  Outcome Write(uint64_t lba, uint64_t count, const std::vector<uint8_t>& out) {
    if (out.size() < count * kBlock) return Check(kIllegalRequest, kInvalidFieldInCdb);
    if (count) drive_->Write(lba, out.data(), count * kBlock);
    return {};
  }

  std::unique_ptr<Drive> drive_;
  std::unique_ptr<TPer> tper_ = std::make_unique<TPer>(*drive_);
};

// target_core_user's shared-memory layout, from the kernel header through ring_abi.c.
extern "C" {
extern const size_t tcmu_abi_mb_cmdr_off, tcmu_abi_mb_cmdr_size, tcmu_abi_mb_cmd_head, tcmu_abi_mb_cmd_tail;
extern const size_t tcmu_abi_req_iov_cnt, tcmu_abi_req_cdb_off, tcmu_abi_req_iov, tcmu_abi_iov_size;
extern const size_t tcmu_abi_rsp_status, tcmu_abi_rsp_sense, tcmu_abi_rsp_end;
extern const unsigned tcmu_abi_op_mask, tcmu_abi_op_cmd, tcmu_abi_mailbox_version;
}
namespace abi {
const size_t kMbCmdrOff = tcmu_abi_mb_cmdr_off, kMbCmdrSize = tcmu_abi_mb_cmdr_size;
const size_t kMbCmdHead = tcmu_abi_mb_cmd_head, kMbCmdTail = tcmu_abi_mb_cmd_tail;
constexpr size_t kHdrLenOp = 0;
const uint32_t kOpMask = tcmu_abi_op_mask, kOpCmd = tcmu_abi_op_cmd;
const size_t kReqIovCnt = tcmu_abi_req_iov_cnt, kReqCdbOff = tcmu_abi_req_cdb_off, kReqIov = tcmu_abi_req_iov;
const size_t kIovSize = tcmu_abi_iov_size;
const size_t kRspStatus = tcmu_abi_rsp_status, kRspSense = tcmu_abi_rsp_sense;
const size_t kRspSize = tcmu_abi_rsp_end - tcmu_abi_rsp_status;
}  // namespace abi

// The UIO map of one TCMU device: mailbox, command ring, data area.
class Ring {
 public:
  explicit Ring(const std::string& uio) {
    fd_ = open(uio.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("cannot open " + uio + ": " + std::strerror(errno));
    const std::string name = uio.substr(uio.rfind('/') + 1);
    std::ifstream size_file("/sys/class/uio/" + name + "/maps/map0/size");
    std::string text;
    size_file >> text;
    size_ = std::stoull(text, nullptr, 0);
    void* map = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (map == MAP_FAILED) throw std::runtime_error("cannot map " + uio + ": " + std::strerror(errno));
    base_ = static_cast<uint8_t*>(map);
    uint16_t version;
    std::memcpy(&version, base_, 2);
    if (version != tcmu_abi_mailbox_version) Log("mailbox version " + std::to_string(version) + " (built for " + std::to_string(tcmu_abi_mailbox_version) + ")");
    Log("ring " + std::to_string(U32(abi::kMbCmdrSize)) + " bytes at " + std::to_string(U32(abi::kMbCmdrOff)) +
        ", map " + std::to_string(size_));
  }

  int fd() const { return fd_; }

  // Serves every entry between the tail and the head; returns how many commands it answered.
  int Drain(OpalLun& lun) {
    int served = 0;
    const uint32_t ring_off = U32(abi::kMbCmdrOff), ring_size = U32(abi::kMbCmdrSize);
    for (;;) {
      __sync_synchronize();
      const uint32_t head = U32(abi::kMbCmdHead);
      const uint32_t tail = U32(abi::kMbCmdTail);
      if (tail == head) break;
      uint8_t* entry = base_ + ring_off + tail;
      uint32_t len_op;
      std::memcpy(&len_op, entry + abi::kHdrLenOp, 4);
      const uint32_t len = len_op & ~abi::kOpMask;
      if (len == 0 || len > ring_size) throw std::runtime_error("corrupt command ring entry");
      if ((len_op & abi::kOpMask) == abi::kOpCmd) {
        Serve(lun, entry);
        served++;
      }
      // Pad entries need nothing; TMR entries (task management) need no answer here: commands are
      // answered in order, so an aborted one is already done.
      __sync_synchronize();
      const uint32_t next = (tail + len) % ring_size;
      std::memcpy(base_ + abi::kMbCmdTail, &next, 4);
    }
    if (served) {
      uint32_t one = 1;
      if (write(fd_, &one, sizeof one) != sizeof one) Log(std::string("cannot notify the kernel: ") + std::strerror(errno));
    }
    return served;
  }

 private:
  uint32_t U32(size_t off) const {
    uint32_t v;
    std::memcpy(&v, base_ + off, 4);
    return v;
  }
  bool InMap(uint64_t off, uint64_t len) const { return off <= size_ && len <= size_ - off; }

  void Serve(OpalLun& lun, uint8_t* entry) {
    uint32_t iov_cnt;
    uint64_t cdb_off;
    std::memcpy(&iov_cnt, entry + abi::kReqIovCnt, 4);
    std::memcpy(&cdb_off, entry + abi::kReqCdbOff, 8);
    std::vector<std::pair<uint64_t, uint64_t>> iov(iov_cnt);  // (offset into the map, length)
    size_t total = 0;
    for (uint32_t i = 0; i < iov_cnt; i++) {
      std::memcpy(&iov[i].first, entry + abi::kReqIov + i * abi::kIovSize, 8);
      std::memcpy(&iov[i].second, entry + abi::kReqIov + i * abi::kIovSize + 8, 8);
      total += iov[i].second;
    }
    bool sane = InMap(cdb_off, 16);
    for (const auto& v : iov) sane = sane && InMap(v.first, v.second);
    Outcome o;
    if (!sane) {
      o = Check(kIllegalRequest, kInvalidFieldInCdb);
    } else {
      const uint8_t* cdb = base_ + cdb_off;
      // Writes and SECURITY PROTOCOL OUT bring data; the kernel puts it in the same iovecs.
      const bool data_out = cdb[0] == 0x2A || cdb[0] == 0x8A || cdb[0] == 0xB5;
      std::vector<uint8_t> out;
      if (data_out) {
        out.reserve(total);
        for (const auto& v : iov) out.insert(out.end(), base_ + v.first, base_ + v.first + v.second);
      }
      o = lun.Execute(cdb, 16, out, total);
      if (logged_ < 64) {  // the first commands, for the test's evidence of what sd asked
        logged_++;
        char line[96];
        std::snprintf(line, sizeof line, "cdb %02x %02x %02x %02x -> status %u sense %u/%04x, %zu bytes in", cdb[0], cdb[1],
                      cdb[2], cdb[3], o.status, o.sense_key, o.asc, o.data_in.size());
        Log(line);
      }
      size_t done = 0;
      for (const auto& v : iov) {
        if (data_out || done >= o.data_in.size()) break;
        const size_t n = std::min<size_t>(v.second, o.data_in.size() - done);
        std::memcpy(base_ + v.first, o.data_in.data() + done, n);
        done += n;
      }
    }
    std::memset(entry + abi::kRspStatus, 0, abi::kRspSize);
    entry[abi::kRspStatus] = o.status;
    if (o.status == kCheckCondition) {
      uint8_t* s = entry + abi::kRspSense;
      s[0] = 0x70;  // fixed format, current
      s[2] = o.sense_key;
      s[7] = 10;
      s[12] = static_cast<uint8_t>(o.asc >> 8);
      s[13] = static_cast<uint8_t>(o.asc);
    }
  }

  int fd_ = -1;
  int logged_ = 0;
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
};

int Serve(const std::string& image, const std::string& uio) {
  OpalLun lun(Drive::Open(image));
  Ring ring(uio);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGUSR1);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  Log("serving " + image + " on " + uio);
  std::printf("ready\n");
  std::fflush(stdout);
  ring.Drain(lun);  // anything queued before we started
  for (;;) {
    pollfd fds[2] = {{ring.fd(), POLLIN, 0}, {sfd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      if (read(sfd, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGUSR1) {
          lun.PowerCycle();
        } else {
          Log("stopping");
          return 0;
        }
      }
    }
    if (fds[0].revents & POLLIN) {
      uint32_t count;
      if (read(ring.fd(), &count, sizeof count) < 0 && errno != EINTR) Log(std::string("uio read: ") + std::strerror(errno));
      ring.Drain(lun);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string verb = argc > 1 ? argv[1] : "";
    if (verb == "create" && argc == 5) {
      Drive::Create(argv[2], std::stoull(argv[3]), argv[4]);  // the PSID it returns is not needed here
      return 0;
    }
    if (verb == "serve" && argc == 4) return Serve(argv[2], argv[3]);
    std::fprintf(stderr, "usage: tcmu-opal create IMAGE SIZE_MIB SERIAL | serve IMAGE /dev/uioN\n");
    return 2;
  } catch (const CodedError& e) {
    Log(e.code() + ": " + e.what());
    return 1;
  } catch (const std::exception& e) {
    Log(e.what());
    return 1;
  }
}
