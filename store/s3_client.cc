#include "store/s3_client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "chunker/types.h"

namespace wavefs {
namespace {

constexpr size_t kMaxErrorBody = 16 << 10;

std::once_flag curl_once;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(c));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// The text of every <tag>...</tag> in xml, in order (S3's answers are flat
// enough for this; keys wavefs writes need no unescaping).
std::vector<std::string> XmlValues(const std::string& xml,
                                   const std::string& tag) {
  std::vector<std::string> out;
  const std::string open = "<" + tag + ">";
  const std::string close = "</" + tag + ">";
  size_t pos = 0;
  while ((pos = xml.find(open, pos)) != std::string::npos) {
    pos += open.size();
    const size_t end = xml.find(close, pos);
    if (end == std::string::npos) break;
    out.push_back(xml.substr(pos, end - pos));
    pos = end + close.size();
  }
  return out;
}

std::string XmlValue(const std::string& xml, const std::string& tag) {
  auto v = XmlValues(xml, tag);
  return v.empty() ? std::string() : v.front();
}

// Incremental MD5 through OpenSSL's EVP interface.
class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr);
  }
  ~Md5() { EVP_MD_CTX_free(ctx_); }
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void Update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  void Reset() { EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr); }
  std::string HexDigest() {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, d, &n);
    return ToHex({d, n});
  }
  // The digest in base64 (a Content-MD5 header).
  std::string Base64Digest() {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, d, &n);
    unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    const int len = EVP_EncodeBlock(b64, d, static_cast<int>(n));
    return std::string(reinterpret_cast<char*>(b64), static_cast<size_t>(len));
  }

 private:
  EVP_MD_CTX* ctx_;
};

