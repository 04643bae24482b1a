// S3Client: the few S3 requests wavefs needs, over libcurl, signed with
// SigV4 by libcurl (CURLOPT_AWS_SIGV4).
//
// - Requests: PUT (from memory, or streamed from a file with its MD5 checked
//   against the ETag), GET (whole or a byte range), HEAD, DELETE, and
//   ListObjectsV2 (paged).
// - Every request has a connect timeout and a total timeout; easy handles
//   are pooled so connections are reused across requests.
// - Retryable failures (timeouts, connection errors, 5xx, 429, SlowDown) are
//   retried with exponential backoff and full jitter, up to max_attempts;
//   what remains is returned with Status::retryable() set. 400/403/404 are
//   permanent, with the store and S3's error code in the message. A server
//   certificate that does not verify is permanent too: its message says how
//   to trust it (ca_file).
// - libcurl 7.88 signs the x-amz-content-sha256 header when given but does
//   not add it: a request sends the PUT body's SHA-256 when the caller
//   knows it (format 3's address), else UNSIGNED-PAYLOAD. An unsigned body
//   is checked by MD5/ETag over plain HTTP (computed while it streams, no
//   second read of the file) and by TLS alone over https.
//
// Memory: no request body is copied; a streamed PUT reads its file through
// a 64 KiB buffer. GET bodies go straight into the caller's vector.
// Thread safety: all methods are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "util/status.h"

namespace wavefs {

struct S3Config {
  std::string bucket;
  std::string prefix;    // no leading or trailing '/'; may be empty
  std::string endpoint;  // "http://127.0.0.1:7480"; empty: AWS itself
  std::string region = "us-east-1";
  bool path_style = true;  // false: virtual-host style (AWS default)
  // A PEM file of the certificates to trust for an https:// endpoint
  // (a private CA, a self-signed server), instead of the system's bundle;
  // empty: the system's. An absolute path.
  std::string ca_file;
  // Check an unsigned PUT body by its MD5 against the ETag even over TLS
  // (the store URL's put_md5=1): for a TLS proxy in front of a plain-HTTP
  // server, where TLS does not reach the server that stores the bytes.
  bool put_md5 = false;
  std::string access_key;
  std::string secret_key;
  std::string session_token;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{60000};
  int max_attempts = 4;
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  // "s3://bucket/prefix" for messages.
  std::string Describe() const;
  // Requests go over TLS, always verified: an https:// endpoint, or AWS.
  bool Tls() const;
  // Whether a PUT without a signed payload hash computes its body's MD5
  // and compares it with the ETag: over plain HTTP, or with put_md5. Over
  // TLS the record layer already authenticates every byte that reaches
  // the server, so the check (a pass over the body) buys nothing.
  bool ChecksUnsignedPutsByMd5() const;
};

class S3Client {
 public:
  explicit S3Client(S3Config config);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  const S3Config& config() const { return config_; }

  // if_absent: with If-None-Match: * ; an existing object is kExists.
  // payload_sha256: the body's SHA-256 as 64 hex characters, when the
  // caller knows it. It is signed (x-amz-content-sha256) and the server
  // refuses a body that does not hash to it (kCorrupt, retryable), so no
  // MD5 is computed; without it the body is sent as UNSIGNED-PAYLOAD and,
  // when config().ChecksUnsignedPutsByMd5(), its MD5, computed on the way,
  // must equal the returned ETag.
  Status Put(const std::string& key, std::span<const uint8_t> body,
             bool if_absent, const std::string& payload_sha256 = "");
  // Streams the file at path (its whole length) as the object's body.
  Status PutFile(const std::string& key, const std::string& path,
                 bool if_absent, const std::string& payload_sha256 = "");
  // The object (range: {offset, length}); kNotFound when absent.
  Status Get(const std::string& key,
             std::optional<std::pair<uint64_t, uint64_t>> range,
             std::vector<uint8_t>* out);
  // The whole object into the file at path (replaced), streamed.
  Status GetToFile(const std::string& key, const std::string& path);
  // The object's size, or nullopt when absent.
  Result<std::optional<uint64_t>> Head(const std::string& key);
  Status Delete(const std::string& key);
  // DeleteObjects (POST ?delete, quiet), up to 1000 keys a request;
  // (*results)[i] is the outcome for keys[i]: a key S3 reports an error for
  // gets it, a failed request gives its status to every key it carried.
  void DeleteMany(const std::vector<std::string>& keys,
                  std::vector<Status>* results);
  // Every key under prefix (full keys), page by page.
  Status List(const std::string& prefix,
              const std::function<void(const std::string&)>& fn);
  // The same with each object's size.
  Status ListSized(const std::string& prefix,
                   const std::function<void(const std::string&, uint64_t)>& fn);
  // A signed request to the bucket itself: tells wrong keys, a missing
  // bucket, a bad region or an unreachable endpoint apart, in one line.
  Status CheckBucket();
  // Creates the bucket (ok when it exists and is ours): tests and
  // `wavefs init --create-bucket`.
  Status CreateBucket();

  // Requests sent (including retries), for `user.wavefs.stats`.
  uint64_t requests() const;

  // Internal (public for the transfer callbacks in s3_client.cc).
  struct Request;
  struct Response;

 private:
  struct Handle;
  // PUT of req's body (memory or file) with the ETag check.
  Status PutObject(const std::string& key, Request* req, bool if_absent);
  // Whether this request's body is hashed with MD5 on the way and the
  // ETag compared with it: an unsigned body, when the config asks for it.
  bool ChecksMd5(const Request& req) const;
  // One attempt.
  Response Perform(const Request& req);
  // With retries; turns the response into a Status.
  Status Run(const Request& req, Response* resp);
  std::string UrlFor(const std::string& key, const std::string& query) const;
  std::unique_ptr<Handle> TakeHandle();
  void ReturnHandle(std::unique_ptr<Handle> h);

  const S3Config config_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_;  // under mu_
  uint64_t requests_ = 0;                      // under mu_
};

// The lower-case hex MD5 of bytes (what S3 returns as a single-part ETag).
std::string Md5Hex(std::span<const uint8_t> bytes);
// Percent-encodes for a URL path (keeps unreserved characters and '/').
std::string EncodeS3Path(const std::string& s);
// Percent-encodes a query value as SigV4 wants it ('/' too).
std::string EncodeS3Query(const std::string& s);

}  // namespace wavefs
