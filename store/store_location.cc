#include "store/store_location.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "store/local_store.h"
#include "store/s3_store.h"

namespace wavefs {
namespace {

std::string GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string TrimSpaces(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

Result<bool> ParseBool(const std::string& key, const std::string& v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  return Status::Error(Code::kInvalid,
                       "bad value '" + v + "' for " + key + " (use 0 or 1)");
}

std::shared_ptr<S3Client> ClientFor(const StoreLocation& where) {
  return std::make_shared<S3Client>(where.s3);
}

}  // namespace

std::string StoreLocation::Describe() const {
  return kind == Kind::kLocal ? local_dir : s3.Describe();
}

Result<StoreLocation> ParseStoreLocation(const std::string& store) {
  StoreLocation loc;
  if (store.rfind("s3://", 0) != 0) {
    if (store.rfind("file://", 0) == 0) {
      loc.local_dir = store.substr(7);
    } else if (store.find("://") != std::string::npos) {
      return Status::Error(Code::kNotSupported,
                           "store URL '" + store +
                               "' is not supported (use a directory, "
                               "file://PATH or s3://BUCKET/PREFIX)");
    } else {
      loc.local_dir = store;
    }
    if (loc.local_dir.empty())
      return Status::Error(Code::kInvalid, "empty store path");
    return loc;
  }
  loc.kind = StoreLocation::Kind::kS3;
  std::string rest = store.substr(5);
  std::string query;
  if (const size_t q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  const size_t slash = rest.find('/');
  loc.s3.bucket = rest.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  loc.s3.prefix = prefix;
  if (loc.s3.bucket.size() < 3 || loc.s3.bucket.size() > 63 ||
      loc.s3.bucket.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos)
    return Status::Error(Code::kInvalid,
                         "bad bucket name '" + loc.s3.bucket + "' in " + store +
                             " (3-63 lower-case letters, digits, '.', '-')");
  loc.s3.region = GetEnv("AWS_REGION");
  if (loc.s3.region.empty()) loc.s3.region = GetEnv("AWS_DEFAULT_REGION");
  if (loc.s3.region.empty()) loc.s3.region = "us-east-1";
  std::optional<bool> path_style;
  std::string ca_file;
  size_t pos = 0;
  while (pos < query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string kv = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (kv.empty()) continue;
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (key == "endpoint") {
      if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0)
        return Status::Error(
            Code::kInvalid,
            "endpoint '" + value + "' must start with http:// or https://");
      loc.s3.endpoint = value;
      while (!loc.s3.endpoint.empty() && loc.s3.endpoint.back() == '/')
        loc.s3.endpoint.pop_back();
    } else if (key == "region") {
      if (value.empty())
        return Status::Error(Code::kInvalid, "empty region in " + store);
      loc.s3.region = value;
    } else if (key == "ca_file") {
      if (value.empty())
        return Status::Error(Code::kInvalid, "empty ca_file in " + store);
      ca_file = value;
    } else if (key == "path_style") {
      auto b = ParseBool(key, value);
      if (!b.ok()) return b.status();
      path_style = *b;
    } else if (key == "put_md5") {
      auto b = ParseBool(key, value);
      if (!b.ok()) return b.status();
      loc.s3.put_md5 = *b;
    } else {
      return Status::Error(
          Code::kInvalid,
          "unknown store parameter '" + key + "' in " + store +
              " (endpoint, region, path_style, ca_file, put_md5)");
    }
  }
  loc.s3.path_style = path_style.value_or(!loc.s3.endpoint.empty());
  // As the AWS CLI: the URL's ca_file, else $AWS_CA_BUNDLE, which only
  // TLS endpoints read (a plain http:// store does not fail on a bundle
  // that went away).
  if (ca_file.empty() && loc.s3.Tls()) ca_file = GetEnv("AWS_CA_BUNDLE");
  if (!ca_file.empty()) {
    // Absolute, as the daemon does not stay in this directory; readable
    // now, so a wrong path is one line at init or mount, not a TLS error.
    std::error_code ec;
    const std::string abs = std::filesystem::absolute(ca_file, ec).string();
    if (ec || ::access(abs.c_str(), R_OK) != 0)
      return Status::Error(Code::kInvalid,
                           "ca_file '" + ca_file + "' cannot be read: " +
                               std::strerror(ec ? ec.value() : errno));
    loc.s3.ca_file = abs;
  }
  return loc;
}

ChunkFormat DefaultChunkFormat(const StoreLocation& where) {
  if (where.kind == StoreLocation::Kind::kS3 &&
      where.s3.ChecksUnsignedPutsByMd5())
    return kS3DefaultChunkFormat;
  return kNewestChunkFormat;
}

Status LoadS3Credentials(S3Config* config) {
  config->access_key = GetEnv("AWS_ACCESS_KEY_ID");
  config->secret_key = GetEnv("AWS_SECRET_ACCESS_KEY");
  config->session_token = GetEnv("AWS_SESSION_TOKEN");
  if (!config->access_key.empty() && !config->secret_key.empty())
    return Status::Ok();
  std::string profile = GetEnv("AWS_PROFILE");
  if (profile.empty()) profile = "default";
  std::string file = GetEnv("AWS_SHARED_CREDENTIALS_FILE");
  if (file.empty()) file = GetEnv("HOME") + "/.aws/credentials";
  std::ifstream in(file);
  std::map<std::string, std::string> values;
  std::string line, section;
  while (in && std::getline(in, line)) {
    line = TrimSpaces(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = TrimSpaces(line.substr(1, line.size() - 2));
      continue;
    }
    const size_t eq = line.find('=');
    if (section == profile && eq != std::string::npos)
      values[TrimSpaces(line.substr(0, eq))] = TrimSpaces(line.substr(eq + 1));
  }
  config->access_key = values["aws_access_key_id"];
  config->secret_key = values["aws_secret_access_key"];
  config->session_token = values["aws_session_token"];
  if (config->access_key.empty() || config->secret_key.empty())
    return Status::Error(
        Code::kPermission,
        "no S3 credentials for " + config->Describe() +
            ": set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile "
            "'" +
            profile + "' in " + file,
        EACCES);
  return Status::Ok();
}

Result<StoreConfig> InitStore(const StoreLocation& where, int format) {
  if (where.kind == StoreLocation::Kind::kLocal)
    return InitStoreDir(where.local_dir, format);
  WAVEFS_RETURN_IF_ERROR(CheckNewStoreFormat(format));
  auto client = ClientFor(where);
  WAVEFS_RETURN_IF_ERROR(client->CheckBucket());
  const std::string key = S3KeyOf(where.s3, kStoreConfigName);
  StoreConfig config = NewStoreConfig(format);
  const std::string text = EncodeStoreConfig(config);
  Status st = client->Put(
      key,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                               text.size()),
      true);
  if (st.code() == Code::kExists)
    return Status::Error(Code::kExists,
                         where.Describe() + " is already a wavefs store");
  WAVEFS_RETURN_IF_ERROR(st);
  return config;
}

Result<StoreConfig> ReadStoreConfigAt(const StoreLocation& where) {
  if (where.kind == StoreLocation::Kind::kLocal)
    return ReadStoreConfig(where.local_dir);
  auto client = ClientFor(where);
  WAVEFS_RETURN_IF_ERROR(client->CheckBucket());
  const std::string key = S3KeyOf(where.s3, kStoreConfigName);
  std::vector<uint8_t> bytes;
  Status st = client->Get(key, std::nullopt, &bytes);
  if (st.code() == Code::kNotFound)
    return Status::Error(Code::kNotFound,
                         where.Describe() + " is not a wavefs store (no " +
                             kStoreConfigName + "; run 'wavefs init')");
  WAVEFS_RETURN_IF_ERROR(st);
  return ParseStoreConfig(
      std::string_view(reinterpret_cast<const char*>(bytes.data()),
                       bytes.size()),
      where.Describe() + "/" + kStoreConfigName);
}

Result<std::unique_ptr<ChunkStore>> OpenChunkStore(const StoreLocation& where,
                                                   ChunkFormat format) {
  if (where.kind == StoreLocation::Kind::kLocal) {
    auto local = LocalStore::Open(where.local_dir + "/chunks");
    if (!local.ok()) return local.status();
    return std::unique_ptr<ChunkStore>(std::move(*local));
  }
  return std::unique_ptr<ChunkStore>(
      std::make_unique<S3Store>(ClientFor(where), format));
}

}  // namespace wavefs