bool Unreserved(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

std::string Encode(const std::string& s, bool keep_slash) {
  std::string out;
  for (char c : s) {
    if (Unreserved(c) || (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", static_cast<unsigned char>(c));
      out += b;
    }
  }
  return out;
}

// A certificate that does not verify, or a CA file that cannot be used.
bool IsTlsTrustError(CURLcode c) {
  return c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CACERT_BADFILE ||
         c == CURLE_SSL_CERTPROBLEM;
}

}  // namespace

std::string EncodeS3Path(const std::string& s) { return Encode(s, true); }
std::string EncodeS3Query(const std::string& s) { return Encode(s, false); }

std::string Md5Hex(std::span<const uint8_t> bytes) {
  Md5 m;
  m.Update(bytes.data(), bytes.size());
  return m.HexDigest();
}

std::string S3Config::Describe() const {
  return "s3://" + bucket + (prefix.empty() ? "" : "/" + prefix);
}

bool S3Config::Tls() const {
  return endpoint.empty() || endpoint.rfind("https://", 0) == 0;
}

bool S3Config::ChecksUnsignedPutsByMd5() const { return !Tls() || put_md5; }

struct S3Client::Handle {
  CURL* easy = nullptr;
  ~Handle() {
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
};

struct S3Client::Request {
  std::string method = "GET";  // GET PUT HEAD DELETE POST
  std::string key;             // full object key; empty: the bucket
  std::string query;           // sorted and encoded, without '?'
  std::vector<std::string> headers;
  std::span<const uint8_t> body;        // PUT from memory, POST
  std::string body_path;                // PUT streamed from a file
  std::string payload_sha256;           // signed hash of the PUT body
  std::vector<uint8_t>* out = nullptr;  // GET body (2xx only)
  int out_fd = -1;                      // or GET body into this file
  std::string what;                     // for messages: "put chunk ab12..."
};

struct S3Client::Response {
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::string etag;
  std::string body;  // error bodies and small answers (List)
  uint64_t content_length = 0;
  std::string sent_md5;  // of what a PUT sent
  bool body_failed = false;
  std::string body_error;
};

S3Client::S3Client(S3Config config) : config_(std::move(config)) {
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

S3Client::~S3Client() = default;

uint64_t S3Client::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

std::unique_ptr<S3Client::Handle> S3Client::TakeHandle() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests_ += 1;
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  auto h = std::make_unique<Handle>();
  h->easy = curl_easy_init();
  return h;
}

void S3Client::ReturnHandle(std::unique_ptr<Handle> h) {
  std::lock_guard<std::mutex> lock(mu_);
  // A handle keeps its connection: a few idle ones are what connection
  // reuse needs (one per concurrent request: 16 upload lanes by default
  // for S3, the FUSE threads' reads and the prefetchers').
  if (idle_.size() < 24) idle_.push_back(std::move(h));
}

std::string S3Client::UrlFor(const std::string& key,
                             const std::string& query) const {
  std::string url;
  const std::string path = key.empty() ? "" : EncodeS3Path(key);
  if (config_.endpoint.empty()) {
    url = config_.path_style
              ? "https://s3." + config_.region + ".amazonaws.com/" +
                    config_.bucket + "/" + path
              : "https://" + config_.bucket + ".s3." + config_.region +
                    ".amazonaws.com/" + path;
  } else if (config_.path_style) {
    url = config_.endpoint + "/" + config_.bucket + "/" + path;
  } else {
    const size_t scheme = config_.endpoint.find("://");
    url = scheme == std::string::npos
              ? "http://" + config_.bucket + "." + config_.endpoint + "/" + path
              : config_.endpoint.substr(0, scheme + 3) + config_.bucket + "." +
                    config_.endpoint.substr(scheme + 3) + "/" + path;
  }
  if (!query.empty()) url += "?" + query;
  return url;
}

namespace {

struct Transfer {
  S3Client::Response* resp = nullptr;
  std::vector<uint8_t>* out = nullptr;
  int out_fd = -1;
  uint64_t written = 0;  // to out_fd
  // upload source
  std::span<const uint8_t> body;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
  Md5* md5 = nullptr;  // null when the payload hash is signed instead
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (after a 100 Continue, say) starts over.
    t->resp->status = 0;
    t->resp->etag.clear();
    t->resp->content_length = 0;
    const size_t sp = line.find(' ');
    if (sp != std::string::npos)
      t->resp->status = std::strtol(line.c_str() + sp + 1, nullptr, 10);
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  const std::string name = Lower(line.substr(0, colon));
  std::string value = Trim(line.substr(colon + 1));
  if (name == "etag") {
    value.erase(std::remove(value.begin(), value.end(), '"'), value.end());
    t->resp->etag = Lower(value);
  } else if (name == "content-length") {
    t->resp->content_length = std::strtoull(value.c_str(), nullptr, 10);
    if (t->out != nullptr && t->resp->status / 100 == 2)
      t->out->reserve(t->resp->content_length);
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  if (t->out_fd >= 0 && t->resp->status / 100 == 2) {
    for (size_t done = 0; done < len;) {
      const ssize_t w = ::write(t->out_fd, data + done, len - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        t->resp->body_failed = true;
        t->resp->body_error = std::string("write: ") + std::strerror(errno);
        return 0;  // aborts the transfer
      }
      done += static_cast<size_t>(w);
    }
    t->written += len;
  } else if (t->out != nullptr && t->resp->status / 100 == 2) {
    t->out->insert(t->out->end(), data, data + len);
  } else if (t->resp->body.size() < kMaxErrorBody) {
    t->resp->body.append(data, std::min(len, kMaxErrorBody));
  }
  return len;
}

size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t want =
      static_cast<size_t>(std::min<uint64_t>(size * n, t->length - t->offset));
  if (want == 0) return 0;
  if (t->fd >= 0) {
    ssize_t got = pread(t->fd, buf, want, static_cast<off_t>(t->offset));
    if (got <= 0) {
      t->resp->body_failed = true;
      t->resp->body_error = got < 0 ? std::strerror(errno) : "file shrank";
      return CURL_READFUNC_ABORT;
    }
    if (t->md5 != nullptr) t->md5->Update(buf, static_cast<size_t>(got));
    t->offset += static_cast<uint64_t>(got);
    return static_cast<size_t>(got);
  }
  std::memcpy(buf, t->body.data() + t->offset, want);
  if (t->md5 != nullptr) t->md5->Update(buf, want);
  t->offset += want;
  return want;
}

// The body of a PUT must be resent from its start on a redirect or retry.
int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset != 0) return CURL_SEEKFUNC_CANTSEEK;
  t->offset = 0;
  if (t->md5 != nullptr) t->md5->Reset();
  return CURL_SEEKFUNC_OK;
}

}  // namespace

