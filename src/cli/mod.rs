//! Command-line interface: one module per subcommand; flags become
//! configuration overrides so that flags and TOML files behave alike.

mod data;
mod pairs;

use clap::{Parser, Subcommand};

/// Self-supervised pretraining of dense text retrievers.
#[derive(Debug, Parser)]
#[command(name = "pretext", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a positive-pair dataset from a corpus with a pretext task.
    Pairs(pairs::PairsArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Pairs(args) => pairs::run(args),
    }
}
