//! The `tierlog` command line: `serve`, `topic`, `produce`, `consume`,
//! `inspect`, `perf`, `restore`, `tier`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tierlog",
    version,
    about = "A Kafka-compatible log engine with tiered storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How `--bootstrap` is reached (TLS, SASL): every client subcommand.
    #[command(flatten)]
    client: cli::client_security::ClientArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Open the engine on the data directory and serve until Ctrl-C/SIGTERM.
    Serve(Box<cli::serve::ServeArgs>),
    /// Create, list, describe, alter or delete topics (over the Kafka protocol).
    #[command(subcommand)]
    Topic(cli::admin::TopicCommand),
    /// Add, remove or list SCRAM users (over the Kafka protocol).
    #[command(subcommand)]
    User(cli::user::UserCommand),
    /// Add, list or remove ACLs (over the Kafka protocol).
    #[command(subcommand)]
    Acl(cli::acl::AclCommand),
    /// Set, remove or describe client quotas (over the Kafka protocol).
    #[command(subcommand)]
    Quota(cli::quota::QuotaCommand),
    /// Produce lines from stdin as records.
    Produce(cli::admin::ProduceArgs),
    /// Print records of a topic.
    Consume(cli::admin::ConsumeArgs),
    /// Dump a segment (.log) or index (.index, .timeindex, .txnindex) file.
    Inspect {
        /// The file to dump.
        file: PathBuf,
        /// Also print every record of a .log file.
        #[arg(long)]
        records: bool,
    },
    /// Benchmarks that print their figure as a ratio against a baseline
    /// measured in the same run.
    #[command(subcommand)]
    Perf(cli::perf::PerfCommand),
    /// Rebuild a data directory (catalog, empty local logs) from the
    /// topics and segments in the remote tier.
    Restore(cli::restore::RestoreArgs),
    /// The remote tier: each partition's tiering state from a running
    /// broker (`status`), and an offline comparison of catalog and bucket
    /// (`check`).
    #[command(subcommand)]
    Tier(cli::tier::TierCommand),
    /// Producers and transactions: `describe-producers` shows what each
    /// partition remembers of its producers, `list` the transactional ids,
    /// `describe` one of them.
    #[command(subcommand)]
    Transactions(cli::transactions::TransactionsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => cli::serve::LogFormat::Text,
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        cli::serve::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One JSON object per line: the event's fields flattened, and the
        // spans it happened in (a request's API, client id, correlation id).
        cli::serve::LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    if matches!(
        &cli.command,
        Command::User(cli::user::UserCommand::Add { .. })
    ) && cli.client.reads_stdin()
    {
        eprintln!(
            "error: stdin carries the new user's password: give the SASL password in \
             TIERLOG_SASL_PASSWORD"
        );
        return ExitCode::FAILURE;
    }
    if !matches!(cli.command, Command::Serve(_)) {
        match cli.client.security() {
            Ok(security) => tierlog::client::set_default_security(security),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(*args),
        Command::Topic(cmd) => cli::admin::topic(cmd),
        Command::User(cmd) => cli::user::run(cmd),
        Command::Acl(cmd) => cli::acl::run(cmd),
        Command::Quota(cmd) => cli::quota::run(cmd),
        Command::Produce(args) => cli::admin::produce(args),
        Command::Consume(args) => cli::admin::consume(args),
        Command::Inspect { file, records } => cli::inspect::run(&file, records),
        Command::Perf(cmd) => cli::perf::run(cmd),
        Command::Restore(args) => cli::restore::run(args),
        Command::Tier(cmd) => cli::tier::run(cmd),
        Command::Transactions(cmd) => cli::transactions::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
