#include "common/nbd_errno.h"

#include <cerrno>

namespace blockd::common::nbd {

Error error_from_errno(int err) {
  switch (err) {
    case 0: return Error::kOk;
    case EPERM:
    case EACCES:
    case EROFS: return Error::kPerm;
    case ENOMEM: return Error::kNoMem;
    case EINVAL: return Error::kInval;
    // "Error values": SHOULD map EDQUOT and EFBIG to NBD_ENOSPC.
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return Error::kNoSpc;
    case EOVERFLOW: return Error::kOverflow;
    case ENOTSUP: return Error::kNotSup;  // == EOPNOTSUPP on Linux
    case ESHUTDOWN: return Error::kShutdown;
    default: return Error::kIo;
  }
}

}  // namespace blockd::common::nbd