S3Client::Response S3Client::Perform(const Request& req) {
  Response resp;
  Transfer t;
  t.resp = &resp;
  t.out = req.out;
  Md5 md5;
  if (ChecksMd5(req)) t.md5 = &md5;
  int fd = -1;
  if (req.method == "PUT") {
    if (!req.body_path.empty()) {
      fd = open(req.body_path.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat st;
      if (fd < 0 || fstat(fd, &st) != 0) {
        resp.body_failed = true;
        resp.body_error =
            std::string("open ") + req.body_path + ": " + std::strerror(errno);
        if (errno == ENOENT) resp.status = -ENOENT;
        if (fd >= 0) close(fd);
        return resp;
      }
      t.fd = fd;
      t.length = static_cast<uint64_t>(st.st_size);
    } else {
      t.body = req.body;
      t.length = req.body.size();
    }
  }
  if (req.out != nullptr) req.out->clear();
  t.out_fd = req.out_fd;
  if (req.out_fd >= 0 && (::ftruncate(req.out_fd, 0) != 0 ||
                          ::lseek(req.out_fd, 0, SEEK_SET) != 0)) {
    resp.body_failed = true;
    resp.body_error = std::string("truncate: ") + std::strerror(errno);
    return resp;
  }

  std::unique_ptr<Handle> h = TakeHandle();
  CURL* c = h->easy;
  curl_easy_reset(c);
  const std::string url = UrlFor(req.key, req.query);
  const std::string sigv4 = "aws:amz:" + config_.region + ":s3";
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_USERNAME, config_.access_key.c_str());
  curl_easy_setopt(c, CURLOPT_PASSWORD, config_.secret_key.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  if (!config_.ca_file.empty())
    curl_easy_setopt(c, CURLOPT_CAINFO, config_.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(config_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(config_.request_timeout.count()));
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_slist* headers = nullptr;
  // libcurl signs the payload hash this header names (SigV4).
  headers = curl_slist_append(
      headers, ("x-amz-content-sha256: " +
                (req.payload_sha256.empty() ? std::string("UNSIGNED-PAYLOAD")
                                            : req.payload_sha256))
                   .c_str());
  if (!config_.session_token.empty()) {
    headers = curl_slist_append(
        headers, ("x-amz-security-token: " + config_.session_token).c_str());
  }
  for (const auto& hd : req.headers)
    headers = curl_slist_append(headers, hd.c_str());
  if (req.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(t.length));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &t);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (req.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(req.body.size()));
  } else if (req.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  resp.curl = curl_easy_perform(c);
  if (resp.curl != CURLE_OK)
    resp.curl_error = errbuf[0] != 0 ? errbuf : curl_easy_strerror(resp.curl);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code != 0) resp.status = code;
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  if (fd >= 0) close(fd);
  if (t.md5 != nullptr && t.offset == t.length) resp.sent_md5 = md5.HexDigest();
  // A handle whose transfer failed may hold a broken connection: drop it.
  if (resp.curl == CURLE_OK) ReturnHandle(std::move(h));
  return resp;
}

