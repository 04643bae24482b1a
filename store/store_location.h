// Where a store lives, as the user names it, and opening it.
//
//   /srv/store, file:///srv/store        a local directory (the default)
//   s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path_style=0|1&ca_file=PEM
//                         &put_md5=0|1]
//
// For S3, `endpoint` defaults to AWS itself (HTTPS, virtual-host style),
// `path_style` to on when an endpoint is given, `region` to $AWS_REGION,
// $AWS_DEFAULT_REGION or us-east-1, `ca_file` (the certificates an https
// endpoint is checked against instead of the system's) to $AWS_CA_BUNDLE
// for an https endpoint or AWS itself, `put_md5` (check unsigned PUTs by
// MD5/ETag over TLS too, S3Config::put_md5) to off.
// Credentials come from
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else from
// the profile $AWS_PROFILE (default "default") of
// $AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials), as the AWS CLI
// reads them. Everything wavefs keeps in a bucket is under PREFIX: the
// config object `PREFIX/wavefs-store.conf` and `PREFIX/chunks/`.
#pragma once

#include <memory>
#include <string>

#include "store/chunk_store.h"
#include "store/s3_client.h"
#include "store/store_config.h"
#include "util/status.h"

namespace wavefs {

struct StoreLocation {
  enum class Kind { kLocal, kS3 };
  Kind kind = Kind::kLocal;
  std::string local_dir;  // kLocal
  S3Config s3;            // kS3 (credentials filled by LoadS3Credentials)
  // The directory, or s3://bucket/prefix.
  std::string Describe() const;
};

// kInvalid with a one-line reason on a malformed URL, kNotSupported on an
// unknown scheme.
Result<StoreLocation> ParseStoreLocation(const std::string& store);
// kPermission when no credentials are found.
Status LoadS3Credentials(S3Config* config);

// The chunk format `wavefs init` writes without --format: the newest for a
// local store and for S3 over TLS, format 3 for S3 over plain HTTP, where
// format 3's signed SHA-256 address checks each PUT with no pass of its
// own and format 4 would pay an MD5 pass instead (docs/format.md, 2d).
ChunkFormat DefaultChunkFormat(const StoreLocation& where);

// Creates the store (a local directory, or the config object in a bucket,
// written only when absent). kExists when it is already a store.
Result<StoreConfig> InitStore(const StoreLocation& where,
                              int format = kStoreFormatVersion);
// kNotFound when it is not a store; for S3, a one-line reason when the
// bucket cannot be used (wrong keys, no bucket, bad region, unreachable).
Result<StoreConfig> ReadStoreConfigAt(const StoreLocation& where);
// The chunk store of a location, whose config names `format` (an S3 store
// of format 3 signs each chunk's SHA-256 address as its payload hash).
Result<std::unique_ptr<ChunkStore>> OpenChunkStore(const StoreLocation& where,
                                                   ChunkFormat format);

}  // namespace wavefs
