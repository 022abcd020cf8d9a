//! `pretext train`, `pretext export` and `pretext tokenizer`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pretext::config::ModelKind;
use pretext::tokenize::train_on_corpus;
use pretext::train::{Start, StepLog, TrainProgress, Trainer};

use super::data::{finish, DataArgs};

/// Flags of `pretext train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Run directory (checkpoints, metrics.jsonl, curves.svg).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long)]
    device: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Pairs per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Start from a Hugging Face model folder.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Train on a pair dataset (any of the three formats) instead of the task.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Continue from the run directory's latest checkpoint (it must have
    /// one, trained with the same settings bar steps and the like).
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start again in a run directory that holds a previous run, removing
    /// its checkpoints, metrics and best model.
    #[arg(long)]
    overwrite: bool,
    /// Processes (one per GPU) training together over NCCL; each takes
    /// `batch_size` pairs of a global batch and sees all as negatives.
    #[arg(long, default_value_t = 1)]
    world_size: usize,
    /// This process's rank, 0..world-size (rank 0 writes checkpoints).
    #[arg(long, default_value_t = 0)]
    rank: usize,
    /// File through which rank 0 hands the NCCL id to the others
    /// [default: RUN_DIR/nccl.id].
    #[arg(long)]
    nccl_id: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

struct Bar {
    bar: ProgressBar,
    started: std::time::Instant,
    tokens: usize,
    steps: usize,
}

impl TrainProgress for Bar {
    fn step(&mut self, log: &StepLog) {
        self.tokens += log.tokens;
        self.steps += 1;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_position(log.step as u64);
        self.bar.set_message(format!(
            "loss {:.3} acc {:.2} | {:.2} steps/s {:.0} tok/s | queue {:.0}%",
            log.loss,
            log.accuracy,
            self.steps as f64 / secs,
            self.tokens as f64 / secs,
            log.queue_fill * 100.0
        ));
    }

    fn checkpoint(&mut self, path: &std::path::Path) {
        self.bar.println(format!("checkpoint {}", path.display()));
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut b = args.data.builder()?;
    let strings = [
        (
            "train.out",
            args.out.as_ref().map(|p| p.display().to_string()),
        ),
        ("train.device", args.device.clone()),
        (
            "model.init",
            args.init.as_ref().map(|p| p.display().to_string()),
        ),
        (
            "train.pairs",
            args.pairs.as_ref().map(|p| p.display().to_string()),
        ),
    ];
    for (k, v) in strings {
        if let Some(v) = v {
            b.set_value(k, toml::Value::String(v));
        }
    }
    for (k, v) in [
        ("train.steps", args.steps),
        ("train.batch_size", args.batch_size),
    ] {
        if let Some(v) = v {
            b.set_value(k, toml::Value::Integer(v as i64));
        }
    }
    if let Some(lr) = args.lr {
        b.set_value("train.lr", toml::Value::Float(lr));
    }
    let config = finish(&b)?;
    let steps = config.train.steps;
    let start = match (args.resume, args.overwrite) {
        (true, _) => Start::Resume,
        (_, true) => Start::Overwrite,
        _ => Start::Fresh,
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:25} {pos}/{len} (ETA {eta}) {msg}",
        )
        .expect("static template"),
    );
    let mut progress = Bar {
        bar,
        started: std::time::Instant::now(),
        tokens: 0,
        steps: 0,
    };
    if config.model.kind == ModelKind::CrossEncoder {
        if args.world_size > 1 {
            anyhow::bail!("model.kind = \"cross-encoder\" trains in one process (--world-size 1)");
        }
        let report = pretext::train::cross::train(&config, start, &mut progress)?;
        progress.bar.finish_and_clear();
        if !args.quiet {
            if let Some(l) = &report.last {
                eprintln!(
                    "step {}: loss {:.4}, positive ranked first {:.3} ({} pairs with negatives)",
                    l.step, l.loss, l.accuracy, report.pairs
                );
            }
            eprintln!(
                "cross-encoder {}; metrics {}/metrics.jsonl; `pretext export --run {}` copies it",
                report.checkpoint.display(),
                report.run.display(),
                report.run.display()
            );
        }
        return Ok(());
    }
    let group = process_group(&args, &config)?;
    let mut trainer = Trainer::with_group(config, start, group)?;
    progress.bar.set_position(trainer.step() as u64);
    let report = trainer.run(&mut progress)?;
    progress.bar.finish_and_clear();
    if let Some(f) = report.filtered {
        eprintln!(
            "consistency filter (train.filter): kept {} pairs, dropped {}",
            f.kept, f.dropped
        );
    }
    // Said even with --quiet: whether the run made the model better.
    if let Some(b) = &report.best {
        match b.step {
            0 if b.best_trained.is_some() => eprintln!(
                "no step beat the initialisation on {} (init {:.4}, best trained step {:.4}): `export --best` exports the initialisation unchanged",
                b.metric,
                b.init,
                b.best_trained.unwrap_or(f64::NAN)
            ),
            _ => eprintln!(
                "best {} {:.4} at step {} (initialisation {:.4}): `export --best --run {}` exports it",
                b.metric,
                b.value,
                b.step,
                b.init,
                report.run.display()
            ),
        }
    }
    if !args.quiet {
        if let Some(l) = &report.last {
            eprintln!(
                "step {}: loss {:.4}, pretext accuracy {:.3}",
                l.step, l.loss, l.accuracy
            );
        }
        eprintln!(
            "checkpoint {}; metrics {}/metrics.jsonl, curves {}/curves.svg",
            report.checkpoint.display(),
            report.run.display(),
            report.run.display()
        );
    }
    Ok(())
}

