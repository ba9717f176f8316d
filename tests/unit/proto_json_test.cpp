// The control API's JSON is protobuf's JSON mapping of common/proto/blockd.proto
// (DESIGN.md §5). These tests pin the shape a client writes and reads, and that a body
// with an unknown field or a wrong type is refused by the parser (the API must answer
// 400 for those without changing anything).
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "common/proto/blockd.pb.h"

namespace {

namespace v1 = blockd::v1;
using google::protobuf::util::JsonStringToMessage;
using google::protobuf::util::MessageToJsonString;

TEST(ProtoJson, CreateVolumeRequestFromJson) {
  v1::CreateVolumeRequest request;
  const auto status = JsonStringToMessage(
      R"({"name": "pg-data-0", "size": "10GiB", "storageClass": "fast",
          "accessModes": ["READ_WRITE_ONCE", "READ_ONLY_MANY"], "description": "Postgres",
          "labels": {"app": "postgres"}})",
      &request);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(request.name(), "pg-data-0");
  EXPECT_EQ(request.size(), "10GiB");
  EXPECT_EQ(request.storage_class(), "fast");
  ASSERT_EQ(request.access_modes_size(), 2);
  EXPECT_EQ(request.access_modes(1), v1::READ_ONLY_MANY);
  EXPECT_EQ(request.labels().at("app"), "postgres");

  // The proto field names are accepted too.
  ASSERT_TRUE(JsonStringToMessage(R"({"name": "a", "size": "1GiB", "storage_class": "fast"})", &request).ok());
  EXPECT_EQ(request.storage_class(), "fast");
}

TEST(ProtoJson, BadBodiesAreRefused) {
  v1::CreateVolumeRequest request;
  EXPECT_FALSE(JsonStringToMessage(R"({"name": "a", "colour": "blue"})", &request).ok());  // unknown field
  EXPECT_FALSE(JsonStringToMessage(R"({"name": 5})", &request).ok());                      // wrong type
  EXPECT_FALSE(JsonStringToMessage(R"({"accessModes": ["READ_WRITE_MANY"]})", &request).ok());
  EXPECT_FALSE(JsonStringToMessage(R"({"name": "a")", &request).ok());  // malformed
  EXPECT_FALSE(JsonStringToMessage(R"([1, 2])", &request).ok());
}

TEST(ProtoJson, VolumeToJson) {
  v1::Volume volume;
  volume.set_name("pg-data-0");
  volume.set_uuid("0b6e2b8e-4f0c-4d5a-9a57-2f5b0c1d2e3f");
  volume.set_size_bytes(10ULL << 30);
  volume.set_storage_class("fast");
  volume.add_access_modes(v1::READ_WRITE_ONCE);
  volume.mutable_created_at()->set_seconds(1700000000);
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;
  std::string json;
  ASSERT_TRUE(MessageToJsonString(volume, &json, options).ok());
  // 64-bit integers are strings in protobuf's JSON (JavaScript numbers lose precision).
  EXPECT_NE(json.find(R"("sizeBytes":"10737418240")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("accessModes":["READ_WRITE_ONCE"])"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("createdAt":"2023-11-14T22:13:20Z")"), std::string::npos) << json;
}

TEST(ProtoJson, ErrorResponse) {
  v1::ErrorResponse error;
  error.set_code("not_found");
  error.set_message("volume 'x' does not exist");
  std::string json;
  ASSERT_TRUE(MessageToJsonString(error, &json).ok());
  EXPECT_EQ(json, R"({"code":"not_found","message":"volume 'x' does not exist"})");
}

}  // namespace
