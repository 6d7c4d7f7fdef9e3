//! The real `shopkeep` executable as a child process: a command with a clean environment, and a
//! running server whose JSON log lines the test can wait for.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::harness::TestStorage;

const BIN: &str = env!("CARGO_BIN_EXE_shopkeep");

/// A command with a clean `SHOPKEEP_*` environment, in `dir`.
pub fn shopkeep(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOPKEEP_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.current_dir(dir)
        .env("SHOPKEEP_DATA_DIR", dir.join("data"));
    c
}

pub fn for_storage(s: &TestStorage) -> Command {
    let mut c = shopkeep(s.dir.path());
    if let Some(url) = s.database_url() {
        c.env("SHOPKEEP_DATABASE_URL", url);
    }
    c
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

/// A running `shopkeep serve` whose JSON log lines arrive on a channel.
pub struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Everything written to stderr (also echoed to the test's stderr).
    stderr: Arc<Mutex<String>>,
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
}

impl Server {
    pub fn start(s: &TestStorage) -> Server {
        Self::start_with(s, &[])
    }

    pub fn start_with(s: &TestStorage, env: &[(&str, &str)]) -> Server {
        Self::spawn(for_storage(s), env)
    }

    /// `cmd serve` on a free port, debug logs as JSON on stdout, fast password hashes; `env`
    /// comes last and may override any of that. Returns once the server listens.
    pub fn spawn(mut cmd: Command, env: &[(&str, &str)]) -> Server {
        let mut child = cmd
            .args(["serve", "--log-format", "json"])
            .env("SHOPKEEP_LISTEN", "127.0.0.1:0")
            .env("SHOPKEEP_LOG__LEVEL", "debug,sqlx=warn")
            .env("SHOPKEEP_AUTH__BCRYPT_COST", "4")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (pipe, kept) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut k = kept.lock().unwrap();
                k.push_str(&line);
                k.push('\n');
            }
        });
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            addr: String::new(),
        };
        let listening = server.wait_for(|l| l["message"] == "listening");
        server.addr = listening["addr"].as_str().unwrap().to_string();
        server
    }

    /// `http://ADDR` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Every log line so far (without waiting for more) joined, with stderr: what a panic or an
    /// error would show up in.
    pub fn output(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        format!("{}\n{}", self.seen.join("\n"), self.stderr())
    }

    /// SIGKILL: no chance to finish, flush or release anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to 20 s for a log line matching `pred`; panics without one.
    pub fn wait_for(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .unwrap_or_else(|_| panic!("a log line is not JSON: {line}"));
                    self.seen.push(line);
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no such log line within 20 s");
    }

    /// Every line logged so far, after the process exited.
    pub fn all_lines(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    /// SIGTERM, then waits up to 15 s for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "shopkeep did not stop within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
