//! A real `tierlog serve` child process on an ephemeral port, and the
//! CLI's Kafka commands run against it.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The metrics endpoint's address, unless it was turned off.
    pub metrics: Option<String>,
}

impl Server {
    pub fn start(data: &std::path::Path) -> Server {
        Self::start_with_env(data, &[])
    }

    /// `serve` with extra environment variables (`TIERLOG_CONFIG`, …).
    pub fn start_with_env(data: &std::path::Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_command(cmd)
    }

    /// `serve` with the settings file `config` and a metrics endpoint on an
    /// ephemeral port.
    pub fn start_with_metrics(data: &std::path::Path, config: &std::path::Path) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data);
        Self::start_command(cmd)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the child and wait for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `serve` with its open-file limit (soft and hard) set to `nofile`.
    pub fn start_with_open_file_limit(data: &std::path::Path, nofile: u32) -> Server {
        Self::start_after_shell(data, &format!("ulimit -n {nofile}"))
    }

    /// `serve`, started by `sh` after the shell commands `prelude` (limits,
    /// signal dispositions) have run.
    pub fn start_after_shell(data: &std::path::Path, prelude: &str) -> Server {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "{prelude} && exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\""
            ))
            .arg(BIN)
            .arg(data);
        Self::start_command(cmd)
    }

    pub fn start_command(mut cmd: Command) -> Server {
        // The metrics endpoint is on by default at 127.0.0.1:9644: tests
        // run servers in parallel, so each gets an ephemeral port unless
        // it chose (the flag wins over the variable).
        if !cmd.get_envs().any(|(k, _)| k == "TIERLOG_METRICS_LISTEN") {
            cmd.env("TIERLOG_METRICS_LISTEN", "127.0.0.1:0");
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        // The endpoint's address is logged unless it was turned off.
        let args: Vec<_> = cmd.get_args().collect();
        let flag = args
            .iter()
            .position(|a| *a == "--metrics-listen")
            .and_then(|i| args.get(i + 1).copied());
        let env = cmd
            .get_envs()
            .find(|(k, _)| *k == "TIERLOG_METRICS_LISTEN")
            .and_then(|(_, v)| v);
        let want_metrics = flag.or(env).is_some_and(|v| v != "off" && !v.is_empty());
        let listen = |line: &str| {
            let at = line.find("listen=").expect("listen address logged") + "listen=".len();
            line[at..].split_whitespace().next().unwrap().to_string()
        };
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || (want_metrics && metrics.is_none()) {
            assert!(
                Instant::now() < deadline,
                "serve did not report its listeners"
            );
            let line = lines.next().expect("serve logs").unwrap();
            if line.contains("Kafka listener ready") {
                addr = Some(listen(&line));
            } else if line.contains("metrics endpoint ready") {
                metrics = Some(listen(&line));
            }
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr: addr.unwrap(),
            metrics,
        }
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--bootstrap", &self.addr])
            .env("RUST_LOG", "warn");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            // A command that fails early stops reading: its exit status and
            // stderr say why, a broken pipe here does not.
            let _ = input.write_all(text.as_bytes());
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    pub fn stop(mut self) {
        Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .unwrap();
        assert!(
            self.child.wait().unwrap().success(),
            "clean exit on SIGTERM"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
