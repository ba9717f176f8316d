#include "common/nbd_protocol.h"

namespace blockd::common::nbd {

const char* to_string(Command command) {
  switch (command) {
    case Command::kRead: return "READ";
    case Command::kWrite: return "WRITE";
    case Command::kDisc: return "DISC";
    case Command::kFlush: return "FLUSH";
    case Command::kTrim: return "TRIM";
    case Command::kCache: return "CACHE";
    case Command::kWriteZeroes: return "WRITE_ZEROES";
    case Command::kBlockStatus: return "BLOCK_STATUS";
  }
  return "UNKNOWN";
}

const char* to_string(Option option) {
  switch (option) {
    case Option::kExportName: return "EXPORT_NAME";
    case Option::kAbort: return "ABORT";
    case Option::kList: return "LIST";
    case Option::kPeekExport: return "PEEK_EXPORT";
    case Option::kStartTls: return "STARTTLS";
    case Option::kInfo: return "INFO";
    case Option::kGo: return "GO";
    case Option::kStructuredReply: return "STRUCTURED_REPLY";
    case Option::kListMetaContext: return "LIST_META_CONTEXT";
    case Option::kSetMetaContext: return "SET_META_CONTEXT";
  }
  return "UNKNOWN";
}

const char* to_string(Error error) {
  switch (error) {
    case Error::kOk: return "OK";
    case Error::kPerm: return "EPERM";
    case Error::kIo: return "EIO";
    case Error::kNoMem: return "ENOMEM";
    case Error::kInval: return "EINVAL";
    case Error::kNoSpc: return "ENOSPC";
    case Error::kOverflow: return "EOVERFLOW";
    case Error::kNotSup: return "ENOTSUP";
    case Error::kShutdown: return "ESHUTDOWN";
  }
  return "UNKNOWN";
}

}  // namespace blockd::common::nbd
