//! `pretext encode`: embed a corpus with a model folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::data::{finish, DataArgs, ModelOptions};

/// Flags of `pretext encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// A model folder (what `pretext export` writes, or any
    /// sentence-transformers / Hugging Face BERT folder).
    #[arg(long)]
    model: PathBuf,
    /// Output: OUT.safetensors (tensor `embeddings`) and OUT.ids.txt.
    #[arg(long, short)]
    out: PathBuf,
    /// Also write OUT.npy (float32, documents × dim) for numpy.
    #[arg(long)]
    npy: bool,
    #[command(flatten)]
    model_opts: ModelOptions,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: EncodeArgs) -> Result<()> {
    let config = finish(&args.data.builder()?)?;
    let model = args.model_opts.load(&args.model)?;
    let corpus = config.corpus.open()?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {pos} documents ({per_sec})",
            )
            .expect("static template"),
        )
    };
    let started = std::time::Instant::now();
    let done = pretext::encode::encode(
        &model,
        &corpus,
        config.corpus.read_options(),
        args.model_opts.batch_size,
        &args.out,
        args.npy,
        &mut |n| bar.set_position(n as u64),
    )?;
    bar.finish_and_clear();
    eprintln!(
        "embedded {} documents ({} dimensions, {:?} similarity) in {:.1} s: {}",
        done.documents,
        done.dim,
        model.similarity,
        started.elapsed().as_secs_f64(),
        done.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
