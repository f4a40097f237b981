//! Listeners, TLS and SASL against a real `tierlog serve` process: users
//! made with `tierlog user`, librdkafka over SASL_SSL (SCRAM-SHA-512 and
//! PLAIN) and over SSL with client certificates, refusals with the error a
//! user sees, plaintext bytes on a TLS port, the unauthenticated byte cap,
//! KIP-368 re-authentication and a certificate reload on SIGHUP.
//! Certificates are made here with rcgen.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tierlog::client::Connection;
use tierlog::security::scram::{client_final, escape_name};
use tierlog::security::ScramMechanism;

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");
const PASSWORD: &str = "correct horse battery staple";

/// A CA and the PEM files made from it.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca.pem()).unwrap();
    }

    /// Key and certificate chain in one PEM file (the keystore), or in two
    /// (`cert`, `key`) for librdkafka's client certificate.
    fn leaf(&self, cn: &str, org: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write_keystore(&self, path: &Path) {
        let (cert, key) = self.leaf("localhost", "tierlog test");
        std::fs::write(path, format!("{key}{cert}")).unwrap();
    }
}

/// Captures librdkafka's error callbacks.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error} | {reason}"));
    }
}
impl ConsumerContext for Errors {}

impl Errors {
    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

struct Broker {
    child: Child,
    /// Log lines (at debug) that contained the test password.
    leaked: Arc<Mutex<Vec<String>>>,
    listeners: HashMap<String, String>,
    metrics: String,
    _dir: tempfile::TempDir,
    files: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let leaked = self.leaked.lock().unwrap();
            assert!(leaked.is_empty(), "a password reached the log: {leaked:?}");
        }
    }
}

