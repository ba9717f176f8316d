// error_from_errno(): the one errno -> NBD error map (DESIGN.md §7, nbd-proto.md "Error values").
#include "common/nbd_errno.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "common/nbd_protocol.h"

namespace {

namespace wire = blockd::common::nbd;
using wire::Error;
using wire::error_from_errno;

TEST(ErrnoMap, ZeroIsOk) { EXPECT_EQ(error_from_errno(0), Error::kOk); }

TEST(ErrnoMap, PermissionErrorsAreEperm) {
  EXPECT_EQ(error_from_errno(EPERM), Error::kPerm);
  EXPECT_EQ(error_from_errno(EACCES), Error::kPerm);
  EXPECT_EQ(error_from_errno(EROFS), Error::kPerm);
}

TEST(ErrnoMap, SpaceErrorsAreEnospc) {
  // "It also SHOULD map the EDQUOT and EFBIG errors to NBD_ENOSPC."
  EXPECT_EQ(error_from_errno(ENOSPC), Error::kNoSpc);
  EXPECT_EQ(error_from_errno(EDQUOT), Error::kNoSpc);
  EXPECT_EQ(error_from_errno(EFBIG), Error::kNoSpc);
}

TEST(ErrnoMap, ErrorsThatHaveAnNbdValueKeepIt) {
  EXPECT_EQ(error_from_errno(EIO), Error::kIo);
  EXPECT_EQ(error_from_errno(EINVAL), Error::kInval);
  EXPECT_EQ(error_from_errno(EOVERFLOW), Error::kOverflow);
  EXPECT_EQ(error_from_errno(ENOTSUP), Error::kNotSup);
  EXPECT_EQ(error_from_errno(EOPNOTSUPP), Error::kNotSup);
  EXPECT_EQ(error_from_errno(ESHUTDOWN), Error::kShutdown);
  EXPECT_EQ(error_from_errno(ENOMEM), Error::kNoMem);
}

TEST(ErrnoMap, NbdValuesAreTheSpecNumbers) {
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(EPERM)), 1U);
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(EIO)), 5U);
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(ENOMEM)), 12U);
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(EINVAL)), 22U);
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(EDQUOT)), 28U);
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(EOVERFLOW)), 75U);
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(ENOTSUP)), 95U);
  EXPECT_EQ(static_cast<unsigned>(error_from_errno(ESHUTDOWN)), 108U);
}

TEST(ErrnoMap, UnknownErrnoBecomesEio) {
  // Values outside the spec's set must never reach the wire.
  for (int err : {EBADF, ENOENT, EAGAIN, EBUSY, ENXIO, ETIMEDOUT, ECONNRESET, EEXIST, ENODEV, 4095, 100000}) {
    EXPECT_EQ(error_from_errno(err), Error::kIo) << "errno " << err;
  }
}

TEST(ErrnoMap, ToStringNamesEveryValue) {
  EXPECT_STREQ(wire::to_string(Error::kOk), "OK");
  EXPECT_STREQ(wire::to_string(Error::kPerm), "EPERM");
  EXPECT_STREQ(wire::to_string(Error::kIo), "EIO");
  EXPECT_STREQ(wire::to_string(Error::kNoMem), "ENOMEM");
  EXPECT_STREQ(wire::to_string(Error::kInval), "EINVAL");
  EXPECT_STREQ(wire::to_string(Error::kNoSpc), "ENOSPC");
  EXPECT_STREQ(wire::to_string(Error::kOverflow), "EOVERFLOW");
  EXPECT_STREQ(wire::to_string(Error::kNotSup), "ENOTSUP");
  EXPECT_STREQ(wire::to_string(Error::kShutdown), "ESHUTDOWN");
}

}  // namespace
