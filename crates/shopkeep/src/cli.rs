//! The command line: `serve`, `migrate`, `config`. Exit codes: 0 ok, 1 failure, 2 bad
//! configuration or usage, 3 migrations pending (`migrate --check`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use shopkeep_store::Db;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, LogFormat, Role, Sources};
use crate::{Application, telemetry};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ")"
);

/// shopkeep: self-hosted commerce operations server.
#[derive(Debug, Parser)]
#[command(name = "shopkeep", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./shopkeep.toml when present.
    #[arg(long, global = true, env = "SHOPKEEP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log line format; overrides `log.format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (all roles unless --roles picks some).
    Serve {
        /// Comma-separated roles: all, gateway, auth, orders, api, worker, scheduler.
        #[arg(long, value_name = "LIST")]
        roles: Option<String>,
    },
    /// Apply pending database migrations.
    Migrate {
        /// Apply nothing; exit 3 when migrations are pending, 1 when the schema is newer or broken.
        #[arg(long)]
        check: bool,
    },
    /// Print the effective configuration with secrets redacted.
    Config,
    /// Manage accounts (the password is read from standard input).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `shopkeep user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a platform admin (owner of the default shop) unless the username exists.
    CreateAdmin {
        /// 4-20 ASCII letters and digits.
        #[arg(long)]
        username: String,
    },
    /// Set a new password and end the user's logins: revoke their refresh tokens and delete
    /// their web sessions from the database.
    ResetPassword {
        /// The user.
        #[arg(long)]
        username: String,
    },
}

/// `shopkeep keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start signing with a new key; old keys verify until their tokens expire.
    Rotate,
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let mut config = match config::load(&Sources::from_process(cli.config.clone())) {
        Ok(c) => c,
        Err(errors) => {
            for line in &errors.0 {
                eprintln!("shopkeep: config: {line}");
            }
            eprintln!(
                "shopkeep: {} configuration problem(s); nothing was started",
                errors.0.len()
            );
            return ExitCode::from(2);
        }
    };
    if let Some(f) = cli.log_format {
        config.log.format = match f {
            LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Pretty => LogFormat::Pretty,
        };
    }
    match cli.command {
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Command::Serve { roles } => {
            if let Some(list) = roles {
                match Role::parse_list(&list) {
                    Ok(r) => config.roles = r,
                    Err(e) => {
                        eprintln!("shopkeep: --roles: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            telemetry::init(config.log.format, &config.log.level);
            report(runtime().and_then(|rt| rt.block_on(serve(config))))
        }
        Command::User(cmd) => {
            telemetry::init(config.log.format, "warn");
            report(runtime().and_then(|rt| rt.block_on(user_command(config, cmd))))
        }
        Command::Keys(KeysCommand::Rotate) => {
            telemetry::init(config.log.format, "warn");
            report(runtime().and_then(|rt| rt.block_on(rotate_keys(config))))
        }
        Command::Migrate { check } => {
            telemetry::init(config.log.format, &config.log.level);
            match runtime().and_then(|rt| rt.block_on(migrate(config, check))) {
                Ok(code) => code,
                Err(e) => report(Err(e)),
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shopkeep: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_listener(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

/// Fires `token` on SIGINT or SIGTERM.
async fn signal_listener(token: CancellationToken) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = term => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
    token.cancel();
}

async fn migrate(config: Config, check: bool) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let db = Db::connect(&config.db_options()).await?;
    let status = db
        .migration_status()
        .await
        .context("reading the migration status")?;
    let code = if check {
        match status.problem() {
            None => {
                println!(
                    "schema is current ({} migrations applied)",
                    status.applied.len()
                );
                ExitCode::SUCCESS
            }
            Some(p) => {
                println!("{p}");
                if status.unknown.is_empty() && status.failed.is_empty() {
                    ExitCode::from(3)
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    } else {
        let before = db.migrate().await?;
        println!(
            "applied {} migration(s); schema is current",
            before.pending.len()
        );
        ExitCode::SUCCESS
    };
    db.close().await;
    Ok(code)
}

/// Reads one line (the password) from standard input.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        anyhow::bail!(
            "no password on standard input (pipe it in, e.g. `echo \"$PW\" | shopkeep user ...`)"
        );
    }
    Ok(pw)
}

/// Connects to a migrated database for an admin command.
async fn admin_db(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let db = Db::connect(&config.db_options()).await?;
    db.migrate().await?;
    Ok(db)
}

async fn user_command(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let password = read_password()?;
    let db = admin_db(&config).await?;
    let hasher =
        shopkeep_server::auth::password::PasswordHasher::new(crate::admin::hash_policy(&config), 1)
            .await?;
    match cmd {
        UserCommand::CreateAdmin { username } => {
            match crate::admin::create_admin(&db, &hasher, &username, &password).await? {
                crate::admin::Created::Created => println!("created platform admin {username}"),
                crate::admin::Created::Exists => println!("{username} exists; left unchanged"),
            }
        }
        UserCommand::ResetPassword { username } => {
            let ended = crate::admin::reset_password(&db, &hasher, &username, &password).await?;
            let mut web = ended.web_sessions_deleted;
            if config.redis_url.is_some() {
                // The pages keep their sessions in Redis then: end those too.
                let store = crate::app::session_store(&config, &db).await?;
                web += store.destroy_user(ended.user_id).await?;
            }
            println!(
                "password of {username} reset; their sessions were ended \
                 ({} refresh token(s) revoked, {web} web session(s) ended)",
                ended.refresh_tokens_revoked
            );
        }
    }
    db.close().await;
    Ok(())
}

async fn rotate_keys(config: Config) -> anyhow::Result<()> {
    let db = admin_db(&config).await?;
    let secret = crate::keys::secret_key(&config)?;
    let sealer = shopkeep_server::crypto::Sealer::new(&secret)?;
    let ring = shopkeep_server::auth::keys::KeyRing::load(
        db.clone(),
        sealer,
        config.auth.access_token_ttl,
    )
    .await?;
    let kid = ring.rotate().await?;
    println!("new signing key {kid}; previous keys verify until their tokens expire");
    db.close().await;
    Ok(())
}