impl Broker {
    /// `serve` with every listener kind on ephemeral loopback ports, the
    /// test PKI's keystore and truststore, and `extra` flags.
    fn start(server_pki: &Pki, client_ca: &Pki, client_auth: &str, extra: &[&str]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("pki");
        std::fs::create_dir_all(&files).unwrap();
        server_pki.write_keystore(&files.join("broker.pem"));
        client_ca.write_ca(&files.join("clients-ca.pem"));
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--listener", "PLAINTEXT://127.0.0.1:0"])
            .args(["--listener", "SASL_PLAINTEXT://127.0.0.1:0"])
            .args(["--listener", "SASL_SSL://127.0.0.1:0"])
            .args(["--listener", "SSL://127.0.0.1:0"])
            .arg("--ssl-keystore-location")
            .arg(files.join("broker.pem"))
            .arg("--ssl-truststore-location")
            .arg(files.join("clients-ca.pem"))
            .args(["--ssl-client-auth", client_auth])
            .args(extra)
            // Debug: the secrecy check below reads every line.
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let field = |line: &str, name: &str| {
            let at = line
                .find(name)
                .unwrap_or_else(|| panic!("{name} in {line}"))
                + name.len();
            line[at..].split_whitespace().next().unwrap().to_string()
        };
        let mut listeners = HashMap::new();
        let mut metrics = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while listeners.len() < 4 || metrics.is_none() {
            assert!(
                Instant::now() < deadline,
                "serve did not report its listeners"
            );
            let line = lines.next().expect("serve logs").unwrap();
            if line.contains("Kafka listener ready") {
                listeners.insert(field(&line, "listener="), field(&line, " listen="));
            } else if line.contains("metrics endpoint ready") {
                metrics = Some(field(&line, " listen="));
            }
        }
        // Keep draining stderr, keeping any line with the password.
        let leaked = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&leaked);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains(PASSWORD) || line.contains("wrong-password") {
                    seen.lock().unwrap().push(line);
                }
            }
        });
        Broker {
            child,
            leaked,
            listeners,
            metrics: metrics.unwrap(),
            _dir: dir,
            files,
        }
    }

    fn addr(&self, listener: &str) -> &str {
        &self.listeners[listener]
    }

    /// `tierlog user …` against the PLAINTEXT listener.
    fn user(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut child = Command::new(BIN)
            .arg("user")
            .args(args)
            .args(["--bootstrap", self.addr("PLAINTEXT")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    fn metric(&self, name: &str) -> f64 {
        let mut s = std::net::TcpStream::connect(&self.metrics).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not served"))
            .trim()
            .parse()
            .unwrap()
    }
}

fn sasl_client(broker: &Broker, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.addr("SASL_SSL"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set(
            "ssl.ca.location",
            broker.files.join("server-ca.pem").to_str().unwrap(),
        )
        .set("message.timeout.ms", "15000");
    c
}

fn ssl_client(broker: &Broker, client_cert: Option<(&Path, &Path)>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.addr("SSL"))
        .set("security.protocol", "SSL")
        .set(
            "ssl.ca.location",
            broker.files.join("server-ca.pem").to_str().unwrap(),
        )
        .set("message.timeout.ms", "15000");
    if let Some((cert, key)) = client_cert {
        c.set("ssl.certificate.location", cert.to_str().unwrap())
            .set("ssl.key.location", key.to_str().unwrap());
    }
    c
}

/// Metadata through `config`: Ok(topic count) or the errors librdkafka
/// reported.
fn metadata(config: &ClientConfig) -> Result<usize, String> {
    let errors = Errors::default();
    let consumer: BaseConsumer<Errors> = config
        .clone()
        .set("group.id", "security-test")
        .create_with_context(errors.clone())
        .expect("consumer");
    match consumer.fetch_metadata(None, Duration::from_secs(8)) {
        Ok(m) => Ok(m.topics().len()),
        Err(e) => {
            // Error callbacks are served by poll.
            let deadline = Instant::now() + Duration::from_secs(5);
            while errors.text().is_empty() && Instant::now() < deadline {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            Err(format!("{e}\n{}", errors.text()))
        }
    }
}

/// Produce `n` records to `topic` and read them back through `config`.
fn produce_and_consume(config: &ClientConfig, topic: &str, n: usize) {
    let producer: BaseProducer = config.create().expect("producer");
    for i in 0..n {
        let value = format!("value-{i}");
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(20)).unwrap();
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "security-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    let want: Vec<String> = (0..n).map(|i| format!("value-{i}")).collect();
    assert_eq!(got, want);
}

fn setup() -> (Pki, Pki, Broker) {
    setup_with("requested")
}

/// A broker with `ssl.client.auth = client_auth`, a 2.5 s SASL session
/// lifetime and user alice (SCRAM-SHA-512).
fn setup_with(client_auth: &str) -> (Pki, Pki, Broker) {
    let server = Pki::new("tierlog test server CA");
    let clients = Pki::new("tierlog test clients CA");
    let broker = Broker::start(
        &server,
        &clients,
        client_auth,
        &["--connections-max-reauth-ms", "2500"],
    );
    server.write_ca(&broker.files.join("server-ca.pem"));
    let o = broker.user(
        &[
            "add",
            "alice",
            "--mechanism",
            "SCRAM-SHA-512",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (server, clients, broker)
}

#[test]
fn sasl_ssl_with_scram_and_plain_and_refusals() {
    let (_server, _clients, broker) = setup();
    let o = broker.user(&["list"], "");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "alice\tSCRAM-SHA-512\titerations=8192\n"
    );

    // Right credentials: SCRAM-SHA-512, and PLAIN against the same stored
    // credential.
    produce_and_consume(
        &sasl_client(&broker, "SCRAM-SHA-512", "alice", PASSWORD),
        "scram",
        5,
    );
    produce_and_consume(
        &sasl_client(&broker, "PLAIN", "alice", PASSWORD),
        "plain",
        5,
    );

    // A wrong password, an unknown user, a mechanism the user has no
    // credential for: refused with SASL_AUTHENTICATION_FAILED's message.
    for (mechanism, user, password) in [
        ("SCRAM-SHA-512", "alice", "wrong-password"),
        ("PLAIN", "alice", "wrong-password"),
        ("SCRAM-SHA-512", "mallory", PASSWORD),
        ("SCRAM-SHA-256", "alice", PASSWORD),
    ] {
        let e = metadata(&sasl_client(&broker, mechanism, user, password)).unwrap_err();
        assert!(
            e.contains("Authentication failed during authentication due to invalid credentials"),
            "{mechanism} {user}: {e}"
        );
    }
    assert!(broker.metric("tierlog_sasl_authentication_failures_total") >= 4.0);

    // Removing the user ends its logins.
    let o = broker.user(&["remove", "alice"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(metadata(&sasl_client(&broker, "PLAIN", "alice", PASSWORD)).is_err());
    let o = broker.user(&["list"], "");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
}

#[test]
fn ssl_with_client_certificates() {
    let (server, clients, broker) = setup_with("required");
    let dir = &broker.files;
    let (cert, key) = clients.leaf("client-1", "Example");
    std::fs::write(dir.join("client.pem"), cert).unwrap();
    std::fs::write(dir.join("client.key"), key).unwrap();
    let trusted = (dir.join("client.pem"), dir.join("client.key"));
    produce_and_consume(
        &ssl_client(&broker, Some((&trusted.0, &trusted.1))),
        "mtls",
        3,
    );
    // ssl.client.auth = required: no certificate, or one from a CA the
    // broker does not trust, fails the handshake and the client says so.
    let e = metadata(&ssl_client(&broker, None)).unwrap_err();
    assert!(e.contains("SSL"), "{e}");
    let rogue = Pki::new("rogue CA");
    let (cert, key) = rogue.leaf("client-1", "Example");
    std::fs::write(dir.join("rogue.pem"), cert).unwrap();
    std::fs::write(dir.join("rogue.key"), key).unwrap();
    let e = metadata(&ssl_client(
        &broker,
        Some((&dir.join("rogue.pem"), &dir.join("rogue.key"))),
    ))
    .unwrap_err();
    assert!(e.contains("SSL"), "{e}");
    assert!(broker.metric("tierlog_tls_handshake_failures_total") >= 2.0);
    // A client that does not trust the broker's CA refuses it.
    server.write_ca(&dir.join("server-ca.pem"));
    rogue.write_ca(&dir.join("rogue-ca.pem"));
    let mut untrusting = ssl_client(&broker, Some((&trusted.0, &trusted.1)));
    untrusting.set(
        "ssl.ca.location",
        dir.join("rogue-ca.pem").to_str().unwrap(),
    );
    assert!(metadata(&untrusting).is_err());
    // The trusted client still gets in after all that.
    metadata(&ssl_client(&broker, Some((&trusted.0, &trusted.1)))).unwrap();
}

#[test]
fn plaintext_bytes_on_a_tls_port_are_refused_and_the_broker_keeps_serving() {
    let (_server, _clients, broker) = setup();
    for listener in ["SSL", "SASL_SSL"] {
        let mut s = std::net::TcpStream::connect(broker.addr(listener)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // An ApiVersions v0 request, as a plaintext client sends it.
        let mut frame = vec![0, 0, 0, 14, 0, 18, 0, 0, 0, 0, 0, 1, 0, 4];
        frame.extend_from_slice(b"test");
        s.write_all(&frame).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        // At most a TLS alert record (content type 21), never a Kafka
        // response, and the connection is closed.
        assert!(reply.is_empty() || reply[0] == 21, "{reply:?}");
    }
    assert!(broker.metric("tierlog_tls_handshake_failures_total") >= 2.0);
    metadata(&sasl_client(&broker, "SCRAM-SHA-512", "alice", PASSWORD)).unwrap();
    metadata(&ssl_client(&broker, None)).unwrap();
}

/// The raw protocol on the SASL_PLAINTEXT listener: error codes, the gate
/// before authentication, the byte cap and KIP-368's session lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn sasl_protocol_error_codes_gate_and_reauthentication() {
    let (_server, _clients, broker) = setup();
    let addr = broker.addr("SASL_PLAINTEXT").to_string();

    async fn handshake(c: &mut Connection, mechanism: &'static str) -> SaslHandshakeResponse {
        c.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
        )
        .await
        .unwrap()
    }
    async fn auth(c: &mut Connection, bytes: Vec<u8>) -> SaslAuthenticateResponse {
        c.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()),
        )
        .await
        .unwrap()
    }
    async fn scram(c: &mut Connection, user: &str, password: &str) -> SaslAuthenticateResponse {
        let m = ScramMechanism::Sha512;
        let bare = format!("n={},r=clientnonce123", escape_name(user));
        let first = auth(c, format!("n,,{bare}").into_bytes()).await;
        assert_eq!(first.error_code, 0);
        let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
        let fin = client_final(m, password.as_bytes(), &bare, &server_first).unwrap();
        auth(c, fin.into_bytes()).await
    }
    let metadata_req = MetadataRequest::default();

    // Anything but ApiVersions before authentication closes the connection.
    let mut c = Connection::connect(&addr).await.unwrap();
    let r: Result<MetadataResponse, _> = c.call(ApiKey::Metadata, 1, &metadata_req).await;
    assert!(r.is_err());

    // PLAIN with a wrong password: SASL_AUTHENTICATION_FAILED (58).
    let mut c = Connection::connect(&addr).await.unwrap();
    assert_eq!(handshake(&mut c, "PLAIN").await.error_code, 0);
    let r = auth(&mut c, b"\0alice\0wrong".to_vec()).await;
    assert_eq!(r.error_code, 58);
    assert!(!r
        .error_message
        .as_ref()
        .is_some_and(|m| m.contains("wrong")));

    // A mechanism not offered: UNSUPPORTED_SASL_MECHANISM (33) and the list.
    let mut c = Connection::connect(&addr).await.unwrap();
    let r = handshake(&mut c, "GSSAPI").await;
    assert_eq!(r.error_code, 33);
    assert_eq!(
        r.mechanisms
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>(),
        ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
    );

    // SCRAM with an unknown user and a wrong password: 58.
    let mut c = Connection::connect(&addr).await.unwrap();
    handshake(&mut c, "SCRAM-SHA-512").await;
    let r = auth(&mut c, b"n,,n=mallory,r=abc".to_vec()).await;
    assert_eq!(r.error_code, 58);
    let mut c = Connection::connect(&addr).await.unwrap();
    handshake(&mut c, "SCRAM-SHA-512").await;
    assert_eq!(scram(&mut c, "alice", "wrong").await.error_code, 58);

    // Right password: a session of connections.max.reauth.ms, requests
    // pass; re-authenticating on the same connection renews it; after it
    // ends without re-authentication the connection is closed.
    let mut c = Connection::connect(&addr).await.unwrap();
    handshake(&mut c, "SCRAM-SHA-512").await;
    let r = scram(&mut c, "alice", PASSWORD).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.session_lifetime_ms, 2500);
    assert!(String::from_utf8_lossy(&r.auth_bytes).starts_with("v="));
    let m: MetadataResponse = c.call(ApiKey::Metadata, 1, &metadata_req).await.unwrap();
    assert_eq!(
        m.brokers[0].port.to_string(),
        addr.rsplit(':').next().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(handshake(&mut c, "SCRAM-SHA-512").await.error_code, 0);
    assert_eq!(scram(&mut c, "alice", PASSWORD).await.error_code, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // 3 s after the first login, 1.5 s after the second: still valid.
    let _: MetadataResponse = c.call(ApiKey::Metadata, 1, &metadata_req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r: Result<MetadataResponse, _> = c.call(ApiKey::Metadata, 1, &metadata_req).await;
    assert!(r.is_err(), "a request after the session ended is refused");
    assert!(broker.metric("tierlog_sasl_sessions_expired_total") >= 1.0);

    // Before authentication a frame is capped at
    // sasl.server.max.receive.size (512 KiB): a larger one closes the
    // connection before its body is read.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(&(1i32 << 20).to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");

    // Users cannot be changed over a non-loopback PLAINTEXT listener; over
    // SASL they can (no ACLs): checked through DescribeUserScramCredentials.
    let mut c = Connection::connect(&addr).await.unwrap();
    handshake(&mut c, "SCRAM-SHA-512").await;
    assert_eq!(scram(&mut c, "alice", PASSWORD).await.error_code, 0);
    let d: DescribeUserScramCredentialsResponse = c
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            &DescribeUserScramCredentialsRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(d.results.len(), 1);
    assert_eq!(d.results[0].user.as_str(), "alice");
    assert_eq!(d.results[0].credential_infos[0].mechanism, 2);
    assert_eq!(d.results[0].credential_infos[0].iterations, 8192);
}

/// librdkafka re-authenticates on its own connections (KIP-368) when the
/// broker gives its sessions a lifetime: records keep flowing across
/// several lifetimes and no session ends unrenewed.
#[test]
fn librdkafka_reauthenticates() {
    let (_server, _clients, broker) = setup();
    let config = sasl_client(&broker, "SCRAM-SHA-512", "alice", PASSWORD);
    let producer: BaseProducer = config.create().expect("producer");
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(7) {
        producer
            .send(BaseRecord::<(), _>::to("reauth").payload(&format!("v{i}")))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(producer.in_flight_count(), 0);
    let auths = broker.metric("tierlog_sasl_authentications_total");
    let opened = broker.metric("tierlog_connections_opened_total");
    assert!(
        auths > opened,
        "{auths} authentications on {opened} connections: no re-authentication"
    );
    assert_eq!(broker.metric("tierlog_sasl_sessions_expired_total"), 0.0);
}

/// New connections get the certificate written to the keystore file once
/// the broker has had SIGHUP; a broken file leaves the old one in use.
#[test]
fn certificates_reload_on_sighup() {
    let (_server, _clients, broker) = setup();
    metadata(&ssl_client(&broker, None)).unwrap();
    let next = Pki::new("next server CA");
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &broker.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::thread::sleep(Duration::from_millis(500));
    };
    // A broken keystore: the reload fails, the old certificate stays.
    std::fs::write(broker.files.join("broker.pem"), "not PEM").unwrap();
    hup();
    metadata(&ssl_client(&broker, None)).unwrap();
    next.write_keystore(&broker.files.join("broker.pem"));
    hup();
    // The old CA no longer verifies the broker; the new one does.
    assert!(metadata(&ssl_client(&broker, None)).is_err());
    next.write_ca(&broker.files.join("server-ca.pem"));
    metadata(&ssl_client(&broker, None)).unwrap();
}

/// `tierlog …` against `listener` with `extra` arguments, the SASL
/// password (when given) in TIERLOG_SASL_PASSWORD.
fn cli(
    broker: &Broker,
    listener: &str,
    args: &[&str],
    extra: &[&str],
    password: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--bootstrap", broker.addr(listener)])
        .args(extra)
        .env_remove("TIERLOG_SASL_PASSWORD");
    if let Some(p) = password {
        cmd.env("TIERLOG_SASL_PASSWORD", p);
    }
    cmd.output().unwrap()
}

/// The CLI as a client of secured listeners: `tierlog topic` and
/// `tierlog quota` over SASL_SSL (SCRAM-SHA-512, the password from
/// TIERLOG_SASL_PASSWORD), over SASL_PLAINTEXT with PLAIN from a Java
/// client properties file (`--command-config`), and over SSL; a wrong
/// password and a missing CA bundle are refused with the cause named.
#[test]
fn the_cli_speaks_sasl_ssl_sasl_plaintext_and_ssl() {
    let (_server, _clients, broker) = setup();
    let ca = broker.files.join("server-ca.pem");
    let ca = ca.to_str().unwrap();
    let scram = [
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "alice",
        "--ssl-ca-location",
        ca,
    ];
    let ok = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&cli(
        &broker,
        "SASL_SSL",
        &["topic", "create", "secured"],
        &scram,
        Some(PASSWORD),
    ));
    let listed = ok(&cli(
        &broker,
        "SASL_SSL",
        &["topic", "list"],
        &scram,
        Some(PASSWORD),
    ));
    assert!(listed.contains("secured"), "{listed}");
    ok(&cli(
        &broker,
        "SASL_SSL",
        &[
            "quota",
            "set",
            "--user",
            "alice",
            "--producer-byte-rate",
            "1MiB",
        ],
        &scram,
        Some(PASSWORD),
    ));
    let described = ok(&cli(
        &broker,
        "SASL_SSL",
        &["quota", "describe"],
        &scram,
        Some(PASSWORD),
    ));
    assert_eq!(described, "user=alice\tproducer_byte_rate=1048576\n");

    // A wrong password: refused, said so, and the password not echoed.
    let o = cli(
        &broker,
        "SASL_SSL",
        &["topic", "list"],
        &scram,
        Some("wrong-password"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("SASL authentication as 'alice' failed")
            && err.contains("SaslAuthenticationFailed"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");
    // No password at all.
    let o = cli(&broker, "SASL_SSL", &["topic", "list"], &scram, None);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("TIERLOG_SASL_PASSWORD"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // SASL_PLAINTEXT with PLAIN, from a Java client properties file.
    let props = broker.files.join("client.properties");
    std::fs::write(
        &props,
        format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"alice\" password=\"{PASSWORD}\";\n"
        ),
    )
    .unwrap();
    let listed = ok(&cli(
        &broker,
        "SASL_PLAINTEXT",
        &["topic", "list"],
        &["--command-config", props.to_str().unwrap()],
        None,
    ));
    assert!(listed.contains("secured"), "{listed}");

    // SSL: the CA bundle is needed, and with it the listener serves.
    let o = cli(
        &broker,
        "SSL",
        &["topic", "list"],
        &["--security-protocol", "SSL"],
        None,
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--ssl-ca-location"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let listed = ok(&cli(
        &broker,
        "SSL",
        &["topic", "list"],
        &["--security-protocol", "SSL", "--ssl-ca-location", ca],
        None,
    ));
    assert!(listed.contains("secured"), "{listed}");
}
