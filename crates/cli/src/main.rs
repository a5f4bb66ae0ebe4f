//! `sinkchat`: the command a user runs: SinkChat with no window (`serve`). `sinkchat --help` and
//! `sinkchat <command> --help` list every command and flag; an unknown flag is an error.
//! Benchmarks and evaluations live apart, in `sinkchat-bench` (crates/bench), which is never
//! installed; the fake hub is a test tool of its own crate.

mod serve;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// SinkChat on the command line: the app with no window.
#[derive(Parser)]
#[command(name = "sinkchat", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// SinkChat with no window: the web UI for a browser and the OpenAI-compatible API, on
    /// 127.0.0.1
    Serve {
        /// Port on 127.0.0.1
        #[arg(long, default_value_t = 8430)]
        port: u16,
        /// Data folder (chats, models, settings); default: SINKCHAT_DATA_DIR or the user's
        /// data folder
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Model file to run; default: SINKCHAT_MODEL, else the model chosen in the app
        #[arg(long, value_name = "FILE", env = "SINKCHAT_MODEL")]
        model: Option<PathBuf>,
        /// Folder of the built web UI (the one holding index.html)
        #[arg(long, value_name = "DIR")]
        ui: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    sinkchat_engine::tune_allocator();
    // `serve` logs to its data folder as the app does, once it holds the folder (see serve.rs).
    match cli.command {
        Command::Serve {
            port,
            data_dir,
            model,
            ui,
        } => serve::run(serve::Args {
            port,
            data_dir,
            model,
            ui_dir: ui,
        }),
    }
}