Status S3Client::Run(const Request& req, Response* out) {
  auto backoff = config_.initial_backoff;
  thread_local std::mt19937_64 rng(std::random_device{}());
  const std::string where = config_.Describe() + ": " + req.what;
  Status st;
  for (int attempt = 1; attempt <= config_.max_attempts; ++attempt) {
    *out = Perform(req);
    const Response& r = *out;
    bool retry = false;
    if (r.body_failed) {
      if (r.status == -ENOENT)
        return Status::Error(Code::kNotFound, where + ": " + r.body_error,
                             ENOENT);
      return Status::Error(Code::kIo, where + ": " + r.body_error, EIO);
    }
    if (IsTlsTrustError(r.curl)) {
      // Retrying cannot help: the same certificate comes back.
      return Status::Error(
          Code::kPermission,
          where + ": " + r.curl_error + " (endpoint " +
              (config_.endpoint.empty() ? "AWS" : config_.endpoint) +
              "): the server's TLS certificate is not trusted" +
              (config_.ca_file.empty()
                   ? "; name the CA that signed it with ca_file=PATH in the "
                     "store URL or AWS_CA_BUNDLE"
                   : " by ca_file " + config_.ca_file),
          EIO);
    }
    if (r.curl != CURLE_OK) {
      st = Status::Error(Code::kUnavailable,
                         where + ": " + r.curl_error +
                             (config_.endpoint.empty()
                                  ? ""
                                  : " (endpoint " + config_.endpoint + ")"),
                         r.curl == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : EIO,
                         true);
      retry = true;
    } else if (r.status / 100 == 2) {
      return Status::Ok();
    } else {
      const std::string code = XmlValue(r.body, "Code");
      std::string msg = where + ": HTTP " + std::to_string(r.status);
      if (!code.empty()) msg += " " + code;
      const std::string text = XmlValue(r.body, "Message");
      if (!text.empty()) msg += " (" + text + ")";
      if (r.status == 404) {
        if (code == "NoSuchBucket")
          return Status::Error(Code::kNotFound,
                               config_.Describe() + ": bucket '" +
                                   config_.bucket + "' does not exist",
                               ENOENT);
        return Status::Error(Code::kNotFound, msg, ENOENT);
      }
      if (r.status == 412) return Status::Error(Code::kExists, msg, EEXIST);
      if (r.status == 416) return Status::Error(Code::kCorrupt, msg, EIO);
      if (r.status == 403) {
        std::string why = msg;
        if (code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch")
          why += ": wrong access key or secret key";
        return Status::Error(Code::kPermission, why, EACCES);
      }
      if (r.status == 301 || code == "AuthorizationHeaderMalformed" ||
          code == "PermanentRedirect" || code == "IllegalLocationConstraint")
        return Status::Error(Code::kInvalid, msg + ": wrong region?", EINVAL);
      if (code == "XAmzContentSHA256Mismatch" || code == "BadDigest") {
        // The body that arrived does not hash to the signed SHA-256 (or
        // Content-MD5): damaged on the way, or read wrong here. Sent again
        // from its start; if it keeps failing the source itself is bad.
        st = Status::Error(
            Code::kCorrupt,
            msg + ": the body does not hash to its signed digest", EIO, true);
        retry = true;
      } else if (r.status == 429 || r.status / 100 == 5 || code == "SlowDown" ||
                 code == "RequestTimeout") {
        st = Status::Error(Code::kUnavailable, msg, EIO, true);
        retry = true;
      } else {
        return Status::Error(Code::kInvalid, msg, EINVAL);
      }
    }
    if (!retry || attempt == config_.max_attempts) break;
    // Exponential backoff with full jitter.
    std::uniform_int_distribution<int64_t> jitter(0, backoff.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(jitter(rng)));
    backoff = std::min(backoff * 2, config_.max_backoff);
  }
  return st;
}

Status S3Client::Put(const std::string& key, std::span<const uint8_t> body,
                     bool if_absent, const std::string& payload_sha256) {
  Request req;
  req.body = body;
  req.payload_sha256 = payload_sha256;
  return PutObject(key, &req, if_absent);
}

Status S3Client::PutFile(const std::string& key, const std::string& path,
                         bool if_absent, const std::string& payload_sha256) {
  Request req;
  req.body_path = path;
  req.payload_sha256 = payload_sha256;
  return PutObject(key, &req, if_absent);
}

bool S3Client::ChecksMd5(const Request& req) const {
  return req.payload_sha256.empty() && config_.ChecksUnsignedPutsByMd5();
}

Status S3Client::PutObject(const std::string& key, Request* req,
                           bool if_absent) {
  req->method = "PUT";
  req->key = key;
  req->what = "put " + key;
  if (if_absent) req->headers.push_back("If-None-Match: *");
  Response resp;
  WAVEFS_RETURN_IF_ERROR(Run(*req, &resp));
  // A single-part PUT's ETag is the MD5 of what arrived: the store holds
  // exactly the bytes sent (read from the file or memory on the way). With
  // a signed payload hash the server has checked the bytes already, and
  // over TLS the record layer has (ChecksUnsignedPutsByMd5).
  if (ChecksMd5(*req) && resp.etag.size() == 32 && resp.etag != resp.sent_md5) {
    Delete(key).IgnoreError();
    return Status::Error(Code::kCorrupt,
                         config_.Describe() + ": put " + key +
                             ": the stored object's ETag does not match",
                         EIO, true);
  }
  return Status::Ok();
}

Status S3Client::Get(const std::string& key,
                     std::optional<std::pair<uint64_t, uint64_t>> range,
                     std::vector<uint8_t>* out) {
  Request req;
  req.key = key;
  req.out = out;
  req.what = "get " + key;
  if (range) {
    if (range->second == 0) {
      out->clear();
      return Status::Ok();
    }
    req.headers.push_back("Range: bytes=" + std::to_string(range->first) + "-" +
                          std::to_string(range->first + range->second - 1));
  }
  Response resp;
  WAVEFS_RETURN_IF_ERROR(Run(req, &resp));
  if (range && out->size() != range->second)
    return Status::Error(Code::kCorrupt,
                         config_.Describe() + ": get " + key +
                             ": short range (object shorter than expected)");
  return Status::Ok();
}

Status S3Client::GetToFile(const std::string& key, const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "create " + path);
  Request req;
  req.key = key;
  req.out_fd = fd;
  req.what = "get " + key;
  Response resp;
  Status st = Run(req, &resp);
  struct stat sb {};
  if (st.ok() && ::fstat(fd, &sb) != 0)
    st = Status::FromErrno(errno, "stat " + path);
  if (::close(fd) != 0 && st.ok())
    st = Status::FromErrno(errno, "close " + path);
  if (st.ok() && resp.content_length > 0 &&
      static_cast<uint64_t>(sb.st_size) != resp.content_length)
    st = Status::Error(Code::kCorrupt,
                       config_.Describe() + ": get " + key + ": short body (" +
                           std::to_string(sb.st_size) + " of " +
                           std::to_string(resp.content_length) + " bytes)");
  return st;
}

