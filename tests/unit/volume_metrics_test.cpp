// VolumeMetrics (server/metrics/volume_metrics.h): requests are counted per operation,
// bytes only on success, errors by NBD error, with the protocol's own names as labels.
#include "server/metrics/volume_metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include "common/nbd_protocol.h"

namespace {

using blockd::common::nbd::Error;
using namespace blockd::server::metrics;

TEST(VolumeMetrics, EveryCountedErrorHasItsOwnSlotAndTheProtocolsName) {
  std::set<std::size_t> slots;
  for (Error error : kCountedErrors) {
    const std::size_t slot = error_slot(error);
    ASSERT_LT(slot, kCountedErrors.size());
    slots.insert(slot);
    EXPECT_EQ(error_label(slot), blockd::common::nbd::to_string(error));
  }
  EXPECT_EQ(slots.size(), kCountedErrors.size());
  EXPECT_EQ(error_label(error_slot(Error::kInval)), "EINVAL");
}

TEST(VolumeMetrics, AnUnknownErrorValueIsCountedAsOther) {
  const std::size_t slot = error_slot(static_cast<Error>(9999));
  EXPECT_EQ(slot, kErrorSlots - 1);
  EXPECT_EQ(error_label(slot), "other");
}

TEST(VolumeMetrics, RecordCountsBytesOnSuccessAndErrorsByKind) {
  VolumeMetrics metrics(2);
  WorkerCounters& worker = metrics.worker(1);
  worker.started.add(3);
  VolumeMetrics::record(worker, Op::kRead, 4096, std::chrono::microseconds(30), Error::kOk);
  VolumeMetrics::record(worker, Op::kRead, 4096, std::chrono::microseconds(30), Error::kInval);
  VolumeMetrics::record(worker, Op::kRead, 4096, std::chrono::microseconds(30), Error::kIo);
  const OpTotals read = metrics.totals(Op::kRead);
  EXPECT_EQ(read.requests, 3U);
  EXPECT_EQ(read.bytes, 4096U) << "only the successful read moved data";
  EXPECT_EQ(read.errors[error_slot(Error::kInval)], 1U);
  EXPECT_EQ(read.errors[error_slot(Error::kIo)], 1U);
  EXPECT_EQ(read.errors[error_slot(Error::kPerm)], 0U);
  EXPECT_EQ(metrics.totals(Op::kWrite).requests, 0U);
  EXPECT_EQ(metrics.in_flight(), 0U);
}

}  // namespace
