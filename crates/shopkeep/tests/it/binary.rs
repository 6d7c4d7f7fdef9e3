//! The real `shopkeep` executable: exit codes, messages, logs and signals.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::both_engines;
use crate::harness::{Engine, TestStorage};
use crate::process::{Server, assert_no_panic, for_storage, shopkeep, text};

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

    // An open event stream does not hold shutdown up until the drain deadline.
    let reg = client
        .post(format!("http://{}/api/v1/auth/register", server.addr))
        .json(&serde_json::json!({ "username": "streamer1", "password": crate::harness::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), 201);
    let t: serde_json::Value = client
        .post(format!("http://{}/api/v1/auth/token", server.addr))
        .form(&[
            ("grant_type", "password"),
            ("username", "streamer1"),
            ("password", crate::harness::PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut stream = client
        .get(format!("http://{}/api/v1/orders/stream", server.addr))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?} with a stream open",
        started.elapsed()
    );
    assert!(
        matches!(stream.chunk().await, Ok(None) | Err(_)),
        "the stream ended"
    );
    server.wait_for(|l| l["message"] == "stopped");
    assert!(
        std::net::TcpStream::connect(&server.addr).is_err(),
        "nothing listens after shutdown"
    );
}

both_engines!(passwords_tokens_and_keys_never_reach_the_log);

async fn passwords_tokens_and_keys_never_reach_the_log(engine: Engine) {
    let s = TestStorage::new(engine).await;
    let mut server = Server::start_with(
        &s,
        &[
            ("ADMIN_USERNAME", "root"),
            ("ADMIN_PASSWORD", crate::harness::PASSWORD),
        ],
    );
    let base = format!("http://{}", server.addr);
    let c = reqwest::Client::new();
    let password = "Zebra-quartz-9931-violin";
    let res = c
        .post(format!("{base}/api/v1/auth/register"))
        .json(&serde_json::json!({"username": "logme1", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let bad = c
        .post(format!("{base}/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "logme1"),
            ("password", "Wrong-guess-1234-x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let t: serde_json::Value = c
        .post(format!("{base}/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "logme1"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    let t2: serde_json::Value = c
        .post(format!("{base}/api/v1/auth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = t2["access_token"].as_str().unwrap().to_string();
    let admin: serde_json::Value = c
        .post(format!("{base}/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "root"),
            ("password", crate::harness::PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_token = admin["access_token"].as_str().unwrap();
    let key: serde_json::Value = c
        .post(format!("{base}/api/v1/api-keys"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({"name": "k", "scopes": ["orders:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_key = key["secret"].as_str().unwrap().to_string();
    assert_eq!(
        c.get(format!("{base}/api/v1/shop"))
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.post(format!("{base}/api/v1/auth/logout"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(server.terminate().success());
    let lines = server.all_lines();
    assert!(lines.len() > 10, "debug logging was on: {}", lines.len());
    let log = lines.join("\n");
    for secret in [
        password,
        "Wrong-guess-1234-x",
        crate::harness::PASSWORD,
        &refresh,
        &access,
        admin_token,
        &api_key,
        t2["refresh_token"].as_str().unwrap(),
    ] {
        assert!(
            !log.contains(secret),
            "a secret reached the log: {}",
            &secret[..8]
        );
    }
    let hash_prefix = ["$2b$", "$argon2"];
    assert!(
        !hash_prefix.iter().any(|h| log.contains(h)),
        "no password hashes in the log"
    );
}

#[test]
fn admins_are_created_and_passwords_reset_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = shopkeep(dir.path())
            .env("SHOPKEEP_AUTH__BCRYPT_COST", "4")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), text(&out))
    };
    let (code, (stdout, stderr)) = run(
        &["user", "create-admin", "--username", "boss1"],
        "Granite-owl-5521-river\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("created platform admin boss1"), "{stdout}");
    let (code, (stdout, _)) = run(
        &["user", "create-admin", "--username", "BOSS1"],
        "Other-pass-4417-cedar\n",
    );
    assert_eq!(code, Some(0));
    assert!(stdout.contains("exists; left unchanged"), "{stdout}");
    let (code, (_, stderr)) = run(
        &["user", "create-admin", "--username", "weak1"],
        "password\n",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("too easy to guess"), "{stderr}");
    let (code, (stdout, stderr)) = run(
        &["user", "reset-password", "--username", "boss1"],
        "Fresh-lemon-8830-kite\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("password of boss1 reset"), "{stdout}");
    let (code, (_, stderr)) = run(
        &["user", "reset-password", "--username", "nobody1"],
        "Fresh-lemon-8830-kite\n",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no user named nobody1"), "{stderr}");
    let (code, (stdout, _)) = run(&["keys", "rotate"], "");
    assert_eq!(code, Some(0));
    assert!(stdout.contains("new signing key"), "{stdout}");
}