/// Flags of `pretext export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run directory (its latest checkpoint) or one checkpoint folder.
    #[arg(long)]
    run: PathBuf,
    /// Export the run's best checkpoint by its eval metric (`RUN/best`;
    /// the initialisation when no step beat it).
    #[arg(long)]
    best: bool,
    /// Output folder (Hugging Face + sentence-transformers layout).
    #[arg(long, short)]
    out: PathBuf,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let from = if args.best {
        let best = pretext::train::RunDir::new(&args.run).best();
        if !best.join("state.json").exists() {
            anyhow::bail!(
                "{} has no best checkpoint ({}): train with an [eval] section (eval.data) to keep one",
                args.run.display(),
                best.display()
            );
        }
        best
    } else {
        args.run.clone()
    };
    pretext::export::export(&from, &args.out)?;
    eprintln!("exported {} to {}", args.run.display(), args.out.display());
    Ok(())
}

/// Flags of `pretext tokenizer`.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Vocabulary size.
    #[arg(long, default_value_t = 8192)]
    vocab: usize,
    /// Output `tokenizer.json`.
    #[arg(long, short, default_value = "tokenizer.json")]
    out: PathBuf,
}

pub fn tokenizer(args: TokenizerArgs) -> Result<()> {
    let config = finish(&args.data.builder()?)?;
    let c = &config.corpus;
    let (tok, docs) = train_on_corpus(&c.open()?, c.read_options(), args.vocab, None, 512)
        .with_context(|| format!("training a tokenizer on {}", c.path.display()))?;
    tok.save(&args.out)?;
    eprintln!(
        "trained a WordPiece vocabulary of {} tokens on {} documents: {}",
        tok.vocab_size(),
        docs,
        args.out.display()
    );
    Ok(())
}

/// The process group `--world-size` and `--rank` ask for.
fn process_group(
    args: &TrainArgs,
    config: &pretext::config::Config,
) -> Result<Box<dyn pretext::dist::ProcessGroup>> {
    if args.rank >= args.world_size {
        anyhow::bail!(
            "--rank {} is not below --world-size {}",
            args.rank,
            args.world_size
        );
    }
    if args.world_size == 1 {
        return Ok(Box::new(pretext::dist::Single));
    }
    #[cfg(feature = "nccl")]
    {
        let device = pretext::train::device(&config.train.device)?;
        std::fs::create_dir_all(&config.train.out)?;
        let id = args
            .nccl_id
            .clone()
            .unwrap_or_else(|| config.train.out.join("nccl.id"));
        Ok(Box::new(pretext::dist::nccl::Nccl::join(
            &device,
            args.rank,
            args.world_size,
            &id,
        )?))
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (config, &args.nccl_id);
        anyhow::bail!(
            "--world-size {} needs NCCL: build with `--features nccl` (CUDA)",
            args.world_size
        )
    }
}
