//! The real `shopkeep` executable: exit codes, messages, logs and signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::both_engines;
use crate::harness::{Engine, TestStorage};

const BIN: &str = env!("CARGO_BIN_EXE_shopkeep");

/// A command with a clean `SHOPKEEP_*` environment, in `dir`.
fn shopkeep(dir: &std::path::Path) -> Command {
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

fn for_storage(s: &TestStorage) -> Command {
    let mut c = shopkeep(s.dir.path());
    if let Some(url) = s.database_url() {
        c.env("SHOPKEEP_DATABASE_URL", url);
    }
    c
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

#[test]
fn version_names_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopkeep(dir.path()).arg("--version").output().unwrap();
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with("shopkeep 0.") && stdout.contains("(commit "),
        "{stdout}"
    );
}

#[test]
fn every_bad_config_key_exits_2_naming_key_value_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shopkeep.toml"),
        "listen = 8080\n[http]\nbody_limt = \"1MiB\"\n",
    )
    .unwrap();
    let out = shopkeep(dir.path())
        .env("SHOPKEEP_DATABASE__MAX_CONNECTIONS", "lots")
        .arg("serve")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_no_panic(&stderr);
    assert!(
        stderr.contains("listen = 8080") && stderr.contains("expected an address"),
        "{stderr}"
    );
    assert!(
        stderr.contains("http.body_limt") && stderr.contains("did you mean http.body_limit?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("database.max_connections = \"lots\""),
        "{stderr}"
    );
    assert!(stderr.contains("3 configuration problem(s)"), "{stderr}");
}

#[test]
fn malformed_toml_and_a_missing_config_file_are_reported_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "listen = \n").unwrap();
    let out = shopkeep(dir.path())
        .args(["--config", "bad.toml", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("bad.toml is not valid TOML"),
        "{}",
        text(&out).1
    );
    let out = shopkeep(dir.path())
        .env("SHOPKEEP_CONFIG", "missing.toml")
        .arg("config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("cannot read the config file missing.toml"),
        "{}",
        text(&out).1
    );
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopkeep(dir.path())
        .env(
            "SHOPKEEP_DATABASE_URL",
            "postgres://shop:hunter2@db.internal/shop",
        )
        .env("SHOPKEEP_LISTEN", "0.0.0.0:9999")
        .arg("config")
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("listen = \"0.0.0.0:9999\""), "{stdout}");
    assert!(
        stdout.contains("postgres://shop:***@db.internal/shop"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
}

#[test]
fn an_unusable_data_directory_or_database_is_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = shopkeep(dir.path())
        .env("SHOPKEEP_DATA_DIR", file.join("data"))
        .arg("serve")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the data directory"),
        "{stderr}"
    );
    assert_no_panic(&stderr);

    let out = shopkeep(dir.path())
        .env(
            "SHOPKEEP_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .env("SHOPKEEP_DATABASE__ACQUIRE_TIMEOUT", "1s")
        .arg("serve")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/none"),
        "{stderr}"
    );
    assert_no_panic(&stderr);

    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/shopkeep.db"), vec![0x42_u8; 8192]).unwrap();
    let out = shopkeep(dir.path()).arg("serve").output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a readable SQLite database")
            || stderr.contains("cannot open the SQLite database"),
        "{stderr}"
    );
    assert_no_panic(&stderr);
}

both_engines!(
    migrate_check_reports_pending_then_current,
    a_newer_schema_refuses_to_start
);

async fn migrate_check_reports_pending_then_current(engine: Engine) {
    let s = TestStorage::new(engine).await;
    let out = for_storage(&s)
        .args(["migrate", "--check"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("pending"), "{stdout}");

    let out = for_storage(&s).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));

    let out = for_storage(&s)
        .args(["migrate", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("schema is current"));
}

async fn a_newer_schema_refuses_to_start(engine: Engine) {
    let s = TestStorage::new(engine).await;
    let config = s.config();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let db = shopkeep_store::Db::connect(&config.db_options())
        .await
        .unwrap();
    db.migrate().await.unwrap();
    crate::health::insert_future_migration(&db).await;
    db.close().await;

    let out = for_storage(&s)
        .arg("serve")
        .env("SHOPKEEP_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("newer shopkeep"), "{stderr}");
    assert_no_panic(&stderr);
    let out = for_storage(&s)
        .args(["migrate", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A running `shopkeep serve` whose JSON log lines arrive on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    addr: String,
}

impl Server {
    fn start(s: &TestStorage) -> Server {
        let mut child = for_storage(s)
            .args(["serve", "--log-format", "json"])
            .env("SHOPKEEP_LISTEN", "127.0.0.1:0")
            .env("SHOPKEEP_LOG__LEVEL", "debug,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("a log line is not JSON: {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            addr: String::new(),
        };
        let listening = server.wait_for(|l| l["message"] == "listening");
        server.addr = listening["addr"].as_str().unwrap().to_string();
        server
    }

    fn wait_for(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no such log line within 20 s");
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
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

both_engines!(serve_logs_json_with_the_request_id_and_stops_cleanly_on_sigterm);

async fn serve_logs_json_with_the_request_id_and_stops_cleanly_on_sigterm(engine: Engine) {
    let s = TestStorage::new(engine).await;
    let mut server = Server::start(&s);
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{}/readyz", server.addr))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let line = server.wait_for(|l| l["message"] == "request finished");
    assert_eq!(line["span"]["request_id"], "trace-me-123", "{line}");
    assert_eq!(line["span"]["route"], "/readyz", "{line}");
    assert_eq!(line["status"], 200, "{line}");

    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    server.wait_for(|l| l["message"] == "stopped");
    assert!(
        std::net::TcpStream::connect(&server.addr).is_err(),
        "nothing listens after shutdown"
    );
}