Result<std::optional<uint64_t>> S3Client::Head(const std::string& key) {
  Request req;
  req.method = "HEAD";
  req.key = key;
  req.what = "head " + key;
  Response resp;
  Status st = Run(req, &resp);
  if (st.code() == Code::kNotFound && resp.status == 404)
    return std::optional<uint64_t>();
  if (!st.ok()) return st;
  return std::optional<uint64_t>(resp.content_length);
}

Status S3Client::Delete(const std::string& key) {
  Request req;
  req.method = "DELETE";
  req.key = key;
  req.what = "delete " + key;
  Response resp;
  Status st = Run(req, &resp);
  if (st.code() == Code::kNotFound && resp.status == 404) return Status::Ok();
  return st;
}

void S3Client::DeleteMany(const std::vector<std::string>& keys,
                          std::vector<Status>* results) {
  constexpr size_t kMaxKeys = 1000;  // S3's limit per DeleteObjects
  results->assign(keys.size(), Status::Ok());
  auto escape = [](const std::string& s) {
    std::string o;
    for (char ch : s) {
      switch (ch) {
        case '&':
          o += "&amp;";
          break;
        case '<':
          o += "&lt;";
          break;
        case '>':
          o += "&gt;";
          break;
        case '"':
          o += "&quot;";
          break;
        case '\'':
          o += "&apos;";
          break;
        default:
          o += ch;
      }
    }
    return o;
  };
  for (size_t from = 0; from < keys.size(); from += kMaxKeys) {
    const size_t to = std::min(keys.size(), from + kMaxKeys);
    std::map<std::string, size_t> index_of;
    std::string xml = "<Delete><Quiet>true</Quiet>";
    for (size_t i = from; i < to; ++i) {
      xml += "<Object><Key>" + escape(keys[i]) + "</Key></Object>";
      index_of[keys[i]] = i;
    }
    xml += "</Delete>";
    Md5 md5;
    md5.Update(xml.data(), xml.size());
    Request req;
    req.method = "POST";
    // SigV4 signs the query as given: a valueless subresource as "name=".
    req.query = "delete=";
    req.body = std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(xml.data()), xml.size());
    req.headers = {"Content-Type: application/xml",
                   "Content-MD5: " + md5.Base64Digest()};
    req.what = "delete " + std::to_string(to - from) + " objects";
    std::vector<uint8_t> answer;
    req.out = &answer;
    Response resp;
    Status st = Run(req, &resp);
    if (!st.ok()) {
      for (size_t i = from; i < to; ++i) (*results)[i] = st;
      continue;
    }
    // Quiet: only the keys that failed, each an <Error> with <Key>, <Code>
    // and <Message>.
    const std::string body(answer.begin(), answer.end());
    size_t pos = 0;
    while ((pos = body.find("<Error>", pos)) != std::string::npos) {
      const size_t end = body.find("</Error>", pos);
      if (end == std::string::npos) break;
      const std::string one = body.substr(pos, end - pos);
      pos = end;
      std::string key = XmlValue(one, "Key");
      for (const auto& [entity, ch] :
           {std::pair<std::string, char>{"&lt;", '<'},
            {"&gt;", '>'},
            {"&quot;", '"'},
            {"&apos;", '\''},
            {"&amp;", '&'}}) {
        for (size_t at; (at = key.find(entity)) != std::string::npos;)
          key.replace(at, entity.size(), 1, ch);
      }
      auto it = index_of.find(key);
      if (it == index_of.end()) continue;
      const std::string code = XmlValue(one, "Code");
      if (code == "NoSuchKey") continue;  // absent: ok, as for Delete
      (*results)[it->second] = Status::Error(
          code == "SlowDown" || code == "InternalError" ? Code::kUnavailable
                                                        : Code::kIo,
          config_.Describe() + ": delete " + it->first + ": " + code + " " +
              XmlValue(one, "Message"));
    }
  }
}

