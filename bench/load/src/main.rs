//! `shopkeep-load`: runs a scenario against a running shopkeep and prints its report.
//!
//! Exit status: 0 when every request succeeded, 3 when the run finished with errors counted
//! (the report says which), 1 when the run could not be done, 2 for bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shopkeep_load::endpoint::{self, EndpointOptions, Target};
use shopkeep_load::journey::{self, JourneyOptions};
use shopkeep_load::{Report, parse_duration, run_tag};

#[derive(Parser)]
#[command(
    name = "shopkeep-load",
    about = "Load scenarios for a running shopkeep server"
)]
struct Cli {
    /// The server.
    #[arg(
        long,
        global = true,
        env = "LOAD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// A shop admin of the default shop (the ADMIN_USERNAME the server was started with).
    #[arg(
        long,
        global = true,
        env = "LOAD_ADMIN_USERNAME",
        default_value = "root"
    )]
    admin_username: String,
    /// That admin's password.
    #[arg(
        long,
        global = true,
        env = "LOAD_ADMIN_PASSWORD",
        default_value = "",
        hide_default_value = true
    )]
    admin_password: String,
    /// Password of every user the tool registers.
    #[arg(long, global = true, default_value = endpoint::DEFAULT_PASSWORD)]
    password: String,
    /// Username prefix (letters and digits; usernames are PREFIX + 5 digits). Default: random.
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// Limit for one request.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N users at once: register, sign in, place orders, list them; an admin approves each.
    Journey {
        /// Virtual users.
        #[arg(long, default_value_t = 100)]
        users: u64,
        /// Orders per user.
        #[arg(long, default_value_t = 5)]
        orders: u64,
        /// Spread the users' starts evenly over this time (default: all at once).
        #[arg(long, default_value = "0ms", value_parser = parse_duration)]
        ramp: Duration,
    },
    /// Closed-loop load on one endpoint: healthz, me, create, list or search.
    Endpoint {
        /// healthz | me | create | list | search (admin username search over orders).
        target: Target,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: u64,
        /// Measured time.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Unreported run first.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        warmup: Duration,
        /// Users registered and signed in first (not for healthz).
        #[arg(long, default_value_t = 20)]
        users: u64,
        /// Orders placed first, round robin over the users.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Search text (default: the first user's username).
        #[arg(long)]
        search: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(report) => {
            print!("{}", report.table());
            if let Some(path) = &cli.json {
                let written = serde_json::to_vec_pretty(&report)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| std::fs::write(path, b).map_err(Into::into));
                if let Err(e) = written {
                    eprintln!("shopkeep-load: writing {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            if report.total_errors() > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("shopkeep-load: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<Report> {
    match &cli.scenario {
        Scenario::Journey {
            users,
            orders,
            ramp,
        } => {
            let mut o =
                JourneyOptions::new(&cli.url, *users, &cli.admin_username, &cli.admin_password);
            o.orders = *orders;
            o.ramp = *ramp;
            o.password = cli.password.clone();
            o.prefix = cli
                .prefix
                .clone()
                .unwrap_or_else(|| format!("j{}", run_tag()));
            o.timeout = cli.timeout;
            journey::run(&o).await
        }
        Scenario::Endpoint {
            target,
            connections,
            duration,
            warmup,
            users,
            seed,
            search,
        } => {
            let mut o =
                EndpointOptions::new(&cli.url, *target, &cli.admin_username, &cli.admin_password);
            o.connections = *connections;
            o.duration = *duration;
            o.warmup = *warmup;
            o.users = *users;
            o.seed = *seed;
            o.search = search.clone();
            o.password = cli.password.clone();
            o.prefix = cli
                .prefix
                .clone()
                .unwrap_or_else(|| format!("e{}", run_tag()));
            o.timeout = cli.timeout;
            endpoint::run(&o).await
        }
    }
}
