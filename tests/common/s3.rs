//! An S3 server for tests: the s3s + s3s-fs crates served in-process on a
//! random port (real S3 protocol, SigV4 and all), or, when
//! `TIERLOG_TEST_S3_ENDPOINT` is set (CI runs moto), that server.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

pub const ACCESS_KEY: &str = "tierlog-test";
pub const SECRET_KEY: &str = "tierlog-test-secret";

pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    /// Where s3s-fs keeps objects (in-process server only).
    pub root: Option<tempfile::TempDir>,
    _server: Option<std::thread::JoinHandle<()>>,
}

impl S3 {
    /// A fresh bucket on the CI server, or an in-process server.
    pub fn start() -> S3 {
        // Short: s3s-fs keeps multipart state in a file named after the
        // base64 of bucket and key, and file names stop at 255 bytes.
        let bucket = format!("tl{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        if let Ok(endpoint) = std::env::var("TIERLOG_TEST_S3_ENDPOINT") {
            // moto: a bucket is one plain PUT.
            let status = std::process::Command::new("curl")
                .args(["-fsS", "-X", "PUT", &format!("{endpoint}/{bucket}")])
                .stdout(std::process::Stdio::null())
                .status()
                .expect("curl");
            assert!(
                status.success(),
                "cannot create bucket {bucket} at {endpoint}"
            );
            return S3 {
                endpoint,
                bucket,
                root: None,
                _server: None,
            };
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(&bucket)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let service = service.clone();
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                    });
                }
            });
        });
        S3 {
            endpoint,
            bucket,
            root: Some(root),
            _server: Some(server),
        }
    }

    /// An aws-sdk-s3 client for the server: an S3 client independent of
    /// tierlog's object_store path.
    pub fn client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                ACCESS_KEY,
                SECRET_KEY,
                None,
                None,
                "tierlog-tests",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Whether the server lists multipart uploads (moto does; s3s-fs 0.14
    /// does not implement ListMultipartUploads).
    pub fn lists_multipart_uploads(&self) -> bool {
        self.root.is_none()
    }

    /// An object_store client for the bucket, path-style, plain http.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_region("us-east-1")
                .with_bucket_name(&self.bucket)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .unwrap(),
        )
    }
}