Status S3Client::List(const std::string& prefix,
                      const std::function<void(const std::string&)>& fn) {
  return ListSized(prefix, [&](const std::string& key, uint64_t) { fn(key); });
}

Status S3Client::ListSized(
    const std::string& prefix,
    const std::function<void(const std::string&, uint64_t)>& fn) {
  std::string token;
  while (true) {
    Request req;
    req.what = "list " + prefix;
    // SigV4 signs the query as given: names sorted, values encoded.
    if (!token.empty())
      req.query = "continuation-token=" + EncodeS3Query(token) + "&";
    req.query += "list-type=2&prefix=" + EncodeS3Query(prefix);
    std::vector<uint8_t> page;  // up to 1000 keys
    req.out = &page;
    Response resp;
    WAVEFS_RETURN_IF_ERROR(Run(req, &resp));
    const std::string xml(page.begin(), page.end());
    // Every <Contents> holds one <Key> and one <Size>, in that order.
    const auto keys = XmlValues(xml, "Key");
    const auto sizes = XmlValues(xml, "Size");
    for (size_t i = 0; i < keys.size(); ++i)
      fn(keys[i],
         i < sizes.size() ? std::strtoull(sizes[i].c_str(), nullptr, 10) : 0);
    if (XmlValue(xml, "IsTruncated") != "true") return Status::Ok();
    token = XmlValue(xml, "NextContinuationToken");
    if (token.empty())
      return Status::Error(
          Code::kCorrupt,
          config_.Describe() + ": truncated listing without a token");
  }
}

Status S3Client::CreateBucket() {
  Request req;
  req.method = "PUT";
  req.what = "create the bucket";
  const std::string body =
      config_.region == "us-east-1"
          ? std::string()
          : "<CreateBucketConfiguration><LocationConstraint>" + config_.region +
                "</LocationConstraint></CreateBucketConfiguration>";
  req.body = std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(body.data()), body.size());
  Response resp;
  Status st = Run(req, &resp);
  if (resp.status == 409 &&
      XmlValue(resp.body, "Code") == "BucketAlreadyOwnedByYou")
    return Status::Ok();
  return st;
}

Status S3Client::CheckBucket() {
  Request req;
  req.what = "list the bucket";
  req.query = "list-type=2&max-keys=1&prefix=" + EncodeS3Query(config_.prefix);
  Response resp;
  return Run(req, &resp);
}

}  // namespace wavefs
