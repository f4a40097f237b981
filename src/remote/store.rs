//! The remote tier's object store, built from a URL:
//!
//! - `file:///abs/dir` (or a relative `file://dir`): a directory, the
//!   embedded default (`<data>/remote`).
//! - `s3://bucket/prefix`: S3 or anything speaking it. Credentials, region
//!   and endpoint come from the standard AWS variables (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//!   `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true` for plain-http emulators).
//!   Query parameters override them: `?endpoint=http://127.0.0.1:9000`,
//!   `&region=…`, `&allow_http=true`. With a custom endpoint requests are
//!   path-style, which MinIO, LocalStack and moto expect. Secrets never
//!   appear in the URL, in errors or in logs.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use crate::error::{Error, ErrorKind, Result};

/// The remote tier's store and where it points.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    pub store: Arc<dyn ObjectStore>,
    url: String,
}

impl RemoteStore {
    /// Wrap an existing store (tests, fault injection).
    pub fn new(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        RemoteStore {
            store,
            url: url.into(),
        }
    }

    /// The URL it was built from (no secrets).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory of a `file://` store (its files can be listed raw).
    pub fn local_root(&self) -> Option<std::path::PathBuf> {
        self.url
            .strip_prefix("file://")
            .map(std::path::PathBuf::from)
    }

    /// Build the store for `url`.
    pub fn from_url(url: &str) -> Result<RemoteStore> {
        let bad =
            |why: String| Error::new(ErrorKind::Invalid, format!("remote URL '{url}': {why}"));
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(bad("no directory after file://".into()));
            }
            std::fs::create_dir_all(path).map_err(|e| bad(format!("cannot create {path}: {e}")))?;
            let fs = LocalFileSystem::new_with_prefix(path).map_err(|e| bad(e.to_string()))?;
            return Ok(RemoteStore::new(Arc::new(fs), url));
        }
        let loc = S3Location::parse(url)?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&loc.bucket)
            .with_region(loc.region.clone())
            // Bounded retries: an unreachable bucket fails a tiering round
            // in seconds (the round is retried with backoff), not minutes.
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(15),
                ..Default::default()
            });
        if let Some(allow) = loc.allow_http {
            builder = builder.with_allow_http(allow);
        }
        if let Some(e) = &loc.endpoint {
            builder = builder
                .with_endpoint(e)
                .with_virtual_hosted_style_request(false);
        }
        let prefix = loc.prefix.clone();
        let location = loc.display();
        let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match prefix.as_str() {
            "" => Arc::new(s3),
            p => Arc::new(PrefixStore::new(s3, p)),
        };
        Ok(RemoteStore::new(store, location))
    }
}

/// An `s3://` URL taken apart, with the environment's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing slashes; may be empty.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    /// Explicit allow_http; `None` keeps the environment's choice.
    pub allow_http: Option<bool>,
}

impl S3Location {
    /// Parse `s3://bucket[/prefix][?endpoint=…&region=…&allow_http=…]`;
    /// endpoint and region default to `AWS_ENDPOINT_URL(_S3)` and
    /// `AWS_REGION`/`AWS_DEFAULT_REGION` (else us-east-1). A plain-http
    /// endpoint allows http unless told otherwise.
    pub fn parse(url: &str) -> Result<S3Location> {
        let bad =
            |why: String| Error::new(ErrorKind::Invalid, format!("remote URL '{url}': {why}"));
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(bad("expected file://DIR or s3://BUCKET[/PREFIX]".into()));
        };
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".into()));
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
        let mut endpoint = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL"));
        let mut allow_http = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "endpoint" => endpoint = Some(v.to_string()),
                "region" => region = Some(v.to_string()),
                "allow_http" => allow_http = Some(v == "true"),
                other => {
                    return Err(bad(format!(
                        "unknown parameter '{other}' (endpoint, region, allow_http)"
                    )))
                }
            }
        }
        if allow_http.is_none()
            && env("AWS_ALLOW_HTTP").is_none()
            && endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
        {
            allow_http = Some(true);
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint,
            region: region.unwrap_or_else(|| "us-east-1".into()),
            allow_http,
        })
    }

    /// `s3://bucket/prefix`, no query, no secrets.
    pub fn display(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("remote").display());
        assert_eq!(RemoteStore::from_url(&url).unwrap().url(), url);
        assert!(dir.path().join("remote").is_dir());
        for bad in ["http://x", "s3://", "file://", "s3://b/p?colour=blue"] {
            let e = RemoteStore::from_url(bad).unwrap_err();
            assert!(
                e.to_string().contains(bad.split('?').next().unwrap()),
                "{e}"
            );
        }
        let s3 = RemoteStore::from_url(
            "s3://bucket/some/prefix?endpoint=http://127.0.0.1:1&region=eu-west-1",
        )
        .unwrap();
        assert_eq!(s3.url(), "s3://bucket/some/prefix");
    }
}
