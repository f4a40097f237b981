//! Bucket administration that object_store cannot do, with aws-sdk-s3:
//! creating the bucket (`serve --create-bucket`) and listing and aborting
//! stale multipart uploads (the reaper), so an upload a crash interrupted
//! leaves no parts behind. Same URL and AWS settings as [`super::store`].

use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::Client;

use super::store::S3Location;
use crate::error::{Error, ErrorKind, Result};

/// An aws-sdk-s3 client for the remote tier's bucket and prefix.
#[derive(Debug, Clone)]
pub struct S3Admin {
    client: Client,
    bucket: String,
    prefix: String,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what}: {e}"))
}

impl S3Admin {
    /// From a ready client (tests).
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Admin {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// For an `s3://` URL, with credentials from the standard AWS chain;
    /// `None` for any other URL.
    pub async fn from_url(url: &str) -> Result<Option<S3Admin>> {
        if !url.starts_with("s3://") {
            return Ok(None);
        }
        let loc = S3Location::parse(url)?;
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(loc.region.clone()))
            .load()
            .await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = &loc.endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(Some(S3Admin::new(
            Client::from_conf(config.build()),
            loc.bucket,
            loc.prefix,
        )))
    }

    fn key_prefix(&self, sub: &str) -> String {
        match (self.prefix.as_str(), sub) {
            ("", s) => s.to_string(),
            (p, "") => format!("{p}/"),
            (p, s) => format!("{p}/{s}"),
        }
    }

    /// Create the bucket unless it exists; true when it was created.
    pub async fn create_bucket_if_missing(&self) -> Result<bool> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(false);
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_bucket_already_owned_by_you()) {
                    return Ok(false);
                }
                Err(unavailable(
                    &format!("cannot create bucket {}", self.bucket),
                    aws_sdk_s3::error::DisplayErrorContext(&e),
                ))
            }
        }
    }

    /// Multipart uploads in progress under `<prefix>/<sub>` (keys are
    /// the bucket's, prefix included).
    pub async fn list_uploads(&self, sub: &str) -> Result<Vec<PendingUpload>> {
        let prefix = self.key_prefix(sub);
        let mut found = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut upload_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(upload_marker.clone())
                .send()
                .await
                .map_err(|e| {
                    unavailable(
                        "cannot list multipart uploads",
                        aws_sdk_s3::error::DisplayErrorContext(&e),
                    )
                })?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                found.push(PendingUpload {
                    key: key.to_string(),
                    upload_id: id.to_string(),
                    initiated_ms: upload
                        .initiated()
                        .map(|t| t.to_millis().unwrap_or(i64::MAX)),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(String::from);
            upload_marker = page.next_upload_id_marker().map(String::from);
            if key_marker.is_none() && upload_marker.is_none() {
                break;
            }
        }
        Ok(found)
    }

    /// Abort one multipart upload (its parts go).
    pub async fn abort_upload(&self, upload: &PendingUpload) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(|e| {
                unavailable(
                    &format!("cannot abort the upload of {}", upload.key),
                    aws_sdk_s3::error::DisplayErrorContext(&e),
                )
            })?;
        tracing::info!(key = upload.key, "aborted a stale multipart upload");
        Ok(())
    }

    /// Abort multipart uploads under `<prefix>/<sub>` started before
    /// `cutoff_ms` (or every one when `cutoff_ms` is `None`); returns how
    /// many were aborted.
    pub async fn abort_stale_uploads(&self, sub: &str, cutoff_ms: Option<i64>) -> Result<usize> {
        let mut aborted = 0;
        for upload in self.list_uploads(sub).await? {
            let stale = match (cutoff_ms, upload.initiated_ms) {
                (None, _) => true,
                (Some(cutoff), Some(t)) => t < cutoff,
                (Some(_), None) => false,
            };
            if stale {
                self.abort_upload(&upload).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The bucket key (prefix included).
    pub key: String,
    pub upload_id: String,
    /// When it was started (ms since the epoch), if the server says.
    pub initiated_ms: Option<i64>,
}
