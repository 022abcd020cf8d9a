//! `pretext bench`: pretext tasks trained and evaluated side by side.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::data::{finish, DataArgs};

/// Flags of `pretext bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output folder (runs, table.md, results.csv, chart.svg).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Comma-separated tasks to compare (default: all, from the config).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Training steps per task.
    #[arg(long)]
    steps: Option<usize>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut b = args.data.builder()?;
    if let Some(out) = &args.out {
        b.set_value("bench.out", toml::Value::String(out.display().to_string()));
    }
    if !args.tasks.is_empty() {
        let list = args
            .tasks
            .iter()
            .map(|t| toml::Value::String(t.clone()))
            .collect();
        b.set_value("bench.tasks", toml::Value::Array(list));
    }
    if let Some(s) = args.steps {
        b.set_value("train.steps", toml::Value::Integer(s as i64));
    }
    let config = finish(&b)?;
    for t in &config.bench.tasks {
        pretext::tasks_by_name(t)?;
    }
    let started = std::time::Instant::now();
    let rows = pretext::bench::run(&config, &config.bench, &mut |msg| {
        eprintln!("[{:>5.0} s] {msg}", started.elapsed().as_secs_f64())
    })?;
    println!("{}", pretext::bench::table(&rows));
    let out = &config.bench.out;
    eprintln!(
        "wrote {0}/table.md, {0}/results.csv, {0}/results.json, {0}/chart.svg; runs in {0}/<task>/",
        out.display()
    );
    Ok(())
}
